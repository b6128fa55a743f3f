"""An operator's first hour (issue 24): files that cannot be read are one line, not a trace.

Each test runs the real tap process on a file a person could plausibly hand it (missing,
cut short, a directory) and checks the one line they read and the exit code.
"""

from __future__ import annotations

import json
import subprocess
import tomllib

import pytest
from helpers import README, TAP, write_json


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
        f"The --config file {missing} does not exist."
    ]
    assert done.stdout == ""


def test_a_malformed_config_file_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "simulator": true,\n}\n', encoding="utf-8")
    done = run("--config", str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = errors(done)
    assert f"The --config file {path} is not valid JSON" in line
    assert "at line 3, column 1" in line


def test_a_config_path_that_is_a_directory_is_one_line(tmp_path):
    done = run("--config", str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = errors(done)
    assert f"The --config file {tmp_path} cannot be read" in line


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_malformed_state_and_catalog_files_name_line_and_column(tmp_path, option):
    config = write_json(tmp_path, "config.json", {"simulator": True})
    bad = tmp_path / "bad.json"
    bad.write_text('{"bookmarks": {\n', encoding="utf-8")
    done = run("--config", str(config), option, str(bad))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = errors(done)
    assert f"{bad}: The {option} file" in line
    assert "line 2 column 1" in line


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_missing_state_and_catalog_files_are_named(tmp_path, option):
    config = write_json(tmp_path, "config.json", {"simulator": True})
    missing = tmp_path / "nope.json"
    done = run("--config", str(config), option, str(missing))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert str(missing) in done.stderr
    assert "No such file or directory" in done.stderr
    assert done.stdout == ""


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


def test_about_the_readme_and_pyproject_agree_on_python_versions():
    """--about lists the classifiers' versions; the lowest is requires-python and the README's."""
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    about = json.loads(run("--about", "--format=json").stdout)
    versions = about["supported_python_versions"]
    lowest = min(versions, key=lambda v: tuple(map(int, v.split("."))))
    assert pyproject["project"]["requires-python"] == f">={lowest}"
    assert f"Python {lowest}+" in README.read_text(encoding="utf-8")
    assert pyproject["tool"]["mypy"]["python_version"] == lowest


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
