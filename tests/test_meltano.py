"""Meltano and real targets, end to end.

What users run: ``meltano run tap-marketo target-jsonl`` (Meltano's state backend carrying the
bookmark), ``meltano run tap-marketo target-postgres`` into a real PostgreSQL, the plain pipe
``tap-marketo-activities --config c.json --state s.json | target-jsonl``, and the README's first
quick-start command. Plus a cheap check that meltano.yml mirrors the tap's settings.

How it stays quick: the checkout is copied once per session into a temporary Meltano project
(so output/ and .meltano/ never touch the developer's tree), Meltano installs the plugins there
once, and every test gets a system database of its own (``MELTANO_DATABASE_URI``), hence state
of its own. Meltano itself comes from ``TAP_MARKETO_TEST_MELTANO`` (a path to the executable) or
``.ci/install_meltano.sh`` (into the checkout's .test-cache/); PostgreSQL from the
``TAP_MARKETO_TEST_PG_*`` variables, or a cluster the session starts with ``.ci/postgres.sh`` in
a temporary folder and stops at its end. The fixtures live in conftest.py; every test here runs
on one pytest-xdist worker (the ``meltano`` group), so the plugins are installed once.

Late rows without waiting: the runs that compare deliveries talk to a simulator started in this
process with a frozen clock (the seed afternoon: a Send Email campaign half committed at 14:00),
so the test moves the clock ten minutes between two runs and knows exactly which rows came in.
The tap reaches it through the ``prod`` environment with credentials from the environment, the
way users point it at a real instance.

When Meltano or PostgreSQL cannot be had these tests skip, saying why, except under CI
(``CI`` set), where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import yaml
from helpers import (
    DEFAULT_ACTIVITY_TYPES,
    MELTANO_TIMEOUT,
    REPO,
    Meltano,
    Postgres,
    clean_environment,
    quickstart_command,
    read_jsonl,
    tail,
)

from tap_marketo_activities.settings_schema import DEFAULT_LEAD_CHANGE_FIELDS
from tap_marketo_activities.simulator import MarketoSimulator, World

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

TAP_EXECUTABLE = Path(sys.executable).with_name("tap-marketo-activities")
INCREMENTAL_STREAMS = ("activities", "lead_changes", "deleted_leads")
ALL_STREAMS = ("activity_types", *INCREMENTAL_STREAMS)
START_DATE = "2024-04-12T12:00:00Z"  # the seed afternoon's start; its clock begins at 14:00
LATE_MINUTES = 10  # by 14:10 the 13:45 campaign has committed its last rows

# One xdist worker runs every test that uses Meltano, so the plugins are installed once per run.
pytestmark = [pytest.mark.slow, pytest.mark.meltano, pytest.mark.xdist_group("meltano")]


# ------------------------------------------------------------------------------ the simulator
@pytest.fixture
def afternoon() -> Iterator[MarketoSimulator]:
    """The seed afternoon, clock frozen at 14:00, served on 127.0.0.1."""
    with MarketoSimulator(World.seed_afternoon()) as sim:
        yield sim


def prod_env(sim: MarketoSimulator) -> dict[str, str]:
    """What a user exports to run the prod environment; here pointing at the simulator."""
    return {
        "TAP_MARKETO_BASE_URL": sim.base_url,
        "TAP_MARKETO_CLIENT_ID": sim.client_id,
        "TAP_MARKETO_CLIENT_SECRET": sim.client_secret,
        "TAP_MARKETO_START_DATE": START_DATE,
    }


def expected_guids(sim: MarketoSimulator) -> dict[str, set[str]]:
    """Per incremental stream, every marketoGUID visible by the simulator's now."""
    return {
        "activities": {
            r["marketoGUID"]
            for r in sim.expected("activities", since=START_DATE, type_ids=DEFAULT_ACTIVITY_TYPES)
        },
        "lead_changes": {
            r["marketoGUID"]
            for r in sim.expected(
                "lead_changes", since=START_DATE, fields=DEFAULT_LEAD_CHANGE_FIELDS
            )
        },
        "deleted_leads": {
            r["marketoGUID"] for r in sim.expected("deleted_leads", since=START_DATE)
        },
    }


# ------------------------------------------------------------------------------ JSON Lines
def guid_sets(records: Mapping[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    return {
        stream: {r["marketoGUID"] for r in records.get(stream, [])}
        for stream in INCREMENTAL_STREAMS
    }


def assert_no_duplicates(records: Mapping[str, list[dict[str, Any]]]) -> None:
    for stream in INCREMENTAL_STREAMS:
        repeated = [
            g
            for g, n in Counter(r["marketoGUID"] for r in records.get(stream, [])).items()
            if n > 1
        ]
        assert not repeated, (
            f"{stream}: {len(repeated)} marketoGUIDs delivered twice, e.g. {repeated[:3]}"
        )


# ============================================================================== the tests
def yaml_settings(plugin: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in plugin.get("settings", [])}


def meltano_kind(schema: Mapping[str, Any]) -> str:
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    concrete = [t for t in types if t != "null"]
    kind = concrete[0] if concrete else "object"
    if kind == "string":
        return "date_iso8601" if schema.get("format") == "date-time" else "string"
    return {"number": "decimal"}.get(kind, kind)


def extractor(document: Mapping[str, Any]) -> dict[str, Any]:
    [plugin] = [p for p in document["plugins"]["extractors"] if p["name"] == "tap-marketo"]
    return plugin


def test_meltano_yml_mirrors_the_tap_settings_and_capabilities():
    """Names, kinds, labels, defaults, sensitivity and descriptions, from ``--about``."""
    about = json.loads(
        subprocess.run(
            [str(TAP_EXECUTABLE), "--about", "--format=json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    document = yaml.safe_load((REPO / "meltano.yml").read_text())
    plugin = extractor(document)
    assert plugin["namespace"] == "tap_marketo"
    assert plugin["executable"] == "tap-marketo-activities"
    assert sorted(plugin["capabilities"]) == sorted(about["capabilities"])
    assert sorted(plugin["select"]) == sorted(f"{s}.*" for s in ALL_STREAMS)

    declared = yaml_settings(plugin)
    properties = about["settings"]["properties"]
    assert list(declared) == list(properties), "meltano.yml lists other settings than --about"
    for name, schema in properties.items():
        setting = declared[name]
        assert setting.get("kind") == meltano_kind(schema), name
        assert setting.get("label") == schema.get("title"), name
        assert setting.get("description") == schema.get("description"), name
        assert bool(setting.get("sensitive")) == bool(schema.get("secret")), name
        assert setting.get("value") == schema.get("default"), name
        assert setting.get("kind") != "password", f"{name}: use sensitive: true, not kind: password"


def test_meltano_yml_is_valid_for_meltano(meltano_executable: Path):
    """meltano.yml against the JSON schema that ships with the Meltano the tests use."""
    locate = (
        "from importlib.resources import files; "
        "print(files('meltano') / 'schemas' / 'meltano.schema.json')"
    )
    python = meltano_executable.with_name("python")
    if not python.exists():  # e.g. a pipx shim: its first line names the interpreter
        python = Path(meltano_executable.read_text(errors="replace").splitlines()[0][2:].strip())
    schema_path = subprocess.run(
        [str(python), "-c", locate],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    document = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not problems, "\n".join(problems)


def test_environments_and_credentials_from_the_environment(meltano: Meltano, state_db: Path):
    """dev needs no credentials; prod takes them from TAP_MARKETO_* as Meltano maps them."""
    dev = json.loads(
        meltano("--environment=dev", "config", "print", "tap-marketo", database=state_db).stdout
    )
    assert dev["simulator"] is True
    exported = {
        "TAP_MARKETO_CLIENT_ID": "id-from-env",
        "TAP_MARKETO_CLIENT_SECRET": "secret-from-env",
        "TAP_MARKETO_BASE_URL": "https://123-ABC-456.mktorest.com",
        "TAP_MARKETO_START_DATE": "2024-01-01T00:00:00Z",
        "TAP_MARKETO_ACTIVITY_TYPE_IDS": "[1, 6]",
    }
    prod = json.loads(
        meltano(
            "--environment=prod",
            "config",
            "--unsafe",
            "print",
            "tap-marketo",
            env=exported,
            database=state_db,
        ).stdout
    )
    assert prod["simulator"] is False
    assert prod["client_id"] == "id-from-env"
    assert prod["client_secret"] == "secret-from-env"
    assert prod["base_url"] == "https://123-ABC-456.mktorest.com"
    assert prod["start_date"] == "2024-01-01T00:00:00Z"
    assert prod["activity_type_ids"] == [1, 6]
    safe = meltano(
        "--environment=prod", "config", "print", "tap-marketo", env=exported, database=state_db
    )
    assert "secret-from-env" not in safe.stdout, "client_secret is not marked sensitive"


def test_meltano_run_twice_with_meltano_state_delivers_only_what_is_new(
    meltano: Meltano, state_db: Path, afternoon: MarketoSimulator, tmp_path: Path
):
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    env = prod_env(afternoon)
    at_two = expected_guids(afternoon)

    def run_into(out: Path) -> dict[str, list[dict[str, Any]]]:
        meltano(
            "--environment=prod",
            "run",
            "tap-marketo",
            "target-jsonl",
            database=state_db,
            env={**env, "TARGET_JSONL_DESTINATION_PATH": str(out)},
        )
        return read_jsonl(out)

    first = run_into(first_out)
    assert set(first) == set(ALL_STREAMS)
    assert_no_duplicates(first)
    assert guid_sets(first) == at_two

    state = json.loads(
        meltano(
            "--environment=prod",
            "state",
            "get",
            "prod:tap-marketo-to-target-jsonl",
            database=state_db,
        ).stdout
    )
    bookmarks = state["singer_state"]["bookmarks"]
    assert set(INCREMENTAL_STREAMS) <= set(bookmarks)

    afternoon.clock.advance(minutes=LATE_MINUTES)
    at_ten_past = expected_guids(afternoon)
    late = {s: at_ten_past[s] - at_two[s] for s in INCREMENTAL_STREAMS}
    assert late["activities"], "the scenario should have late rows by 14:10"

    second = run_into(second_out)
    assert_no_duplicates(second)
    assert guid_sets(second) == late
    # activity_types is a full-table stream: every run sends all of it again.
    assert len(second["activity_types"]) == len(first["activity_types"])


def pg_columns(pg: Postgres, schema: str, table: str) -> dict[str, str]:
    rows = pg.json(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = '{table}'"
    )
    return {r["column_name"]: r["data_type"] for r in rows}


def column_for(columns: Mapping[str, str], prop: str) -> str:
    """The column target-postgres made for a property (it may snake_case the name)."""
    wanted = prop.replace("_", "").lower()
    [name] = [c for c in columns if c.replace("_", "").lower() == wanted]
    return name


def pg_guids(pg: Postgres, schema: str, table: str) -> Counter[str]:
    key = column_for(pg_columns(pg, schema, table), "marketoGUID")
    return Counter(r["g"] for r in pg.json(f'SELECT "{key}" AS g FROM "{schema}"."{table}"'))


def pg_type_ids(pg: Postgres, schema: str) -> Counter[int]:
    return Counter(r["id"] for r in pg.json(f'SELECT id FROM "{schema}".activity_types'))


def test_meltano_run_into_postgres_upserts_one_row_per_guid(
    meltano: Meltano,
    postgres: Postgres,
    state_db: Path,
    afternoon: MarketoSimulator,
    tmp_path: Path,
):
    schema = f"tap_marketo_test_{os.getpid()}"
    postgres.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    env = {**prod_env(afternoon), **postgres.target_env(schema)}
    at_two = expected_guids(afternoon)

    meltano(
        "--environment=prod", "run", "tap-marketo", "target-postgres", database=state_db, env=env
    )
    for stream in INCREMENTAL_STREAMS:
        rows = pg_guids(postgres, schema, stream)
        assert max(rows.values(), default=1) == 1, f"{stream}: a marketoGUID has two rows"
        assert set(rows) == at_two[stream], stream
    type_ids = pg_type_ids(postgres, schema)
    assert type_ids, "activity_types is empty"
    assert max(type_ids.values()) == 1, "activity_types: an id has two rows"

    columns = pg_columns(postgres, schema, "activities")
    attributes = column_for(columns, "attributes")
    assert columns[attributes] == "jsonb"
    kinds = postgres.json(
        f'SELECT jsonb_typeof("{attributes}") AS kind, count(*) AS n '
        f'FROM "{schema}".activities GROUP BY 1'
    )
    assert {k["kind"] for k in kinds} <= {"object", None}
    assert any(k["kind"] == "object" for k in kinds)

    afternoon.clock.advance(minutes=LATE_MINUTES)
    at_ten_past = expected_guids(afternoon)
    meltano(
        "--environment=prod", "run", "tap-marketo", "target-postgres", database=state_db, env=env
    )
    for stream in INCREMENTAL_STREAMS:
        rows = pg_guids(postgres, schema, stream)
        assert max(rows.values(), default=1) == 1, f"{stream}: a marketoGUID has two rows"
        added = set(rows) - at_two[stream]
        assert added == at_ten_past[stream] - at_two[stream], f"{stream}: not exactly the late rows"
        assert sum(rows.values()) == len(at_ten_past[stream])
    # The full-table stream was sent again in full; upserting kept one row per id.
    assert pg_type_ids(postgres, schema) == type_ids
    postgres.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def target_jsonl(meltano: Meltano) -> Path:
    """The target-jsonl executable Meltano installed (the same package users pip install)."""
    found = sorted(
        (meltano.project / ".meltano" / "loaders" / "target-jsonl").glob("venv/bin/target-jsonl")
    )
    if not found:
        pytest.fail("meltano install put no target-jsonl executable where expected")
    return found[0]


def test_plain_pipe_with_a_state_file(
    target_jsonl: Path, afternoon: MarketoSimulator, tmp_path: Path
):
    """``tap --config c.json --state s.json | target-jsonl``, keeping the last state line."""
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "base_url": afternoon.base_url,
                "client_id": afternoon.client_id,
                "client_secret": afternoon.client_secret,
                "start_date": START_DATE,
            }
        )
    )
    state = tmp_path / "s.json"

    def run(out: Path) -> dict[str, list[dict[str, Any]]]:
        target_config = tmp_path / f"{out.name}.json"
        target_config.write_text(
            json.dumps({"destination_path": str(out), "do_timestamp_file": False})
        )
        script = (
            "set -euo pipefail\n"
            'test -f "$STATE" || echo "{}" > "$STATE"\n'
            '"$TAP" --config "$CONFIG" --state "$STATE"'
            ' | "$TARGET" --config "$TARGET_CONFIG" > "$STATE.next"\n'
            'test -s "$STATE.next" && mv "$STATE.next" "$STATE"\n'
        )
        done = subprocess.run(
            ["bash", "-c", script],
            env={
                **clean_environment(),
                "TAP": str(TAP_EXECUTABLE),
                "TARGET": str(target_jsonl),
                "CONFIG": str(config),
                "STATE": str(state),
                "TARGET_CONFIG": str(target_config),
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=MELTANO_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, tail(done.stderr)
        return read_jsonl(out)

    at_two = expected_guids(afternoon)
    first = run(tmp_path / "first")
    assert guid_sets(first) == at_two
    saved = json.loads(state.read_text())
    assert set(INCREMENTAL_STREAMS) <= set(saved["bookmarks"])

    afternoon.clock.advance(minutes=LATE_MINUTES)
    at_ten_past = expected_guids(afternoon)
    second = run(tmp_path / "second")
    assert_no_duplicates(second)
    assert guid_sets(second) == {s: at_ten_past[s] - at_two[s] for s in INCREMENTAL_STREAMS}


# ------------------------------------------------------------------------------ README
def readme_quick_start_section() -> str:
    """The README from its quick-start heading to the next heading of that level."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    heading = re.search(r"^(#+) .*quick[ -]?start.*$", text, re.IGNORECASE | re.MULTILINE)
    assert heading, "README.md has no 'Quick start' heading"
    rest = text[heading.end() :]
    following = re.search(rf"^#{{1,{len(heading[1])}}} ", rest, re.MULTILINE)
    return rest[: following.start()] if following else rest


def readme_first_command() -> str:
    """The first command of the README block marked ``<!-- quickstart:run -->``."""
    block = quickstart_command("run")
    commands = [
        line.strip()
        for line in re.sub(r"\\\n\s*", " ", block).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands, "README.md's first quick-start block is empty"
    return commands[0]


def meltano_run_tail(command: str) -> str:
    """From `meltano run` on: ``... && .venv/bin/meltano run tap-marketo target-jsonl && ...``."""
    match = re.search(r"(?:^|[\s;&|(])(?:\S*/)?(meltano\s+(?:--\S+\s+)*run\s.*)$", command)
    assert match, f"the README's first quick-start command runs no `meltano run`: {command}"
    return match[1]


def output_mentions(section: str) -> list[str]:
    """Where the quick start says the output lands: ``output/``, ``output/<stream>.jsonl``..."""
    return sorted({m.rstrip(".,;:") for m in re.findall(r"output/[^\s`'\")]*", section)})


def test_readme_quick_start_meltano_run(meltano: Meltano, state_db: Path):
    """The README's first command, from `meltano run` on, in the project copy, twice."""
    first = readme_first_command()
    command_tail = meltano_run_tail(first)
    assert "tap-marketo" in command_tail
    assert "target-jsonl" in command_tail
    output = meltano.project / "output"
    shutil.rmtree(output, ignore_errors=True)
    env = {
        **clean_environment(),
        "PATH": f"{meltano.executable.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MELTANO_DATABASE_URI": f"sqlite:///{state_db}",
    }
    for attempt in (1, 2):
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-ec", command_tail],
            cwd=meltano.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=MELTANO_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"run {attempt} of `{command_tail}`:\n{tail(done.stderr)}"

    records = read_jsonl(output)
    assert set(records) == set(ALL_STREAMS), f"output/ holds {sorted(records)}"
    assert records["activities"], "the quick start delivered no activities"
    # Two runs appended to the same files; Meltano's state kept the second from repeating.
    assert_no_duplicates(records)
    # A user's first runs must not leave their checkout modified (Meltano writes a project_id
    # into a meltano.yml that has none).
    assert (meltano.project / "meltano.yml").read_bytes() == (REPO / "meltano.yml").read_bytes()
    # The README says where the output lands; those paths must exist.
    mentioned = output_mentions(readme_quick_start_section())
    assert mentioned, f"the README's quick start should say where the output landed: {first}"
    for path in mentioned:
        pattern = path.replace("<stream>", "*") + ("*" if path.endswith("/") else "")
        assert list(meltano.project.glob(pattern)), f"README mentions {path}; the run wrote none"


TYPED_TABLES = {  # three per-type tables (issue 14), with a type each that shows in columns
    "activities_send_email": {"mailing_id": "bigint", "campaign_run_id": "bigint"},
    "activities_open_email": {"is_mobile_device": "boolean", "platform": "text"},
    "activities_new_lead": {"created_date": "date", "source_type": "text"},
}


def test_meltano_run_typed_tables_into_postgres_makes_typed_columns(
    meltano: Meltano,
    postgres: Postgres,
    state_db: Path,
    afternoon: MarketoSimulator,
):
    schema = f"tap_marketo_typed_{os.getpid()}"
    postgres.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    select = json.dumps([f"{name}.*" for name in TYPED_TABLES])
    env = {**prod_env(afternoon), **postgres.target_env(schema), "TAP_MARKETO__SELECT": select}
    meltano(
        "--environment=prod", "run", "tap-marketo", "target-postgres", database=state_db, env=env
    )
    type_ids = {"activities_send_email": 6, "activities_open_email": 10, "activities_new_lead": 12}
    for table, wanted in TYPED_TABLES.items():
        columns = pg_columns(postgres, schema, table)
        for column, data_type in wanted.items():
            assert columns.get(column_for(columns, column)) == data_type, (table, columns)
        rows = pg_guids(postgres, schema, table)
        assert max(rows.values(), default=1) == 1, f"{table}: a marketoGUID has two rows"
        want = {
            r["marketoGUID"]
            for r in afternoon.expected("activities", type_ids=[type_ids[table]], since=START_DATE)
        }
        assert want
        assert set(rows) == want, table
    mailing = column_for(pg_columns(postgres, schema, "activities_send_email"), "mailing_id")
    assert postgres.json(
        f'SELECT count(*) AS n FROM "{schema}".activities_send_email WHERE "{mailing}" IS NULL'
    ) == [{"n": 0}]
    # Only the selected shapes arrive: no unified table, and one walk fed all three.
    assert not pg_columns(postgres, schema, "activities")
    postgres.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
