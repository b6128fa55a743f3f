"""``meltano run tap-marketo target-snowflake`` into an emulated Snowflake, the target unpatched.

meltano.yml's target-snowflake entry is installed as it is (``meltano install``) and run against
fakesnow's server on 127.0.0.1 (``snowflake_emulator.py``, in the venv ``.ci/install_fakesnow.sh``
makes under .test-cache/). The tap reads the project's Marketo simulator. Without PyPI access the
tests skip on a developer's machine and fail under CI, like the PostgreSQL ones.

Every process gets SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true: otherwise the connector probes
cloud metadata addresses at each login, and no test may send anything off this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import (
    MELTANO_TIMEOUT,
    README,
    REPO,
    Meltano,
    clean_environment,
    free_port,
    listening,
    tail,
    unavailable,
)
from test_meltano import (
    INCREMENTAL_STREAMS,
    LATE_MINUTES,
    START_DATE,
    afternoon,  # noqa: F401 (a fixture)
    expected_guids,
    prod_env,
)

from tap_marketo_activities.simulator import endpoints
from tap_marketo_activities.streams.typed import stream_names

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tap_marketo_activities.simulator import MarketoSimulator

pytestmark = [pytest.mark.slow, pytest.mark.meltano, pytest.mark.xdist_group("meltano")]

FOUR_STREAMS = ["activity_types.*", "activities.*", "lead_changes.*", "deleted_leads.*"]
NO_PROBES = {"SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true"}


@dataclass
class Snowflake:
    """The emulator's address, and the SQL the tests check with."""

    port: int

    def rows(self, sql: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/test/query", data=sql.encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as exc:
            pytest.fail(f"the emulator refused {sql!r}: {exc.read().decode()}")
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]

    def account(self, database: str, schema: str) -> str:
        """What goes in TARGET_SNOWFLAKE_ACCOUNT instead of a real account identifier."""
        return f"127.0.0.1:{self.port}/{database}/{schema}?account=fakesnow&protocol=http&role="

    def target_env(self, database: str, schema: str = "TAP_MARKETO") -> dict[str, str]:
        self.rows(f"create database if not exists {database}")
        return {
            **NO_PROBES,
            "SNOWFLAKE_SQLALCHEMY_LEGACY_URL_PARAMS": "true",
            "TARGET_SNOWFLAKE_ACCOUNT": self.account(database, schema),
            "TARGET_SNOWFLAKE_USER": "tester",
            "TARGET_SNOWFLAKE_PASSWORD": "not-a-secret",
            "TARGET_SNOWFLAKE_DATABASE": database,
            "TARGET_SNOWFLAKE_WAREHOUSE": "TEST_WH",
            "TARGET_SNOWFLAKE_DEFAULT_TARGET_SCHEMA": schema,
        }

    def tables(self, database: str, schema: str = "TAP_MARKETO") -> set[str]:
        return {
            r["TABLE_NAME"]
            for r in self.rows(
                f"select table_name from {database}.information_schema.tables "
                f"where table_schema = '{schema}'"
            )
        }

    def columns(self, database: str, table: str, schema: str = "TAP_MARKETO") -> dict[str, str]:
        return {
            r["COLUMN_NAME"]: r["DATA_TYPE"]
            for r in self.rows(
                f"select column_name, data_type from {database}.information_schema.columns "
                f"where table_schema = '{schema}' and table_name = '{table.upper()}'"
            )
        }

    def keys(self, database: str, table: str, key: str = "marketoGUID") -> Counter[Any]:
        column = f'"{key}"' if key != key.lower() else key
        return Counter(
            r["K"]
            for r in self.rows(f"select {column} as k from {database}.TAP_MARKETO.{table.upper()}")
        )


@pytest.fixture(scope="session")
def snowflake() -> Iterator[Snowflake]:
    """fakesnow's server on a free loopback port for the session; stopped when it ends."""
    try:
        done = subprocess.run(
            ["bash", str(REPO / ".ci" / "install_fakesnow.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"could not install fakesnow with .ci/install_fakesnow.sh: {exc}")
    if done.returncode != 0 or not done.stdout.strip():
        unavailable(
            "could not install fakesnow with .ci/install_fakesnow.sh (no access to PyPI?):\n"
            + tail(done.stderr, 20)
        )
    python = done.stdout.strip().splitlines()[-1]
    port = free_port()
    # fakesnow keeps staged files in a temporary folder; this one is removed even after a kill.
    folder = tempfile.mkdtemp(prefix="tap-marketo-fakesnow-")
    log = Path(folder) / "emulator.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [python, str(Path(__file__).with_name("snowflake_emulator.py")), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **NO_PROBES, "TMPDIR": folder},
        )
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Snowflake emulator did not start:\n{tail(log.read_text())}")
            time.sleep(0.2)
        yield Snowflake(port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(["rm", "-rf", folder], check=False)
        assert not listening(port), f"the Snowflake emulator still listens on {port}"


@pytest.fixture(scope="session")
def snowflake_meltano(meltano: Meltano) -> Meltano:
    """Meltano with meltano.yml's target-snowflake installed, as `meltano install` does."""
    meltano("install", "--plugin-type", "loader", "target-snowflake", env=NO_PROBES)
    return meltano


_databases = iter(range(1, 1000))


@pytest.fixture
def database() -> str:
    """A database of the test's own in the session's emulator."""
    return f"TEST_{os.getpid()}_{next(_databases)}"


def run(
    meltano: Meltano, state_db: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    return meltano(
        "--environment=prod",
        "run",
        *extra,
        "tap-marketo",
        "target-snowflake",
        database=state_db,
        env=env,
    )


# ============================================================================== the tests
def test_meltano_run_into_snowflake_loads_what_the_tap_emitted_then_only_what_is_new(
    snowflake_meltano: Meltano,
    snowflake: Snowflake,
    state_db: Path,
    afternoon: MarketoSimulator,  # noqa: F811 (the fixture imported above)
    database: str,
):
    typed = typed_streams(afternoon)
    env = {
        **prod_env(afternoon),
        **snowflake.target_env(database),
        "TAP_MARKETO__SELECT": json.dumps(FOUR_STREAMS + [f"{name}.*" for name in typed]),
    }
    at_two = expected_guids(afternoon)
    run(snowflake_meltano, state_db, env)
    # The typed tables load next to the four streams, with their typed columns.
    assert_typed_tables(snowflake, database, afternoon, typed, key="marketoGUID")
    send_email = snowflake.columns(database, "activities_send_email")
    assert send_email["MAILING_ID"] == "NUMBER", send_email
    assert send_email["LEADID"] == "NUMBER", send_email

    assert {"ACTIVITY_TYPES", "ACTIVITIES", "LEAD_CHANGES", "DELETED_LEADS"} <= snowflake.tables(
        database
    )
    for stream in INCREMENTAL_STREAMS:
        keys = snowflake.keys(database, stream)
        assert max(keys.values(), default=1) == 1, f"{stream}: a marketoGUID has two rows"
        assert set(keys) == at_two[stream], stream
    type_ids = snowflake.keys(database, "activity_types", key="id")
    assert set(type_ids) == {t["id"] for t in listed_types(afternoon)}
    assert max(type_ids.values()) == 1

    columns = snowflake.columns(database, "activities")
    assert columns["ACTIVITYDATE"].startswith("TIMESTAMP"), columns
    for number in ("ID", "LEADID", "ACTIVITYTYPEID", "CAMPAIGNID"):
        assert columns[number] == "NUMBER", (number, columns)
    assert columns["ATTRIBUTES"] == "VARIANT", columns
    [sample] = snowflake.rows(
        f'select attributes:"Campaign Run ID" as run from {database}.TAP_MARKETO.ACTIVITIES '
        'where attributes:"Campaign Run ID" is not null limit 1'
    )
    assert int(sample["RUN"]) > 0  # a value read out of the VARIANT, not a string of JSON

    # Resumed from Meltano's state: exactly the rows committed since, none twice.
    afternoon.clock.advance(minutes=LATE_MINUTES)
    at_ten_past = expected_guids(afternoon)
    run(snowflake_meltano, state_db, env)
    for stream in INCREMENTAL_STREAMS:
        keys = snowflake.keys(database, stream)
        assert max(keys.values(), default=1) == 1, f"{stream}: a marketoGUID has two rows"
        assert set(keys) - at_two[stream] == at_ten_past[stream] - at_two[stream], stream
        assert sum(keys.values()) == len(at_ten_past[stream]), stream
    assert snowflake.keys(database, "activity_types", key="id") == type_ids

    # A full refresh reads everything again from start_date: still one row per key.
    run(snowflake_meltano, state_db, env, "--full-refresh")
    for stream in INCREMENTAL_STREAMS:
        keys = snowflake.keys(database, stream)
        assert max(keys.values(), default=1) == 1, f"{stream}: a marketoGUID has two rows"
        assert set(keys) == at_ten_past[stream], stream
    assert snowflake.keys(database, "activity_types", key="id") == type_ids


def listed_types(sim: MarketoSimulator) -> list[dict[str, Any]]:
    """What the simulator's /activities/types.json answers."""
    return endpoints.activity_types(sim, {})["result"]


def typed_streams(sim: MarketoSimulator) -> dict[str, int]:
    """Every typed stream the tap offers for the simulator's types, and its type id."""
    return {name: type_id for type_id, name in stream_names(listed_types(sim)).items()}


def assert_typed_tables(
    snowflake: Snowflake,
    database: str,
    sim: MarketoSimulator,
    typed: dict[str, int],
    key: str,
) -> None:
    """Every typed stream with rows is a table holding exactly its type's rows, once each."""
    tables = snowflake.tables(database)
    loaded = 0
    for name, type_id in typed.items():
        want = {
            r["marketoGUID"]
            for r in sim.expected("activities", type_ids=[type_id], since=START_DATE)
        }
        if not want:
            continue  # the target makes no table for a stream without records
        assert name.upper() in tables, (name, sorted(tables))
        keys = snowflake.keys(database, name, key=key)
        assert max(keys.values()) == 1, f"{name}: a marketoGUID has two rows"
        assert set(keys) == want, name
        loaded += 1
    assert loaded >= 8, "the afternoon should have rows of many types"


def test_every_typed_table_loads_with_normalise_casing(
    snowflake_meltano: Meltano,
    snowflake: Snowflake,
    state_db: Path,
    afternoon: MarketoSimulator,  # noqa: F811 (the fixture imported above)
    database: str,
):
    """normalise_casing folds leadId and a "Lead ID" attribute alike; the tap keeps them apart."""
    typed = typed_streams(afternoon)
    env = {
        **prod_env(afternoon),
        **snowflake.target_env(database),
        "TAP_MARKETO__SELECT": json.dumps(FOUR_STREAMS + [f"{name}.*" for name in typed]),
        "TARGET_SNOWFLAKE_NORMALISE_CASING": "true",
    }
    run(snowflake_meltano, state_db, env)
    at_two = expected_guids(afternoon)
    # normalise_casing lower-cases runs of capitals, then snake-cases: marketoGUID -> marketoguid.
    for stream in INCREMENTAL_STREAMS:
        assert set(snowflake.keys(database, stream, key="marketoguid")) == at_two[stream]
    assert_typed_tables(snowflake, database, afternoon, typed, key="marketoguid")
    send_email = snowflake.columns(database, "activities_send_email")
    assert send_email["LEAD_ID"] == "NUMBER", send_email


def readme_snowflake_block() -> str:
    """The README's Snowflake block (the one that installs and runs target-snowflake)."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    [block] = [b for b in blocks if "meltano run tap-marketo target-snowflake" in b]
    return block


def test_readme_snowflake_block_runs_as_written(
    snowflake_meltano: Meltano, snowflake: Snowflake, tmp_path: Path, database: str
):
    """The block, verbatim but for the exported values: the emulator's account and database."""
    target = snowflake.target_env(database)
    block = readme_snowflake_block()
    exported = re.findall(r"\b(TARGET_SNOWFLAKE_[A-Z_]+)=", block)
    assert {"TARGET_SNOWFLAKE_ACCOUNT", "TARGET_SNOWFLAKE_DATABASE"} <= set(exported)
    body = re.sub(
        r"\b(TARGET_SNOWFLAKE_[A-Z_]+)=\S+",
        lambda m: f"{m.group(1)}={shlex.quote(target[m.group(1)])}",
        block,
    )
    project = snowflake_meltano.project
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "meltano"
    launcher.write_text(f'#!/bin/sh\nexec "{snowflake_meltano.executable}" "$@"\n')
    launcher.chmod(0o755)
    env = {
        **clean_environment(),
        **NO_PROBES,
        # The emulator's account is a URL; a real account identifier needs neither of these.
        "SNOWFLAKE_SQLALCHEMY_LEGACY_URL_PARAMS": "true",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
    }
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", body],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=MELTANO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"the README's Snowflake block:\n{tail(done.stderr)}"
    assert {"ACTIVITY_TYPES", "ACTIVITIES", "LEAD_CHANGES", "DELETED_LEADS"} <= snowflake.tables(
        database
    )
    for stream in INCREMENTAL_STREAMS:
        keys = snowflake.keys(database, stream)
        assert keys, f"{stream}: nothing loaded"
        assert max(keys.values()) == 1, f"{stream}: a marketoGUID has two rows"
