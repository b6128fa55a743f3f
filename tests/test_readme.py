"""The README stays true: its settings table, and every shell block it says runs.

Every ``bash`` block in the README carries a mark on the line above it:

- ``<!-- quickstart:run -->`` and ``<!-- quickstart:test -->``: the quick start's two commands
  (the first is run by tests/test_meltano.py from ``meltano run`` on; the second is what .ci/run
  runs, verbatim);
- ``<!-- runs -->``: executed here, as written, in order, in a copy of the checkout after the
  quick start;
- ``<!-- ci -->``: every line of it is in .ci/run;
- ``<!-- not run: REASON -->``: illustrative (real credentials, say), and says so.

"After the quick start" means the copy holds what the quick start's first command leaves: a
``.venv`` with the tap and Meltano, the plugins installed, and a first ``meltano run`` done.
Rather than pip-installing both again, the copy's ``.venv/bin`` holds small scripts that start
the tap and the Meltano this suite already installed; nothing else from this process's venv is
on PATH, so a block that forgets to name the venv fails with ``command not found``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import MELTANO_TIMEOUT, README, clean_environment, quickstart_command, tail

if TYPE_CHECKING:
    from helpers import Meltano

ROOT = README.parent
TAP_EXECUTABLE = Path(sys.executable).with_name("tap-marketo-activities")
SHELL_BLOCK = re.compile(
    r"^(?:<!-- (?P<mark>[^\n]*?) -->\n)?```(?:bash|sh|shell|console)\n(?P<body>.*?)\n```$",
    re.S | re.M,
)


@dataclass(frozen=True)
class Block:
    """One fenced shell block of the README, with the mark above it."""

    mark: str
    body: str
    line: int

    def __str__(self) -> str:
        return f"README.md line {self.line}: {self.body.splitlines()[0]}"


def shell_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(m["mark"] or "", m["body"], text.count("\n", 0, m.start()) + 1)
        for m in SHELL_BLOCK.finditer(text)
    ]


def settings_table() -> str:
    """The settings table exactly as `--about --format=markdown` prints it."""
    about = subprocess.run(
        [sys.executable, "-m", "tap_marketo_activities", "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    table = about.split("## Settings", 1)[1].strip().split("\n\n", 1)[0]
    assert table.startswith("| Setting |")
    return table.strip()


def readme_block(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert match, f"README lacks the {name} markers"
    return match.group(1).strip()


def test_readme_settings_table_matches_about():
    assert readme_block("settings") == settings_table(), (
        "README settings table is stale: regenerate it from "
        "`tap-marketo-activities --about --format=markdown`"
    )


def test_readme_test_command_is_what_ci_runs():
    command = quickstart_command("test")
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci, ".ci/run must run exactly the README's test command"


def test_every_shell_block_says_whether_it_runs():
    blocks = shell_blocks()
    assert len(blocks) >= 5, "the README's shell blocks were not found"
    known = ("runs", "ci", "quickstart:run", "quickstart:test")
    unmarked = [
        str(b) for b in blocks if b.mark not in known and not re.fullmatch(r"not run: \S.*", b.mark)
    ]
    assert not unmarked, (
        "mark each shell block <!-- runs -->, <!-- ci --> or <!-- not run: why -->: "
        + "; ".join(unmarked)
    )


def test_ci_blocks_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = [b for b in shell_blocks() if b.mark == "ci"]
    assert blocks, "the README's development block is not marked <!-- ci -->"
    for block in blocks:
        for line in block.body.splitlines():
            assert line in ci, f"{block}: .ci/run does not run {line!r} verbatim"


# ------------------------------------------------------------------------------ runs blocks
def launcher(path: Path, target: Path) -> None:
    """A script at path that runs target with the same arguments."""
    path.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
    path.chmod(0o755)


def without_installed_commands(path: str) -> str:
    """PATH minus folders holding the tap or Meltano, so blocks must name the venv."""
    return os.pathsep.join(
        entry
        for entry in path.split(os.pathsep)
        if entry
        and not (Path(entry) / "tap-marketo-activities").exists()
        and not (Path(entry) / "meltano").exists()
    )


def run_block(body: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", body],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=MELTANO_TIMEOUT,
        check=False,
    )


def jsonl_guids(path: Path) -> Counter[str]:
    with path.open(encoding="utf-8") as handle:
        return Counter(json.loads(line)["marketoGUID"] for line in handle if line.strip())


@pytest.mark.slow
@pytest.mark.meltano
@pytest.mark.xdist_group("meltano")
def test_runs_blocks_run_as_written_after_the_quick_start(meltano: Meltano, tmp_path: Path):
    """Each ``<!-- runs -->`` block, in README order, exits 0 with no traceback."""
    project = meltano.project
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher(bin_dir / "tap-marketo-activities", TAP_EXECUTABLE)
    launcher(bin_dir / "meltano", meltano.executable)
    launcher(bin_dir / "python", Path(sys.executable))
    for leftover in ("output", ".venv-target-jsonl"):
        shutil.rmtree(project / leftover, ignore_errors=True)
    for leftover in ("c.json", "t.json", "s.json", "s.next", "messages.jsonl"):
        (project / leftover).unlink(missing_ok=True)
    env = {
        **clean_environment(),
        "PATH": without_installed_commands(os.environ.get("PATH", "")),
        # A state backend of this test's own; the blocks name no database.
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
    }

    quick_start = quickstart_command("run")
    first_run = quick_start[quick_start.index(".venv/bin/meltano run") :]
    done = run_block(first_run, project, env)
    assert done.returncode == 0, f"the quick start's `{first_run}`:\n{tail(done.stderr)}"

    blocks = [b for b in shell_blocks() if b.mark == "runs"]
    assert len(blocks) >= 4, "fewer README blocks marked <!-- runs --> than expected"
    for block in blocks:
        done = run_block(block.body, project, env)
        output = f"--- stderr ---\n{tail(done.stderr)}\n--- stdout ---\n{tail(done.stdout)}"
        assert done.returncode == 0, f"{block} exited {done.returncode}\n{output}"
        assert "Traceback" not in done.stderr, f"{block} printed a traceback\n{output}"

    # The quick start twice: every stream in output/, nothing delivered twice.
    for stream in ("activities", "lead_changes", "deleted_leads"):
        counts = jsonl_guids(project / "output" / f"{stream}.jsonl")
        repeated = [guid for guid, n in counts.items() if n > 1]
        assert counts, f"output/{stream}.jsonl is empty"
        assert not repeated, f"output/{stream}.jsonl: delivered twice: {repeated[:3]}"
    # The plain-state-file block kept the target's last state for the next run.
    state = json.loads((project / "s.json").read_text())
    assert {"activities", "lead_changes", "deleted_leads"} <= set(state["bookmarks"])
    assert jsonl_guids(project / "output" / "plain" / "activities.jsonl")
