"""The leads table loads through Meltano into target-jsonl and target-postgres.

What users run: ``meltano run tap-marketo target-jsonl`` with ``leads_stream`` on and the
``leads`` and ``merged_leads`` streams selected; the tables must hold every lead of the
simulator, typed as describe says.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest
from helpers import read_jsonl

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator.leads import database

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from helpers import Meltano, Postgres

pytestmark = [pytest.mark.slow, pytest.mark.meltano, pytest.mark.xdist_group("meltano")]


@pytest.fixture
def afternoon() -> Iterator[MarketoSimulator]:
    with MarketoSimulator(World.seed_afternoon(rows=1500, seed=11)) as sim:
        yield sim


def leads_env(sim: MarketoSimulator) -> dict[str, str]:
    return {
        "TAP_MARKETO_BASE_URL": sim.base_url,
        "TAP_MARKETO_CLIENT_ID": sim.client_id,
        "TAP_MARKETO_CLIENT_SECRET": sim.client_secret,
        "TAP_MARKETO_START_DATE": "2023-01-01T00:00:00Z",
        "TAP_MARKETO_LEADS_STREAM": "true",
        "TAP_MARKETO_BACKFILL_METHOD": "rest",
        "TAP_MARKETO__SELECT": json.dumps(["leads.*", "merged_leads.*"]),
    }


def test_meltano_run_loads_every_lead_into_target_jsonl(
    meltano: Meltano, state_db: Path, afternoon: MarketoSimulator, tmp_path: Path
):
    out = tmp_path / "out"
    env = {**leads_env(afternoon), "TARGET_JSONL_DESTINATION_PATH": str(out)}
    meltano("--environment=prod", "run", "tap-marketo", "target-jsonl", database=state_db, env=env)
    tables = read_jsonl(out)
    assert set(tables) <= {"leads", "merged_leads"}
    truth = database(afternoon).at(afternoon.clock.now())
    assert sorted(r["id"] for r in tables["leads"]) == sorted(truth)
    lead = tables["leads"][0]
    assert lead["email"] == truth[lead["id"]]["email"]
    assert lead["behaviorScore"] == truth[lead["id"]]["behaviorScore"]


def test_meltano_run_loads_typed_lead_columns_into_postgres(
    meltano: Meltano, postgres: Postgres, state_db: Path, afternoon: MarketoSimulator
):
    schema = f"tap_marketo_leads_{os.getpid()}"
    postgres.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    env = {**leads_env(afternoon), **postgres.target_env(schema)}
    meltano(
        "--environment=prod", "run", "tap-marketo", "target-postgres", database=state_db, env=env
    )
    rows = postgres.json(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = 'leads'"
    )
    columns = {r["column_name"].replace("_", "").lower(): r["data_type"] for r in rows}
    assert columns["id"] == "bigint"
    assert columns["seats"] == "bigint"
    assert columns["unsubscribed"] == "boolean"
    assert columns["renewaldate"] == "date"
    assert columns["lastdemoat"].startswith("timestamp")
    assert columns["discountrate"] in ("numeric", "double precision")
    truth = database(afternoon).at(afternoon.clock.now())
    count = postgres.json(f'SELECT count(DISTINCT id) AS n FROM "{schema}".leads')
    assert count == [{"n": len(truth)}]
    postgres.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
