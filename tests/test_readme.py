"""The README stays true: its settings table and its quick-start commands."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import README, quickstart_command

ROOT = README.parent


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
