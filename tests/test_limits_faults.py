"""Living within Marketo's limits and surviving its faults (the tap as a process)."""

from __future__ import annotations

import re
import time

import pytest
from helpers import expected_guids, guid_counts, sim_config

from tap_marketo_activities.simulator import Faults, World

STREAMS = ("activities", "lead_changes", "deleted_leads")
SINCE = "2024-04-12T12:00:00Z"
CHAOS_KINDS = (
    "500",
    "502",
    "503",
    "604",
    "606",
    "608",
    "611",
    "615",
    "713",
    "601",
    "602",
    "reset",
    "slow",
)


def expected(sim, stream):
    return expected_guids(sim, stream, SINCE)


def run_series(sim, run_tap, config, times, pause=0.0):
    """Runs at virtual times; ``pause`` real seconds between runs (separate processes do
    not share a limiter, as hourly runs never need to)."""
    delivered = {s: [] for s in STREAMS}
    state, runs = None, []
    for moment in times:
        time.sleep(pause)
        sim.clock.set(moment)
        run = run_tap(config, state)
        assert run.returncode == 0, run.stderr[-3000:]
        for stream in STREAMS:
            delivered[stream] += run.records.get(stream, [])
        state, runs = run.state, [*runs, run]
    return delivered, runs


def test_chaos_delivers_what_a_clean_run_delivers(simulator, run_tap):
    times = ["2024-04-12T14:00:00Z", "2024-04-12T15:00:00Z", "2024-04-12T17:00:00Z"]
    clean_sim = simulator(World.seed_afternoon(rows=900, seed=21))
    clean, _ = run_series(clean_sim, run_tap, sim_config(clean_sim, page_size=100), times)

    chaos_sim = simulator(
        World.seed_afternoon(rows=900, seed=21),
        faults=Faults(seed=5, rate=0.1, kinds=CHAOS_KINDS, latency_s=1.5),
        token_lifetime_s=3,
        rate_limit_calls=20,
        rate_limit_window_s=4,
        max_concurrency=10,
    )
    config = sim_config(
        chaos_sim,
        page_size=100,
        max_calls_per_20s=15,  # under the simulator's 20 per window
        rate_limit_window_seconds=4,
        request_timeout=1,  # "slow" answers become read timeouts
        max_retries=12,
    )
    chaos, runs = run_series(chaos_sim, run_tap, config, times, pause=4.5)
    for stream in STREAMS:
        assert guid_counts(chaos[stream]) == guid_counts(clean[stream]), stream
        assert sorted(guid_counts(chaos[stream])) == expected(chaos_sim, stream)
    counters = chaos_sim.counters
    assert sum(counters.injected_by_code.values()) >= 5, counters
    assert counters.enforced_by_code.get("606", 0) == 0, counters  # the tap never provoked one
    assert counters.enforced_by_code.get("615", 0) == 0, counters
    summary = [line for run in runs for line in run.stderr.splitlines() if "Run summary" in line]
    assert len(summary) == len(times)
    assert any(re.search(r"retries [1-9]", line) for line in summary), summary


def test_retries_spent_fail_clearly_with_state_of_what_was_delivered(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=600, seed=2), now="2024-04-12T16:00:00Z")
    sim.inject("leadchanges.json", "502", times=50)
    run = run_tap(sim_config(sim, max_retries=2))
    assert run.returncode != 0
    errors = run.error_lines()
    assert any("Gave up on lead_changes after 3 attempts" in line for line in errors), errors
    assert "Traceback" not in run.stderr
    assert sorted(run.guids("activities")) == expected(sim, "activities")
    assert "activities" in run.state["bookmarks"]  # completed work is in the state
    assert "replication_key_value" not in run.state["bookmarks"].get("lead_changes", {})


def test_606_from_another_integration_waits_out_the_window(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now="2024-04-12T16:00:00Z")
    sim.inject("deletedleads.json", "606", times=1)
    run = run_tap(sim_config(sim, rate_limit_window_seconds=2))
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(run.guids("deleted_leads")) == expected(sim, "deleted_leads")
    summary = next(line for line in run.stderr.splitlines() if "Run summary" in line)
    waited = float(re.search(r"waited on limits ([0-9.]+) s", summary).group(1))
    assert waited >= 2.0


def test_daily_quota_607_stops_cleanly_and_next_run_completes(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=3), now="2024-04-12T16:00:00Z")
    config = sim_config(sim, page_size=60)
    sim.set_quota(used=sim.daily_quota - 12)
    first = run_tap(config)
    assert first.returncode != 0
    assert any(
        "daily API quota is spent" in line and "resets" in line for line in first.error_lines()
    )
    assert "Traceback" not in first.stderr
    sim.set_quota(used=0)
    second = run_tap(config, first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    for stream in STREAMS:
        counts = guid_counts(first.records.get(stream, []) + second.records.get(stream, []))
        assert sorted(counts) == expected(sim, stream), stream
        assert max(counts.values()) == 1, f"{stream}: a row was sent twice"


def test_max_daily_calls_budget_stops_before_exceeding(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=3), now="2024-04-12T16:00:00Z")
    sim.set_quota(used=1000)
    sim.reset_counters()
    first = run_tap(sim_config(sim, page_size=60, max_daily_calls=1010))
    assert first.returncode != 0
    assert any("max_daily_calls=1010" in line for line in first.error_lines())
    assert sim.counters.rest_calls <= 10
    assert (
        "usage.json" in first.stderr
        or sim.counters.calls_by_path.get("/rest/v1/stats/usage.json") == 1
    )
    second = run_tap(sim_config(sim, page_size=60, max_daily_calls=40_000), first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    for stream in STREAMS:
        counts = guid_counts(first.records.get(stream, []) + second.records.get(stream, []))
        assert sorted(counts) == expected(sim, stream)
        assert max(counts.values()) == 1


@pytest.mark.parametrize("kind", ["malformed", "no_result", "bad_record"])
def test_malformed_answers_fail_with_request_id_and_keep_the_bookmark(simulator, run_tap, kind):
    sim = simulator(World.seed_afternoon(rows=600, seed=4), now="2024-04-12T14:00:00Z")
    config = sim_config(sim)
    first = run_tap(config)
    assert first.returncode == 0
    before = first.state["bookmarks"]["lead_changes"]
    sim.clock.set("2024-04-12T17:00:00Z")
    sim.inject("leadchanges.json", kind, times=1)
    second = run_tap(config, first.state)
    assert second.returncode != 0
    errors = second.error_lines()
    assert any("requestId" in line for line in errors), errors
    assert "Traceback" not in second.stderr
    assert not second.records.get("lead_changes")
    after = second.state["bookmarks"]["lead_changes"]
    assert after["replication_key_value"] == before["replication_key_value"]
    assert after.get("overlap") == before.get("overlap")


def test_secrets_never_reach_logs_or_output(simulator, run_tap):
    secret = "Zq9-very-secret-client-value-4471"
    sim = simulator(
        World.seed_afternoon(rows=400, seed=5),
        now="2024-04-12T16:00:00Z",
        client_secret=secret,
        token_lifetime_s=1,
        faults=Faults(seed=3, rate=0.2, kinds=("601", "602", "500", "reset")),
    )
    run = run_tap(sim_config(sim, page_size=50), env={"LOGLEVEL": "DEBUG"})
    assert run.returncode == 0, run.stderr[-2000:]
    issued = list(sim.tokens._expiry)  # every access token the simulator handed out
    assert issued
    everything = run.stderr + run.stdout
    assert secret not in everything
    for token in issued:
        assert token not in everything
        assert token.split(":")[0] not in everything
    assert "client_secret=REDACTED" in run.stderr  # urllib3's DEBUG line was rewritten
    bad = run_tap(sim_config(sim, client_secret=secret + "x"), env={"LOGLEVEL": "DEBUG"})
    assert bad.returncode != 0
    assert secret not in bad.stderr + bad.stdout


def test_plain_http_is_refused_except_for_loopback(run_tap):
    config = {
        "base_url": "http://123-ABC-456.mktorest.com",
        "client_id": "x",
        "client_secret": "y",
        "start_date": SINCE,
    }
    run = run_tap(config)
    assert run.returncode != 0
    assert any("base_url must use https" in line for line in run.error_lines())


def test_702_no_data_is_an_empty_page(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now="2024-04-12T16:00:00Z")
    sim.inject("deletedleads.json", "702", times=1)
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-2000:]
    assert not run.records.get("deleted_leads")


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (
            {"bookmarks": {"activities": {"partitions": [{"replication_key_value": "x"}]}}},
            "'context'",
        ),
        (
            {
                "bookmarks": {
                    "activities": {"partitions": [{"context": {"a": 1}}, {"context": {"a": 1}}]}
                }
            },
            "same context twice",
        ),
        ({"bookmarks": ["activities"]}, "not a Singer state"),
    ],
)
def test_state_of_the_wrong_shape_is_refused_clearly(simulator, run_tap, state, text):
    sim = simulator(World.seed_afternoon(rows=100, seed=1), now="2024-04-12T16:00:00Z")
    run = run_tap(sim_config(sim), state)
    assert run.returncode != 0
    assert any(text in line for line in run.error_lines()), run.stderr[-1500:]
    assert "Traceback" not in run.stderr
    assert not run.records
