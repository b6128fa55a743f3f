"""Hostile config and a hostile network (issue 12 items 1, 2, 6, 7; issue 11 items 2, 3).

Each test reproduces the issue's input, runs the tap as a process and asserts the line a
person reads, the exit code, that no traceback reaches stderr, and that nothing was sent
or emitted where it must not be.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest
import yaml
from helpers import (
    README,
    TAP,
    expected_guids,
    parse_messages,
    sigterm_after_records,
    sim_config,
    write_json,
)

from tap_marketo_activities.simulator import MarketoSimulator, World

NOW = "2024-04-12T16:00:00Z"
SINCE = "2024-04-12T12:00:00Z"
SECRET = "Zq9-hostile-config-secret-8812"
IDENTITY = "/identity/oauth/token"
SDK_SUMMARY = "Config validation failed"  # the SDK's own closing line after config errors


def one_error(run) -> str:
    """The single ERROR line (besides the SDK's closing summary); no traceback."""
    errors = [line for line in run.error_lines() if not line.endswith(SDK_SUMMARY)]
    assert len(errors) == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    return errors[0]


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None (the test then skips)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# -- 12.1 plain HTTP, userinfo, secrets in validation messages ------------------------


@pytest.mark.parametrize("scheme", ["HTTP", "Http", " http", "http"])
def test_plain_http_to_another_host_is_refused_and_nothing_is_sent(run_tap, scheme):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    world = World.seed_afternoon(rows=50, seed=1)
    with MarketoSimulator(world, host="0.0.0.0", client_secret=SECRET) as sim:
        config = sim_config(sim)
        config["base_url"] = f"{scheme}://{address}:{sim.port}"
        run = run_tap(config)
        assert run.returncode == 1
        assert "base_url must use https" in one_error(run)
        assert sim.counters.total_calls == 0  # the secret never left the machine
        assert SECRET not in run.stderr + run.stdout
        assert not run.messages


def test_loopback_simulator_may_use_plain_http_in_any_case(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=50, seed=1), now=NOW)
    config = sim_config(sim, base_url=sim.base_url.replace("http://", "HTTP://"))
    run = run_tap(config)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.records["activities"]


@pytest.mark.parametrize(
    ("base_url", "text"),
    [
        ("ftp://someone:pa55word@example.com", "base_url must be an http(s) URL"),
        ("https://someone:pa55word@example.com", "base_url must not contain a user name"),
    ],
)
def test_userinfo_in_base_url_is_never_echoed(run_tap, base_url, text):
    config = {"base_url": base_url, "client_id": "x", "client_secret": "y", "start_date": SINCE}
    run = run_tap(config)
    assert run.returncode == 1
    assert text in one_error(run)
    assert "pa55word" not in run.stderr + run.stdout
    assert "someone" not in run.stderr + run.stdout


def test_wrongly_typed_secret_is_named_not_printed(run_tap):
    config = {
        "base_url": "https://123-ABC-456.mktorest.com",
        "client_id": "x",
        "client_secret": {"a": SECRET},
        "start_date": SINCE,
    }
    run = run_tap(config)
    assert run.returncode == 1
    assert one_error(run).endswith("| client_secret must be text (a JSON string).")
    assert SECRET not in run.stderr + run.stdout


# -- 12.2 the identity endpoint is retried like every other call -----------------------


@pytest.mark.parametrize("kind", ["503", "reset"])
def test_first_token_is_retried(simulator, run_tap, kind):
    sim = simulator(World.seed_afternoon(rows=300, seed=4), now=NOW)
    sim.inject(IDENTITY, kind, times=2)
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert sorted(run.guids("deleted_leads")) == expected_guids(sim, "deleted_leads", SINCE)
    assert sim.counters.injected_by_code[kind] == 2
    assert run.stderr.count("Retrying the identity endpoint") == 2


def test_token_renewal_mid_run_is_retried(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=6), now=NOW)
    # Mid-run, Marketo says the token expired (602); its renewal meets two 503s.
    sim.inject("activities.json", "602", times=1, after=3)
    sim.inject(IDENTITY, "503", times=2, after=1)  # the renewal, not the first token
    run = run_tap(sim_config(sim, page_size=20, activity_type_ids=[1, 6]))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert sim.counters.injected_by_code == {"602": 1, "503": 2}
    assert sim.counters.identity_calls == 4
    assert run.stderr.count("Retrying the identity endpoint") == 2
    for stream in ("lead_changes", "deleted_leads"):
        assert sorted(run.guids(stream)) == expected_guids(sim, stream, SINCE), stream


def test_identity_outage_ends_in_one_line(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=4), now=NOW)
    sim.inject(IDENTITY, "503", times=50)
    run = run_tap(sim_config(sim, max_retries=2))
    assert run.returncode == 1
    line = [x for x in run.error_lines() if "identity" in x]
    assert len(line) == 1, run.stderr[-2000:]
    assert "Gave up on Marketo's identity endpoint after 3 attempts: identity endpoint " in line[0]
    assert "answered HTTP 503" in line[0]
    assert "Traceback" not in run.stderr
    assert not run.records
    assert sim.counters.rest_calls == 0


# -- 12.6 values that overflow; settings from the environment ----------------------------


@pytest.mark.parametrize(
    ("setting", "value", "text"),
    [
        ("lookback_minutes", 1e12, "lookback_minutes must be"),
        ("lookback_minutes", 10**9, "lookback_minutes must be at most 10080."),
        ("request_timeout", 1e12, "request_timeout must be"),
        ("request_timeout", 10**12, "request_timeout must be at most 3600."),
        ("max_retries", 10**6, "max_retries must be at most 50."),
        ("retry_base_seconds", 1e300, "retry_base_seconds must be at most 60."),
    ],
)
def test_config_values_that_overflow_are_refused_by_name(simulator, run_tap, setting, value, text):
    sim = simulator(World.seed_afternoon(rows=50, seed=1), now=NOW)
    run = run_tap(sim_config(sim, **{setting: value}))
    assert run.returncode == 1
    assert text in one_error(run)
    assert not run.messages
    assert sim.counters.total_calls == 0


def _env_run(tmp_path, sim, **variables: str):
    env = {
        **os.environ,
        "TAP_MARKETO_ACTIVITIES_BASE_URL": sim.base_url,
        "TAP_MARKETO_ACTIVITIES_CLIENT_ID": sim.client_id,
        "TAP_MARKETO_ACTIVITIES_CLIENT_SECRET": sim.client_secret,
        "TAP_MARKETO_ACTIVITIES_START_DATE": SINCE,
        **variables,
    }
    done = subprocess.run(
        [*TAP, "--config", "ENV"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    return done, parse_messages(done.stdout) if done.returncode == 0 else []


def test_environment_lists_are_parsed(simulator, tmp_path):
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now=NOW)
    done, messages = _env_run(tmp_path, sim, TAP_MARKETO_ACTIVITIES_ACTIVITY_TYPE_IDS="1,6")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "activities"]
    types = {row["activityTypeId"] for row in rows}
    assert types == {1, 6}
    assert "activity_type_ids': [1, 6]" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "text"),
    [
        ("PAGE_SIZE", "abc", "page_size from the environment (TAP_MARKETO_ACTIVITIES_PAGE_SIZE)"),
        ("ACTIVITY_TYPE_IDS", "1,x", "activity_type_ids from the environment"),
        ("SIMULATOR", "maybe", "simulator from the environment"),
    ],
)
def test_environment_values_are_refused_by_name(simulator, tmp_path, variable, value, text):
    sim = simulator(World.seed_afternoon(rows=50, seed=1), now=NOW)
    done, _ = _env_run(tmp_path, sim, **{f"TAP_MARKETO_ACTIVITIES_{variable}": value})
    errors = [x for x in done.stderr.splitlines() if "| ERROR" in x and SDK_SUMMARY not in x]
    assert done.returncode == 1
    assert len(errors) == 1, done.stderr[-2000:]
    assert text in errors[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert sim.counters.total_calls == 0


# -- 12.7 SIGTERM ----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_exits_non_zero_and_the_state_resumes(simulator, run_tap, tmp_path, signum):
    """SIGTERM and Ctrl-C (SIGINT) of a REST run: one line, 143 / 130, a state that resumes."""
    sim = simulator(World.seed_afternoon(rows=1500, seed=9), now=NOW)
    config = sim_config(sim, page_size=40)
    code, written, stderr = sigterm_after_records(
        write_json(tmp_path, "config.json", config), 300, timeout=60, signum=signum
    )
    assert code == 128 + signum, stderr[-2000:]
    assert len([line for line in stderr.splitlines() if "Stopped by" in line]) == 1
    assert f"Stopped by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    resumed = run_tap(config, state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    delivered = {
        m["record"]["marketoGUID"]
        for m in written + resumed.messages
        if m["type"] == "RECORD" and m["stream"] == "activities"
    }
    assert set(expected_guids(sim, "activities", SINCE)) <= delivered


# -- 11.2 start_date messages ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2024-13-01T00:00:00Z", "start_date '2024-13-01T00:00:00Z' is not a date (month"),
        ("2024-02-30T00:00:00Z", "start_date '2024-02-30T00:00:00Z' is not a date (day"),
        ("yesterday", "start_date 'yesterday' is not a date"),
        ("2024-04-12T12:00:00", "start_date '2024-04-12T12:00:00' needs a time zone"),
        ("2999-01-01T00:00:00Z", "start_date '2999-01-01T00:00:00Z' is in the future"),
    ],
)
def test_start_date_messages_say_what_is_wrong(simulator, run_tap, value, text):
    sim = simulator(World.seed_afternoon(rows=50, seed=1), now=NOW)
    run = run_tap(sim_config(sim, start_date=value))
    assert run.returncode == 1
    assert text in one_error(run)
    assert sim.counters.total_calls == 0


def test_a_date_alone_is_midnight_utc(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=3), now=NOW)
    run = run_tap(sim_config(sim, start_date="2024-04-12"))
    assert run.returncode == 0, run.stderr[-2000:]
    want = expected_guids(sim, "deleted_leads", "2024-04-12T00:00:00Z")
    assert sorted(run.guids("deleted_leads")) == want


# -- 11.3 which settings are required, and when ----------------------------------------


def test_discover_needs_no_start_date(simulator, run_tap):
    # Discovery asks the instance for its activity types (the per-type tables), so it needs
    # the connection settings; start_date it does not need.
    sim = simulator(World.seed_afternoon(rows=100, seed=3), now="2024-04-12T16:00:00Z")
    config = {k: v for k, v in sim_config(sim).items() if k != "start_date"}
    done = run_tap(config, args=("--discover",))
    assert done.returncode == 0, done.stderr[-2000:]
    streams = {s["tap_stream_id"] for s in json.loads(done.stdout)["streams"]}
    assert {"activity_types", "activities", "lead_changes", "deleted_leads"} <= streams
    assert "activities_send_email" in streams


def test_required_settings_are_declared_for_meltano_and_the_readme():
    meltano = yaml.safe_load((README.parent / "meltano.yml").read_text(encoding="utf-8"))
    [plugin] = [p for p in meltano["plugins"]["extractors"] if p["name"] == "tap-marketo"]
    assert plugin["settings_group_validation"] == [
        ["client_id", "client_secret", "base_url", "start_date"],
        ["simulator"],
    ]
    readme = README.read_text(encoding="utf-8")
    for name in ("client_id", "client_secret", "base_url", "start_date"):
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        assert "Required unless simulator is true" in row, row


# -- issue 24: unknown settings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("lookback_minute", "Unknown setting 'lookback_minute': did you mean lookback_minutes?"),
        ("pagesize", "Unknown setting 'pagesize': did you mean page_size?"),
        ("colour", "Unknown setting 'colour': the README lists every setting."),
    ],
)
def test_an_unknown_setting_is_refused_before_any_call(simulator, run_tap, key, text):
    sim = simulator(World.seed_afternoon(rows=50, seed=1), now=NOW)
    run = run_tap({**sim_config(sim, start_date=SINCE), key: 30})
    assert run.returncode == 1
    assert text in one_error(run)
    assert sim.counters.total_calls == 0
    assert run.messages == []


def test_meltano_extras_and_sdk_settings_are_not_unknown(simulator, run_tap):
    """Meltano's ``_``-prefixed extras and the SDK's built-in settings are accepted."""
    sim = simulator(World.seed_afternoon(rows=50, seed=1), now=NOW)
    config = {
        **sim_config(sim, start_date=SINCE),
        "_select": ["activities.*"],
        "flattening_enabled": False,
        "stream_maps": {},
    }
    run = run_tap(config)
    assert run.returncode == 0, run.stderr[-2000:]
