"""The README's advice for selecting a typed table keeps the four streams loading.

An environment's ``select`` list replaces the extractor's (it does not add to it), and
``meltano select`` writes to the active environment when there is one. So the advice we give
must put the pattern in the extractor's own list whatever environment the user's shell has
active; these tests run the README's block, as written, with ``MELTANO_ENVIRONMENT=prod``
exported, then ``meltano run`` in that environment, and check that the typed table arrived next
to ``activities``, ``lead_changes``, ``deleted_leads`` and ``activity_types``. A second test
shows the trap the README warns of: the same command without ``--no-environment`` writes the
environment's own list, holding the typed table alone.

Both run in the session's Meltano project copy (plugins already installed) and put its
``meltano.yml`` back afterwards; like every Meltano test they run on the ``meltano`` worker.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import TYPE_CHECKING

import pytest
import yaml
from helpers import MELTANO_TIMEOUT, README, clean_environment, read_jsonl, tail

from tap_marketo_activities.simulator import MarketoSimulator, World

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from helpers import Meltano

pytestmark = [pytest.mark.slow, pytest.mark.meltano, pytest.mark.xdist_group("meltano")]

START_DATE = "2024-04-12T12:00:00Z"  # the seed afternoon's start
FOUR_STREAMS = ("activity_types", "activities", "lead_changes", "deleted_leads")
TYPED = "activities_send_email"
SEND_EMAIL = 6
BLOCK_MARK = (
    "<!-- not run: it changes meltano.yml; tests/test_meltano_select.py runs it in a copy -->"
)


def readme_select_block() -> str:
    """The README's bash block that selects a typed table (the one marked for this test)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(BLOCK_MARK) + r"\n```bash\n(.*?)\n```", text, re.S)
    assert match, f"README.md has no bash block under {BLOCK_MARK!r}"
    return match.group(1)


@pytest.fixture
def restored(meltano: Meltano) -> Iterator[Path]:
    """The session's project copy, its meltano.yml restored after the test."""
    path = meltano.project / "meltano.yml"
    before = path.read_bytes()
    bin_dir = meltano.project / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "meltano"
    if not launcher.exists():  # what the README's blocks call; test_readme makes the same one
        launcher.write_text(f'#!/bin/sh\nexec "{meltano.executable}" "$@"\n')
        launcher.chmod(0o755)
    try:
        yield meltano.project
    finally:
        path.write_bytes(before)


@pytest.fixture
def afternoon() -> Iterator[MarketoSimulator]:
    with MarketoSimulator(World.seed_afternoon()) as sim:
        yield sim


def run_shell(body: str, restored: Path) -> None:
    """Run body with bash as a user would, with the prod environment active in the shell."""
    env = {**clean_environment(), "MELTANO_ENVIRONMENT": "prod"}
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", body],
        cwd=restored,
        env=env,
        capture_output=True,
        text=True,
        timeout=MELTANO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{body!r} exited {done.returncode}\n{tail(done.stderr)}"


def run_prod(
    meltano: Meltano, sim: MarketoSimulator, out: Path, database: Path
) -> dict[str, list[dict[str, object]]]:
    """meltano run tap-marketo target-jsonl in prod (the simulator standing in for Marketo)."""
    env = {
        "TAP_MARKETO_BASE_URL": sim.base_url,
        "TAP_MARKETO_CLIENT_ID": sim.client_id,
        "TAP_MARKETO_CLIENT_SECRET": sim.client_secret,
        "TAP_MARKETO_START_DATE": START_DATE,
        "TARGET_JSONL_DESTINATION_PATH": str(out),
    }
    meltano("--environment=prod", "run", "tap-marketo", "target-jsonl", env=env, database=database)
    return read_jsonl(out)


def send_email_guids(sim: MarketoSimulator) -> set[str]:
    return {
        r["marketoGUID"]
        for r in sim.expected("activities", type_ids=[SEND_EMAIL], since=START_DATE)
    }


def test_readme_select_advice_adds_the_typed_table_to_the_four_streams(
    meltano: Meltano, restored: Path, afternoon: MarketoSimulator, tmp_path: Path
):
    run_shell(readme_select_block(), restored)

    config = yaml.safe_load((restored / "meltano.yml").read_text())
    (extractor,) = [p for p in config["plugins"]["extractors"] if p["name"] == "tap-marketo"]
    assert sorted(extractor["select"]) == sorted(f"{s}.*" for s in (*FOUR_STREAMS, TYPED))
    for environment in config["environments"]:
        for plugin in environment.get("config", {}).get("plugins", {}).get("extractors", []):
            assert "select" not in plugin, f"{environment['name']} got a select list of its own"

    records = run_prod(meltano, afternoon, tmp_path / "out", tmp_path / "meltano.db")
    for stream in FOUR_STREAMS:
        assert records.get(stream), f"{stream} stopped loading after selecting {TYPED}"
    assert {r["marketoGUID"] for r in records.get(TYPED, [])} == send_email_guids(afternoon)
    assert send_email_guids(afternoon), "the seed afternoon has no Send Email activity"


def test_select_in_an_environment_writes_the_environments_own_list(restored: Path):
    """The trap the README warns of, so that the warning stays true of the Meltano we pin.

    Without ``--no-environment`` the pattern lands in the active environment's own ``select``,
    which Meltano uses instead of the extractor's list (the first test's run shows the
    extractor's list is what a run loads when the environment has none).
    """
    run_shell(f".venv/bin/meltano select tap-marketo {TYPED} '*'", restored)

    config = yaml.safe_load((restored / "meltano.yml").read_text())
    (prod,) = [e for e in config["environments"] if e["name"] == "prod"]
    (extractor,) = prod["config"]["plugins"]["extractors"]
    assert extractor["select"] == [f"{TYPED}.*"], json.dumps(prod)
