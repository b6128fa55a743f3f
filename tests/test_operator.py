"""An operator's first hour (issue 24): files that cannot be read are one line, not a trace.

Each test runs the real tap process on a file a person could plausibly hand it (missing,
cut short, a directory) and checks the one line they read and the exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import README, TAP, write_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself needs tomli below 3.11
    import tomli as tomllib


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TAP, *args], capture_output=True, text=True, timeout=120, check=False)


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if "| ERROR" in line]


@pytest.mark.parametrize("mode", [(), ("--discover",), ("--test",)])
def test_a_missing_config_file_is_one_line(tmp_path, mode):
    missing = tmp_path / "confg.json"
    done = run("--config", str(missing), *mode)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert [line.split("| ", 3)[-1] for line in errors(done)] == [
        f"{missing}: The --config file does not exist."
    ]
    assert done.stdout == ""


def test_a_malformed_config_file_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "simulator": true,\n}\n', encoding="utf-8")
    done = run("--config", str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = errors(done)
    assert f"{path}: The --config file is not valid JSON" in line
    # Where Python's json places a trailing comma: the brace after it (3.10 to 3.12), the
    # comma itself (3.13: "Illegal trailing comma before end of object").
    assert line.endswith(("at line 3, column 1.", "at line 2, column 20."))


def test_a_config_path_that_is_a_directory_is_one_line(tmp_path):
    done = run("--config", str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = errors(done)
    assert f"{tmp_path}: The --config file cannot be read" in line


ADVICE = {
    "--state": "Pass the state this tap last emitted, or {} to start from start_date.",
    "--catalog": "Pass a catalog this tap wrote with --discover.",
}


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The run's only ERROR line, without its time/level/logger prefix; no trace, no output."""
    assert "Traceback" not in done.stderr
    assert "Usage:" not in done.stderr
    assert done.stdout == ""
    (line,) = errors(done)
    return line.split("| ", 3)[-1]


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_malformed_state_and_catalog_files_name_line_and_column(tmp_path, option):
    config = write_json(tmp_path, "config.json", {"simulator": True})
    bad = tmp_path / "bad.json"
    bad.write_text('{"bookmarks": {\n', encoding="utf-8")
    done = run("--config", str(config), option, str(bad))
    assert done.returncode == 1
    assert one_line(done) == (
        f"{bad}: The {option} file is not valid JSON: Expecting property name enclosed in "
        f"double quotes at line 2, column 1. {ADVICE[option]}"
    )


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_missing_state_and_catalog_files_are_one_line(tmp_path, option):
    """Not click's three-line usage error (exit 2): the file named, exit 1."""
    config = write_json(tmp_path, "config.json", {"simulator": True})
    missing = tmp_path / "nope.json"
    done = run("--config", str(config), option, str(missing))
    assert done.returncode == 1
    assert one_line(done) == f"{missing}: The {option} file does not exist."


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_unreadable_state_and_catalog_files_are_one_line(tmp_path, option):
    config = write_json(tmp_path, "config.json", {"simulator": True})
    locked = write_json(tmp_path, "locked.json", {})
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("this user reads files whatever their mode (root)")
        done = run("--config", str(config), option, str(locked))
    finally:
        locked.chmod(0o600)
    assert done.returncode == 1
    assert one_line(done) == f"{locked}: The {option} file cannot be read (Permission denied)."


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_state_and_catalog_paths_that_cannot_be_read_as_files_are_one_line(tmp_path, option):
    """A directory (readable by root too) and bytes that are not UTF-8."""
    config = write_json(tmp_path, "config.json", {"simulator": True})
    done = run("--config", str(config), option, str(tmp_path))
    assert done.returncode == 1
    assert one_line(done) == f"{tmp_path}: The {option} file cannot be read (Is a directory)."
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"caf\xe9": 1}')
    done = run("--config", str(config), option, str(latin))
    assert done.returncode == 1
    assert one_line(done) == (
        f"{latin}: The {option} file is not UTF-8 text (byte 5 cannot be read); save it as "
        "UTF-8 JSON."
    )


def test_a_state_file_of_the_wrong_kind_is_named(tmp_path):
    config = write_json(tmp_path, "config.json", {"simulator": True})
    listed = write_json(tmp_path, "list.json", [])
    done = run("--config", str(config), "--state", str(listed))
    assert done.returncode == 1
    assert one_line(done) == (
        f"{listed}: The --state file holds a list, not a Singer state object "
        f'({{"bookmarks": {{...}}}}). {ADVICE["--state"]}'
    )


def test_simulator_history_days_shows_a_bulk_backfill_and_its_hand_over(run_tap):
    """The built-in simulator N days back: a first sync backfills them through bulk, then REST."""
    run = run_tap({"simulator": True, "simulator_history_days": 5}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Backfilling stream 'activities'" in run.stderr
    assert "through bulk export jobs" in run.stderr
    assert "bulk backfill done up to" in run.stderr
    assert (
        "(start_date; no bookmark yet)"
        not in run.stderr.split("Backfilling", 1)[1].split("Finished stream 'activities'")[0]
    )
    dates = sorted(
        m["record"]["activityDate"]
        for m in run.messages
        if m["type"] == "RECORD" and m["stream"] == "activities"
    )
    days = {d[:10] for d in dates}
    assert len(days) >= 5, sorted(days)
    assert any(m["type"] == "RECORD" and m["stream"] == "activity_types" for m in run.messages)


def test_about_the_readme_pyproject_and_ci_agree_on_python_versions():
    """--about lists 3.10 to 3.13, the classifiers' versions; the lowest is requires-python,
    the README's, the linters' target, and the one .ci/run tests in a venv of its own."""
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    about = json.loads(run("--about", "--format=json").stdout)
    versions = about["supported_python_versions"]
    classifiers = [
        c.rsplit(" :: ", 1)[1]
        for c in pyproject["project"]["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert versions == classifiers == ["3.10", "3.11", "3.12", "3.13"]
    lowest = versions[0]
    assert pyproject["project"]["requires-python"] == f">={lowest}"
    assert f"Python {lowest}+" in README.read_text(encoding="utf-8")
    assert pyproject["tool"]["mypy"]["python_version"] == lowest
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + lowest.replace(".", "")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert f"python{lowest}" in ci


def test_request_duration_is_the_call_not_the_limiter_wait(simulator):
    """response.elapsed (the SDK's http_request_duration) leaves out the limiter's wait."""
    import logging  # noqa: PLC0415

    from tap_marketo_activities.simulator import World  # noqa: PLC0415
    from tap_marketo_activities.wire.transport import MarketoConnection  # noqa: PLC0415

    sim = simulator(World.seed_afternoon(rows=50, seed=1), now="2024-04-12T16:00:00Z")
    config = {
        "base_url": sim.base_url,
        "request_timeout": 30,
        "max_retries": 0,
        "retry_base_seconds": 0.05,
        "rate_limit_window_seconds": 3,
        "max_calls_per_20s": 1,
        "max_concurrent_calls": 1,
    }
    connection = MarketoConnection(config, logging.getLogger("test"))
    url = f"{sim.base_url}/identity/oauth/token"
    connection.session.get(url, timeout=30).close()
    second = connection.session.get(url, timeout=30)  # waits for the next 3 s window
    second.close()
    assert connection.stats.waited_s >= 1
    assert second.elapsed.total_seconds() < 1


def test_test_mode_reads_only_selected_streams_and_counts_what_it_sent(simulator, run_tap):
    """--test: no per-type table nobody selected; the summary counts the records sent."""
    from helpers import sim_config  # noqa: PLC0415

    from tap_marketo_activities.simulator import World  # noqa: PLC0415

    sim = simulator(World.seed_afternoon(rows=300, seed=2), now="2024-04-12T16:00:00Z")
    run = run_tap(sim_config(sim), args=("--test",))
    assert run.returncode == 0, run.stderr[-2000:]
    sent: dict[str, int] = {}
    for m in run.messages:
        if m["type"] == "RECORD":
            sent[m["stream"]] = sent.get(m["stream"], 0) + 1
    assert sent == {"activities": 1, "activity_types": 1, "deleted_leads": 1, "lead_changes": 1}
    schemas = {m["stream"] for m in run.messages if m["type"] == "SCHEMA"}
    assert schemas == set(sent)
    [summary] = [line for line in run.stderr.splitlines() if "Run summary:" in line]
    counted = summary.split("records ", 1)[1].split(";", 1)[0]
    assert counted == "4 (activities=1, activity_types=1, deleted_leads=1, lead_changes=1)"
    assert "as child stream" not in run.stderr
