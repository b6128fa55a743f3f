"""The leads table loads through ``meltano run tap-marketo target-snowflake`` (emulated Snowflake).

The emulator, the target install and the SQL helpers are test_snowflake.py's fixtures; the
simulator and the tap's environment are test_leads_meltano.py's. A first run loads every lead
of the simulator once, typed as describe says; a second run resumed from Meltano's state
upserts the leads that changed: still one row per id, each with its current values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from test_leads_meltano import afternoon, leads_env  # noqa: F401 (afternoon: a fixture)
from test_snowflake import (  # noqa: F401 (fixtures)
    Snowflake,
    database,
    run,
    snowflake,
    snowflake_meltano,
)

from tap_marketo_activities.simulator.leads import database as lead_database

if TYPE_CHECKING:
    from pathlib import Path

    from helpers import Meltano

    from tap_marketo_activities.simulator import MarketoSimulator

pytestmark = [pytest.mark.slow, pytest.mark.meltano, pytest.mark.xdist_group("meltano")]


def test_meltano_run_loads_the_leads_table_into_snowflake_and_upserts_changed_leads(
    snowflake_meltano: Meltano,  # noqa: F811 (the fixture imported above)
    snowflake: Snowflake,  # noqa: F811 (the fixture imported above)
    state_db: Path,
    afternoon: MarketoSimulator,  # noqa: F811 (the fixture imported above)
    database: str,  # noqa: F811 (the fixture imported above)
):
    env = {
        **leads_env(afternoon),
        **snowflake.target_env(database),
        "TAP_MARKETO__SELECT": json.dumps(["leads.*", "merged_leads.*"]),
    }
    run(snowflake_meltano, state_db, env)
    truth = lead_database(afternoon).at(afternoon.clock.now())
    assert "LEADS" in snowflake.tables(database)
    ids = snowflake.keys(database, "leads", key="id")
    assert set(ids) == set(truth), "every lead of the simulator"
    assert max(ids.values()) == 1, "one row per lead"
    columns = snowflake.columns(database, "leads")
    for number in ("ID", "SEATS", "BEHAVIORSCORE"):
        assert columns[number] == "NUMBER", (number, columns)
    assert columns["UNSUBSCRIBED"] == "BOOLEAN", columns
    assert columns["LASTDEMOAT"].startswith("TIMESTAMP"), columns
    assert columns["DISCOUNTRATE"] in ("FLOAT", "NUMBER", "DOUBLE"), columns
    assert columns["EMAIL"] in ("TEXT", "VARCHAR"), columns

    afternoon.clock.advance(hours=3)  # scores, owners, fields change; leads merge
    run(snowflake_meltano, state_db, env)
    truth = lead_database(afternoon).at(afternoon.clock.now())
    ids = snowflake.keys(database, "leads", key="id")
    assert max(ids.values()) == 1, "a changed lead is updated, not added"
    assert set(truth) <= set(ids)
    loaded = {
        r["ID"]: r
        for r in snowflake.rows(
            f'select id, "behaviorScore" as score, "leadOwnerId" as owner '
            f"from {database}.TAP_MARKETO.LEADS"
        )
    }
    stale = [
        lead
        for lead, row in truth.items()
        if (loaded[lead]["SCORE"], loaded[lead]["OWNER"])
        != (row["behaviorScore"], str(row["leadOwnerId"]))
    ]
    assert not stale, f"{len(stale)} leads keep old values, e.g. {stale[:5]}"
    changed = [
        lead
        for lead, row in truth.items()
        if row["behaviorScore"] != 0  # 0 until a Change Score sets it
    ]
    assert changed, "the afternoon changes scores"
