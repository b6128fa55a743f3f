"""A run's log reads as one voice: what was read, what was new, where the bookmark is.

The tap runs as a process against the simulator, twice with the state carried over, so the
second run re-reads its lookback windows and finds nothing new: the case where the SDK used to
add "Pagination stopped after 0 pages" next to our own "N overlap re-reads skipped".
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from helpers import expected_guids, sim_config

from tap_marketo_activities.logs import Progress
from tap_marketo_activities.simulator import World
from tap_marketo_activities.streams.walk import describe_start
from tap_marketo_activities.sync.incremental import PartitionSync

INCREMENTAL = ("activities", "lead_changes", "deleted_leads")
NOISE = (
    "Pagination stopped after",  # the SDK's, for a walk our paginator ended on purpose
    "Skipping parse of env var settings",  # says nothing when ENV was not asked for
    "Starting incremental sync of",  # names the bookmark as the start; the walk starts earlier
)


def metric_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "METRIC: " in line]


def test_a_run_after_a_run_logs_what_was_new_and_no_sdk_noise(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=600, seed=5), now="2024-04-12T16:00:00Z")
    first = run_tap(sim_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.advance(minutes=5)
    second = run_tap(sim_config(sim), first.state)
    assert second.returncode == 0, second.stderr[-2000:]

    for run in (first, second):
        for noise in NOISE:
            assert noise not in run.stderr, f"log noise: {noise!r}"
        assert "Traceback" not in run.stderr
        finished = [line for line in run.stderr.splitlines() if "Finished stream '" in line]
        for stream in INCREMENTAL:
            mine = [line for line in finished if f"Finished stream '{stream}'" in line]
            assert mine, f"no closing line for {stream}"
            assert all(re.search(r"\d+ new rows, \d+ overlap re-reads skipped", x) for x in mine)
            assert all(re.search(r"bookmark \d{4}-\d\d-\d\dT", x) for x in mine)
        assert sum("Run summary:" in line for line in run.stderr.splitlines()) == 1
        [summary] = [line for line in run.stderr.splitlines() if "Run summary:" in line]
        for stream in (*INCREMENTAL, "activity_types"):  # every stream that ran
            assert re.search(rf"\b{stream}=\d+", summary.split("records", 1)[1]), summary
    # where each pass started, and why
    for stream in INCREMENTAL:
        assert re.search(
            rf"Reading stream '{stream}'.* from 2024-04-12T12:00:00Z "
            r"\(start_date; no bookmark yet\)",
            first.stderr,
        ), stream
        assert re.search(
            rf"Reading stream '{stream}'.* from (\S+) \(bookmark (\S+) minus 60 min lookback\)",
            second.stderr,
        ), stream
    # the second run re-read its windows: it says how many rows it skipped, once per partition
    skipped = [int(m[1]) for m in re.finditer(r"(\d+) overlap re-reads skipped", second.stderr)]
    assert sum(skipped) > 0


def test_a_plain_run_logs_no_metrics_and_no_deselected_streams(simulator, run_tap):
    """Metric lines only when asked for; no line per per-type table nobody selected."""
    sim = simulator(World.seed_afternoon(rows=600, seed=5), now="2024-04-12T16:00:00Z")
    quiet = run_tap(sim_config(sim))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert metric_lines(quiet.stderr) == []
    assert "Skipping deselected stream" not in quiet.stderr
    assert len(quiet.stderr.splitlines()) < 25, quiet.stderr
    loud = run_tap(sim_config(sim, metrics_log_level="INFO"))
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert any("record_count" in line for line in metric_lines(loud.stderr))
    debug = run_tap(sim_config(sim), env={"LOGLEVEL": "DEBUG"})
    assert any("record_count" in line for line in metric_lines(debug.stderr))


def test_max_lateness_is_a_metric_line_like_the_sdks(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=600, seed=5), now="2024-04-12T14:00:00Z")
    first = run_tap(sim_config(sim))
    sim.clock.advance(minutes=10)  # the 13:45 campaign commits its last rows: late ones
    second = run_tap(sim_config(sim, metrics_log_level="INFO"), first.state)
    assert second.returncode == 0, second.stderr[-2000:]

    sdk_lines = [line for line in metric_lines(second.stderr) if "record_count" in line]
    [ours] = [line for line in metric_lines(second.stderr) if "max_lateness_seconds" in line]
    # the same logger and the same compact JSON as the SDK's own metric lines
    assert sdk_lines
    logger_column = sdk_lines[0].split(" | ")[2]
    assert ours.split(" | ")[2] == logger_column
    payload = ours.split("METRIC: ", 1)[1]
    point = json.loads(payload)
    assert payload == json.dumps(point, separators=(",", ":"))
    assert point["type"] == "gauge"
    assert point["metric"] == "max_lateness_seconds"
    assert isinstance(point["value"], int)
    assert point["value"] > 0, "the scenario should have late rows"
    assert set(point["tags"]) == {"pid"}


@pytest.mark.parametrize(
    ("bookmark", "line"),
    [
        (None, "2024-04-12T12:00:00Z (start_date; no bookmark yet)"),
        (
            "2024-04-12T15:00:00Z",
            "2024-04-12T14:00:00Z (bookmark 2024-04-12T15:00:00Z minus 60 min lookback)",
        ),
        (
            "2024-04-12T12:30:00Z",
            "2024-04-12T12:00:00Z (bookmark 2024-04-12T12:30:00Z; not before start_date)",
        ),
    ],
)
def test_the_reading_line_says_where_a_pass_starts_and_why(bookmark, line):
    sync = reading_sync(bookmark)
    assert describe_start(sync, sync.start()) == line


def test_the_reading_line_after_a_bulk_hand_over_names_the_bulk_end():
    """After a bulk backfill the REST pass starts past start_date: not 'no bookmark yet'."""
    sync = reading_sync(None)
    sync.window_start = dt.datetime(2024, 4, 12, 16, tzinfo=dt.timezone.utc)
    assert describe_start(sync, sync.start()) == (
        "2024-04-12T16:00:00Z (bulk backfill done up to 2024-04-12T17:00:00Z minus 60 min lookback)"
    )


def reading_sync(bookmark: str | None) -> PartitionSync:
    utc = dt.timezone.utc
    state = {} if bookmark is None else {"replication_key_value": bookmark}
    return PartitionSync(
        {"replication_key": "activityDate", **state},
        label="stream 'activities'",
        start_date=dt.datetime(2024, 4, 12, 12, tzinfo=utc),
        lookback=dt.timedelta(minutes=60),
        run_started=lambda: dt.datetime(2024, 4, 12, 18, tzinfo=utc),
    )


def test_a_long_rest_walk_says_how_far_it_is(simulator, run_tap):
    """A progress line per period (here every page): rows so far and the date reached."""
    sim = simulator(World.seed_afternoon(rows=1500, seed=5), now="2024-04-12T16:00:00Z")
    config = sim_config(sim, page_size=100, max_concurrent_calls=1)
    quiet = run_tap(config)
    assert "Still reading" not in quiet.stderr  # a short walk: no line before a minute
    run = run_tap(config, env={"TAP_MARKETO_PROGRESS_SECONDS": "0"})
    assert run.returncode == 0, run.stderr[-2000:]
    found: dict[str, list[tuple[int, str]]] = {}
    for m in re.finditer(
        r"Still reading (stream 'activities'.*?): (\d+) new rows so far, activityDate "
        r"reached (\S+)",
        run.stderr,
    ):
        found.setdefault(m[1], []).append((int(m[2]), m[3]))
    assert sum(map(len, found.values())) >= 5
    for lines in found.values():  # each partition's walk counts up
        rows = [n for n, _ in lines]
        assert rows == sorted(rows)
        assert all("2024-04-12T12:00:00Z" <= when <= "2024-04-12T16:00:00Z" for _, when in lines)
    assert sum(lines[-1][0] for lines in found.values()) <= len(run.guids("activities"))


def test_progress_is_due_once_per_period():
    now = [0.0]
    progress = Progress(every=60, clock=lambda: now[0])
    assert not progress.due()
    now[0] = 59
    assert not progress.due()
    now[0] = 61
    assert progress.due()
    assert not progress.due()
    now[0] = 122
    assert progress.due()


LIMITER_LINE = re.compile(
    r"Waiting on the rate limiter to read (stream '(\w+)'[^(]*) \((\d+) rows of \2 sent so "
    r"far\): waited (\d+) s so far, (\d+) calls? in the last 2 s \(max_calls_per_20s=1\); a "
    r"place frees in about (\d+) s\."
)


def test_a_wait_on_the_rate_limiter_says_what_it_waits_for(simulator, run_tap):
    """One call per 2 s window: each call waits; with a 0.5 s period every wait is told."""
    sim = simulator(World.seed_afternoon(rows=120, seed=5), now="2024-04-12T16:00:00Z")
    config = sim_config(
        sim,
        activity_type_ids=[1],
        max_calls_per_20s=1,
        rate_limit_window_seconds=2,
        max_concurrent_calls=1,
    )
    quiet = run_tap(config)  # the same waits, each under the few seconds worth a line
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "Waiting on the rate limiter" not in quiet.stderr
    run = run_tap(config, env={"TAP_MARKETO_PROGRESS_SECONDS": "0.5"})
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [LIMITER_LINE.search(line) for line in run.stderr.splitlines()]
    told = [m for m in lines if m]
    waits = [line for line in run.stderr.splitlines() if "Waiting on the rate limiter" in line]
    assert len(told) == len(waits) >= 3, waits
    assert {m[2] for m in told} >= {"activities", "lead_changes", "deleted_leads"}
    for m in told:
        assert m[5] == "1"
        assert 0 <= int(m[6]) <= 2
    # The rows sent so far count up within a stream, and never pass what it sent in all.
    for stream in ("activities", "lead_changes", "deleted_leads"):
        counts = [int(m[3]) for m in told if m[2] == stream]
        assert counts == sorted(counts)
        assert counts[-1] <= len(run.guids(stream))
    assert any(m[1].startswith("stream 'activities' partition") for m in told)


WINDOW_LINE = re.compile(
    r"Waiting out Marketo's 606 rate window \(the instance's 3-second window is full, other "
    r"integrations count too\) to read stream 'deleted_leads' \((\d+) rows of deleted_leads "
    r"sent so far\): waited (\d+) s of (\d+) s, about (\d+) s left\."
)


def test_a_606_back_off_says_what_it_waits_for_while_it_lasts(simulator, run_tap):
    """A 606 from another integration: the 3 s window waited out with a line each 0.5 s."""
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now="2024-04-12T16:00:00Z")
    sim.inject("deletedleads.json", "606", times=1)
    config = sim_config(sim, rate_limit_window_seconds=3, max_concurrent_calls=1)
    run = run_tap(config, env={"TAP_MARKETO_PROGRESS_SECONDS": "0.5"})
    assert run.returncode == 0, run.stderr[-2000:]
    told = [m for m in map(WINDOW_LINE.search, run.stderr.splitlines()) if m]
    assert len(told) >= 3, run.stderr[-3000:]
    waited = [int(m[2]) for m in told]
    assert waited == sorted(waited)
    assert waited[0] == 0
    assert {int(m[3]) for m in told} <= {3, 4}  # the window plus up to 1 s of jitter
    assert [int(m[4]) for m in told] == sorted((int(m[4]) for m in told), reverse=True)
    assert {int(m[1]) for m in told} == {0}  # the first page of deleted_leads was refused
    # backoff's own line would say "for 0.0s": the window is slept by the tap's handler.
    assert "Backing off" not in run.stderr
    assert re.search(r"Retrying deleted_leads in [34]\.\d s after 606", run.stderr)
    assert sorted(run.guids("deleted_leads")) == sorted(
        expected_guids(sim, "deleted_leads", "2024-04-12T12:00:00Z")
    )
