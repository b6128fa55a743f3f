"""Never lose a late row, never send one twice: scheduled runs with state carried over."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from helpers import (
    TAP,
    assert_kills_lost_nothing,
    expected_guids,
    guid_counts,
    kill_after_records,
    killed_runs,
    sigterm_after_records,
    sim_config,
    write_json,
)

from tap_marketo_activities.simulator import Campaign, World

UTC = dt.timezone.utc
DAY = dt.datetime(2024, 4, 12, tzinfo=UTC)
START_DATE = "2024-04-12T06:00:00Z"
STREAMS = ("activities", "lead_changes", "deleted_leads")


def seed_day(rows: int, seed: int, max_late_minutes: float) -> World:
    """The seed article's afternoon sends inside a whole day of late-committing background."""
    return World.generate(
        start=DAY,
        hours=24,
        rows=rows,
        seed=seed,
        campaigns=[
            Campaign(DAY + dt.timedelta(hours=12, minutes=30), rows // 10),
            Campaign(
                DAY + dt.timedelta(hours=13, minutes=45),
                rows // 10,
                commit_until=DAY + dt.timedelta(hours=14, minutes=10),
            ),
        ],
        late_fraction=0.25,
        max_late_minutes=max_late_minutes,
    )


def expected(sim, stream: str, since: str = START_DATE) -> list[str]:
    return expected_guids(sim, stream, since)


def run_schedule(sim, run_tap, config, times, state=None):
    """Run the tap at each virtual time, passing each run's final state to the next."""
    delivered: dict[str, list[dict]] = {s: [] for s in STREAMS}
    runs = []
    for moment in times:
        sim.clock.set(moment)
        run = run_tap(config, state)
        assert run.returncode == 0, run.stderr[-3000:]
        for stream in STREAMS:
            delivered[stream] += run.records.get(stream, [])
        state = run.state
        runs.append(run)
    return delivered, state, runs


def assert_exactly_once(sim, delivered, since: str = START_DATE):
    for stream in STREAMS:
        counts = guid_counts(delivered[stream])
        twice = [g for g, n in counts.items() if n > 1]
        assert not twice, f"{stream}: {len(twice)} rows delivered twice"
        want = expected(sim, stream, since)
        missing = set(want) - set(counts)
        assert not missing, f"{stream}: {len(missing)} of {len(want)} rows lost"
        assert sorted(counts) == want, f"{stream}: rows from before start_date or unknown rows"
        assert all(r["activityDate"] >= since for r in delivered[stream])


def every(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    times, moment = [], start
    while moment <= end:
        times.append(moment)
        moment += step
    return times


@pytest.mark.parametrize("max_late_minutes", [25, 50])
def test_a_day_of_runs_every_two_hours_delivers_everything_once(
    simulator, run_tap, max_late_minutes
):
    sim = simulator(seed_day(rows=4000, seed=max_late_minutes, max_late_minutes=max_late_minutes))
    config = sim_config(sim, start_date=START_DATE, lookback_minutes=60)
    times = every(DAY + dt.timedelta(hours=2), DAY + dt.timedelta(hours=26), dt.timedelta(hours=2))
    delivered, state, runs = run_schedule(sim, run_tap, config, times)
    assert_exactly_once(sim, delivered)
    # The 14:00 run saw only part of the 13:45 send; a later run picked up the rest.
    assert any(r["activityDate"] < "2024-04-12T14:00:00Z" for r in runs[7].records["activities"])
    # The bookmark is the max activityDate delivered, never after the run started.
    for partition in state["bookmarks"]["activities"]["partitions"]:
        assert partition["replication_key_value"] <= "2024-04-13T02:00:00Z"
        assert "cursor" not in partition


def test_runs_every_five_minutes_deliver_everything_once(simulator, run_tap):
    world = World.generate(
        start=DAY + dt.timedelta(hours=12),
        hours=2,
        rows=800,
        seed=9,
        campaigns=[
            Campaign(
                DAY + dt.timedelta(hours=13, minutes=45),
                200,
                commit_until=DAY + dt.timedelta(hours=14, minutes=30),
            )
        ],
        late_fraction=0.3,
        max_late_minutes=40,
    )
    sim = simulator(world)
    config = sim_config(sim, start_date="2024-04-12T12:00:00Z")
    times = every(
        DAY + dt.timedelta(hours=12, minutes=5),
        DAY + dt.timedelta(hours=14, minutes=45),
        dt.timedelta(minutes=5),
    )
    delivered, _, _ = run_schedule(sim, run_tap, config, times)
    assert_exactly_once(sim, delivered, since="2024-04-12T12:00:00Z")


def test_with_a_one_minute_lookback_late_rows_are_lost(simulator, run_tap):
    """The seed article's failure, reproduced: the test above would catch a broken window."""
    sim = simulator(seed_day(rows=2000, seed=3, max_late_minutes=50))
    config = sim_config(sim, start_date=START_DATE, lookback_minutes=1)
    times = every(DAY + dt.timedelta(hours=2), DAY + dt.timedelta(hours=26), dt.timedelta(hours=2))
    delivered, _, _ = run_schedule(sim, run_tap, config, times)
    got = {g for r in delivered["activities"] for g in [r["marketoGUID"]]}
    assert set(expected(sim, "activities")) - got, "expected losses with a one-minute lookback"


def kill_after(config_path, state_path, records_before_kill, timeout=120):
    """Start the tap, SIGKILL it after N record lines; return the lines it wrote."""
    command = [*TAP, "--config", str(config_path)]
    if state_path is not None:
        command += ["--state", str(state_path)]
    return kill_after_records(command, records_before_kill, timeout)


def test_sigkill_at_random_points_resumes_from_the_cursor(simulator, run_tap, tmp_path):
    rng = random.Random(2024)
    page_size = 40
    for trial in range(10):
        sim = simulator(World.seed_afternoon(rows=1200, seed=trial), now="2024-04-12T16:00:00Z")
        config = sim_config(sim, page_size=page_size)
        config_path = write_json(tmp_path, f"config{trial}.json", config)
        messages, state, _ = killed_runs(
            config_path, tmp_path, f"s{trial}", lambda: rng.randrange(1, 900)
        )
        final = run_tap(config, state)
        assert final.returncode == 0, final.stderr[-2000:]
        messages += final.messages
        assert_kills_lost_nothing(
            sim,
            messages,
            final.state,
            since="2024-04-12T12:00:00Z",
            page_size=page_size,
            kills=3,  # at most three kills a trial
            label=f"trial {trial}",
        )


def test_resume_uses_the_cursor_not_a_new_walk(simulator, run_tap, tmp_path):
    sim = simulator(World.seed_afternoon(rows=2000, seed=8), now="2024-04-12T16:00:00Z")
    config = sim_config(sim, page_size=50, activity_type_ids=[6])
    config_path = write_json(tmp_path, "config.json", config)
    code, written, _ = sigterm_after_records(config_path, 300)
    assert code == 143
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    cursor = state["bookmarks"]["activities"]["partitions"][0]["cursor"]
    assert cursor["token"]
    del cursor["pending"]  # as a SIGKILL after a cadence STATE leaves it: no keys
    sim.reset_counters()
    resumed = run_tap(config, state)
    assert resumed.returncode == 0
    assert "Resuming stream 'activities'" in resumed.stderr
    # no new date token was minted for the resumed partition
    assert (
        sim.counters.calls_by_path.get("/rest/v1/activities/pagingtoken.json", 0) == 2
    )  # leads+deletes
    got = {
        m["record"]["marketoGUID"]
        for m in written
        if m["type"] == "RECORD" and m["stream"] == "activities"
    }
    got |= set(resumed.guids("activities"))
    want = {
        r["marketoGUID"]
        for r in sim.expected("activities", type_ids=[6], since="2024-04-12T12:00:00Z")
    }
    assert want == got


def test_rejected_cursor_falls_back_to_recovery_time_and_loses_nothing(
    simulator, run_tap, tmp_path
):
    sim = simulator(World.seed_afternoon(rows=2000, seed=6), now="2024-04-12T16:00:00Z")
    config = sim_config(sim, page_size=50, activity_type_ids=[6, 1, 2])
    code, written, _ = sigterm_after_records(write_json(tmp_path, "config.json", config), 500)
    assert code == 143
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    assert "pending" in state["bookmarks"]["activities"]["partitions"][0]["cursor"]
    sim.reject_cursors()
    resumed = run_tap(config, state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "refused the saved cursor" in resumed.stderr
    rows = [m["record"] for m in written if m["type"] == "RECORD" and m["stream"] == "activities"]
    rows += resumed.records["activities"]
    counts = guid_counts(rows)
    want = {
        r["marketoGUID"]
        for r in sim.expected("activities", type_ids=[1, 2, 6], since="2024-04-12T12:00:00Z")
    }
    assert want == set(counts)
    # The partly written page, and a batch of records (64 KB, about 150 rows) written twice
    # when the SIGTERM lands inside its write: the STATE the stop writes re-writes what the
    # interrupted write may not have finished (writer.py), a re-send rather than a loss.
    assert sum(n - 1 for n in counts.values()) <= 50 + 200


def lateness_world(campaign_minute: int) -> World:
    """Background up to 14:40 that commits promptly, plus a send committing until 14:45."""
    return World.generate(
        start=DAY + dt.timedelta(hours=12),
        hours=2 + 40 / 60,
        rows=700,
        seed=campaign_minute,
        campaigns=[
            Campaign(
                DAY + dt.timedelta(hours=13, minutes=campaign_minute),
                200,
                spread_minutes=1,
                commit_until=DAY + dt.timedelta(hours=14, minutes=45),
            )
        ],
        late_fraction=0.0,
        max_late_minutes=0,
    )


@pytest.mark.parametrize(("campaign_minute", "warns"), [(48, True), (58, False)])
def test_lateness_warning_fires_when_and_only_when_it_should(
    simulator, run_tap, campaign_minute, warns
):
    sim = simulator(lateness_world(campaign_minute))
    config = sim_config(sim, start_date="2024-04-12T12:00:00Z", lookback_minutes=60)
    sim.clock.set(DAY + dt.timedelta(hours=14, minutes=40))
    first = run_tap(config)
    assert first.returncode == 0
    assert "raise lookback_minutes" not in first.stderr
    sim.clock.set(DAY + dt.timedelta(hours=15))
    second = run_tap({**config, "metrics_log_level": "INFO"}, first.state)
    assert second.returncode == 0
    assert ("raise lookback_minutes" in second.stderr) is warns, second.stderr[-1500:]
    metric = [line for line in second.stderr.splitlines() if "max_lateness_seconds" in line]
    value = json.loads(metric[-1].split("METRIC: ", 1)[1])["value"]
    assert (value >= 48 * 60) is warns


def test_malformed_state_fails_clearly_and_sends_nothing(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=200, seed=1), now="2024-04-12T16:00:00Z")
    bad = {"bookmarks": {"deleted_leads": {"replication_key_value": "last tuesday"}}}
    run = run_tap(sim_config(sim), bad)
    assert run.returncode != 0
    assert any(
        "replication_key_value" in line and "deleted_leads" in line for line in run.error_lines()
    )
    assert not run.records
    assert "Traceback" not in run.stderr
    future = {
        "bookmarks": {
            "lead_changes": {
                "replication_key_value": "2024-04-12T13:00:00Z",
                "overlap": {"v": 2, "keys": ""},
            }
        }
    }
    run = run_tap(sim_config(sim), future)
    assert run.returncode != 0
    assert any("overlap.v" in line for line in run.error_lines())


def test_state_from_meltano_export_and_old_deletions_warning(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=200, seed=1), now="2024-04-12T16:00:00Z")
    state = {
        "singer_state": {
            "bookmarks": {
                "deleted_leads": {
                    "replication_key": "activityDate",
                    "replication_key_value": "2024-03-20T00:00:00Z",
                }
            }
        }
    }
    run = run_tap(sim_config(sim, start_date="2024-03-01T00:00:00Z"), state)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "more than 14 days old" in run.stderr


def test_regrouped_types_inherit_progress_instead_of_rereading_history(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=12), now="2024-04-12T15:00:00Z")
    types = [1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 22, 24]
    first = run_tap(sim_config(sim, activity_type_ids=types))
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set("2024-04-12T17:00:00Z")
    fewer = [t for t in types if t != 6]  # a type leaves: its group is re-formed
    second = run_tap(sim_config(sim, activity_type_ids=fewer), first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "inherited from the type groups" in second.stderr
    delivered = first.records["activities"] + second.records["activities"]
    counts = guid_counts([r for r in delivered if r["activityTypeId"] != 6])
    want = {
        r["marketoGUID"]
        for r in sim.expected("activities", type_ids=fewer, since="2024-04-12T12:00:00Z")
    }
    assert set(counts) == want  # nothing lost
    assert max(counts.values()) == 1  # and history was not sent again
    # the new group did not start at start_date
    assert all(r["activityDate"] >= "2024-04-12T13:00:00Z" for r in second.records["activities"])


def test_swapping_types_neither_rereads_history_nor_loses_rows(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=13), now="2024-04-12T15:00:00Z")
    types = [1, 2, 3, 6, 7, 8, 9, 10, 11, 12]
    first = run_tap(sim_config(sim, activity_type_ids=types))
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set("2024-04-12T17:00:00Z")
    swapped = [t for t in types if t != 2] + [100001]  # one type out, a never-read one in
    second = run_tap(sim_config(sim, activity_type_ids=swapped), first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    known = [t for t in swapped if t != 100001]
    again = [r for r in second.records["activities"] if r["activityTypeId"] in known]
    counts = guid_counts(first.records["activities"] + again)
    assert max(counts.values()) == 1  # history of the known types is not sent again
    want = set(expected_guids(sim, "activities", "2024-04-12T12:00:00Z", type_ids=known))
    assert want <= set(counts)
    new_type = {
        r["marketoGUID"] for r in second.records["activities"] if r["activityTypeId"] == 100001
    }
    assert new_type == set(
        expected_guids(sim, "activities", "2024-04-12T12:00:00Z", type_ids=[100001])
    )


def test_raising_the_lookback_is_announced(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=400, seed=2), now="2024-04-12T15:00:00Z")
    first = run_tap(sim_config(sim))
    sim.clock.set("2024-04-12T16:00:00Z")
    second = run_tap(sim_config(sim, lookback_minutes=120), first.state)
    assert second.returncode == 0
    assert "lookback_minutes grew" in second.stderr


def test_a_stale_cursor_refused_with_a_transient_code_still_falls_back(
    simulator, run_tap, tmp_path
):
    sim = simulator(World.seed_afternoon(rows=2000, seed=6), now="2024-04-12T16:00:00Z")
    config = sim_config(sim, page_size=50, activity_type_ids=[6], max_retries=2)
    code, written, _ = sigterm_after_records(write_json(tmp_path, "config.json", config), 300)
    assert code == 143
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    del state["bookmarks"]["activities"]["partitions"][0]["cursor"]["pending"]  # SIGKILL's
    sim.stale_token_code = "611"  # Marketo's real answer is undocumented
    sim.reject_cursors()
    resumed = run_tap(config, state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "refused the saved cursor" in resumed.stderr
    rows = [m["record"] for m in written if m["type"] == "RECORD" and m["stream"] == "activities"]
    counts = guid_counts(rows + resumed.records["activities"])
    assert set(counts) == set(
        expected_guids(sim, "activities", "2024-04-12T12:00:00Z", type_ids=[6])
    )


def test_batch_mode_writes_state_only_after_the_batches(simulator, run_tap, tmp_path):
    sim = simulator(World.seed_afternoon(rows=600, seed=2), now="2024-04-12T16:00:00Z")
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "none"},
        "storage": {"root": f"file://{tmp_path}/batches", "prefix": "b-"},
        "batch_size": 10_000,
    }
    run = run_tap(sim_config(sim, page_size=50, batch_config=batch_config))
    assert run.returncode == 0, run.stderr[-2000:]
    seen_batch = False
    for message in run.messages:
        if message["type"] == "BATCH" and message["stream"] == "deleted_leads":
            seen_batch = True
        if message["type"] == "STATE" and not seen_batch:
            deleted = message["value"].get("bookmarks", {}).get("deleted_leads", {})
            assert "cursor" not in deleted
            assert "replication_key_value" not in deleted, "bookmark moved before its BATCH"
    assert seen_batch
    assert all("cursor" not in p for p in run.state["bookmarks"]["activities"]["partitions"])


def test_pages_of_rereads_write_no_state_and_a_kill_after_them_loses_nothing(
    simulator, run_tap, tmp_path
):
    """The lookback re-read that opens every incremental pass costs calls, not STATE lines.

    A page whose rows were all delivered before changes nothing but the paging token, so no
    STATE follows it; a run killed right after such pages resumes a little earlier and skips
    the same rows again.
    """
    world = World.generate(
        start=DAY + dt.timedelta(hours=12), hours=2, rows=1500, seed=31, late_fraction=0.0
    )
    sim = simulator(world, now="2024-04-12T13:30:00Z")
    config = sim_config(sim, page_size=40, lookback_minutes=60)
    first = run_tap(config)
    assert first.returncode == 0, first.stderr[-2000:]

    # Same clock: the whole window is re-reads. STATE lines come from partition and stream
    # ends only, so reading the window in four times as many pages writes no more of them.
    lines, pages = [], []
    for size in (40, 10):
        sim.reset_counters()
        again = run_tap({**config, "page_size": size}, first.state)
        assert again.returncode == 0, again.stderr[-2000:]
        assert not again.records.get("activities")
        assert again.state["bookmarks"]["activities"] == first.state["bookmarks"]["activities"]
        lines.append(len(again.states))
        pages.append(sim.counters.calls_by_path["/rest/v1/activities.json"])
    assert pages[1] >= pages[0] + 30, pages
    assert lines[0] == lines[1], f"STATE lines {lines} for {pages} pages of re-reads"

    # An hour later: re-reads first, then new rows; kill just after the first new rows.
    sim.clock.set(DAY + dt.timedelta(hours=14, minutes=30))
    config_path = write_json(tmp_path, "config.json", config)
    state_path = write_json(tmp_path, "state.json", first.state)
    written, code = kill_after(config_path, state_path, 5)
    assert code != 0
    states = [m["value"] for m in written if m["type"] == "STATE"]
    resumed = run_tap(config, states[-1] if states else first.state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = [m["record"] for m in written if m["type"] == "RECORD" and m["stream"] == "activities"]
    rows += resumed.records["activities"]
    rows += first.records["activities"]
    counts = guid_counts(rows)
    assert set(expected(sim, "activities", "2024-04-12T12:00:00Z")) == set(counts)
    partitions = len(resumed.state["bookmarks"]["activities"]["partitions"])
    assert sum(n - 1 for n in counts.values()) <= 40 * partitions  # a partly written page each


def busy_world(sends: int) -> World:
    """``sends`` Send Email rows over 40 minutes, all inside one 60-minute lookback."""
    return World.generate(
        start="2024-04-12T12:00:00Z",
        hours=1,
        rows=sends + sends // 15,
        seed=5,
        campaigns=[Campaign("2024-04-12T12:05:00Z", sends, spread_minutes=40)],
        late_fraction=0.05,
        max_late_minutes=10,
    )


BUSY_NOW = "2024-04-12T13:10:00Z"
BUSY_SINCE = "2024-04-12T11:00:00Z"


def test_state_is_small_at_most_every_10000_rows_and_ends_each_pass_with_its_keys(
    simulator, run_tap
):
    """Issue 22: STATE at most every 10,000 rows of a partition, <= 5 % of the RECORD bytes,
    no message over 1 MB; the STATE that ends the pass lets the next run skip every re-read."""
    sim = simulator(busy_world(24_000), now=BUSY_NOW)
    config = sim_config(sim, start_date=BUSY_SINCE, lookback_minutes=60)
    run = run_tap(config)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    record_bytes = sum(len(line) for line in lines if '"type":"RECORD"' in line)
    states = [line for line in lines if '"type":"STATE"' in line]
    assert sum(len(line) for line in states) <= 0.05 * record_bytes
    assert max(len(line) for line in states) <= 1_000_000
    since_state, most = 0, 0
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == "activities":
            since_state += 1
            most = max(most, since_state)
        elif message["type"] == "STATE":
            since_state = 0
    assert 10_000 >= most > 5_000  # the busy partition's 24,000 rows took several STATEs
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities", BUSY_SINCE)
    # Every interim STATE's cursor vouches for what the target has: by the keys, or (a busy
    # hour's keys do not fit the budget) by their tally. None is keyless: the SDK's own
    # count-based STATE, written mid-page with the last page's keyless cursor, is off.
    cursors = [
        partition["cursor"]
        for state in run.states
        for partition in state["bookmarks"]["activities"].get("partitions", [])
        if "cursor" in partition
    ]
    assert len(cursors) >= 2
    assert all("pending" in cursor or "tally" in cursor for cursor in cursors)
    again = run_tap(config, run.state)  # the same hour read again: all re-reads
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.guids("activities") == []
    assert "overlap re-reads skipped" in again.stderr


def test_sigkill_past_10000_rows_resumes_from_the_cadence_state(simulator, run_tap, tmp_path):
    """A kill re-sends at most the rows since the last STATE (< 10,000), loses none, and the
    run after the resumed one sends nothing twice that it does not announce."""
    sim = simulator(busy_world(24_000), now=BUSY_NOW)
    config = sim_config(sim, start_date=BUSY_SINCE, lookback_minutes=60)
    config_path = write_json(tmp_path, "config.json", config)
    written, code = kill_after(config_path, None, 15_000)
    assert code != 0
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    resumed = run_tap(config, state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming stream 'activities'" in resumed.stderr
    rows = [m["record"] for m in written if m["type"] == "RECORD" and m["stream"] == "activities"]
    counts = guid_counts(rows + resumed.records["activities"])
    assert set(counts) == set(expected_guids(sim, "activities", BUSY_SINCE))
    resent = sum(n - 1 for n in counts.values())
    after_last_state = 0
    for message in written:
        if message["type"] == "RECORD" and message["stream"] == "activities":
            after_last_state += 1
        elif message["type"] == "STATE":
            after_last_state = 0
    assert 0 < resent <= after_last_state < 10_000


def send_then_burst_world(send_minutes: int) -> World:
    """A send stamped over ``send_minutes`` up to 15:00, a burst after it, late commits after.

    19,900 Send Email rows up to 15:00 (the walk's second cadence STATE lands at their end),
    then 9,000 more stamped 15:00-15:10, then 500 stamped 15:05-15:10 that commit until
    15:50 (read by the next scheduled run). With a 60-minute lookback the last cadence
    STATE's keys are those of the send's last hour: about 5,000 over 240 minutes, which fit
    the STATE budget; all 19,800 over 60 minutes, which do not.
    """
    return World.generate(
        start="2024-04-12T11:00:00Z",
        hours=4.2,
        rows=19_900 + 9_000 + 500 + 600,
        seed=22,
        campaigns=[
            Campaign(
                DAY + dt.timedelta(hours=15, minutes=-send_minutes),
                19_900,
                spread_minutes=send_minutes,
            ),
            Campaign("2024-04-12T15:00:00Z", 9_000, spread_minutes=10),
            Campaign(
                "2024-04-12T15:05:00Z",
                500,
                spread_minutes=5,
                commit_until="2024-04-12T15:50:00Z",
            ),
        ],
        late_fraction=0.0,
    )


def send_email_partition(state: dict) -> list[dict]:
    """The activities partition whose type group holds Send Email (type 6)."""
    partitions = state["bookmarks"]["activities"]["partitions"]
    return [p for p in partitions if 6 in p["context"]["activity_type_ids"]]


@pytest.mark.parametrize(("send_minutes", "keys_fit"), [(240, True), (60, False)])
def test_a_sigkill_then_the_next_scheduled_run_re_send_at_most_10000_rows_where_keys_fit(
    simulator, run_tap, tmp_path, send_minutes, keys_fit
):
    """Issue 22: a cadence STATE carries the keys the target has when they fit its budget.

    Killed past 20,000 rows and resumed from the last STATE the target saw, the resumed
    run re-sends the rows after that STATE; then a scheduled run an hour later re-reads
    its lookback, late commits included. Where that STATE had the keys, the later run sends
    nothing twice: fewer than 10,000 rows re-sent for the kill in all (before, it re-sent
    the send's last hour again: 10,983 in all). Where they did not fit (a busy hour), the
    cursor carries their per-second tally instead, and the later run sends nothing twice
    either (before the tallies, it re-sent every row of the killed pass in its lookback).
    """
    sim = simulator(send_then_burst_world(send_minutes), now="2024-04-12T15:20:00Z")
    since = "2024-04-12T11:00:00Z"
    config = sim_config(sim, start_date=since, lookback_minutes=60)
    written, code = kill_after(write_json(tmp_path, "config.json", config), None, 27_000)
    assert code != 0
    last = [m["value"] for m in written if m["type"] == "STATE"][-1]
    resumed = run_tap(config, last)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming stream 'activities'" in resumed.stderr
    sim.clock.set("2024-04-12T16:20:00Z")
    later = run_tap(config, resumed.state)
    assert later.returncode == 0, later.stderr[-2000:]
    (partition,) = send_email_partition(resumed.state)
    # the later run's window holds late commits stamped before the resumed run's bookmark
    assert any(
        r["activityDate"] < partition["replication_key_value"] for r in later.records["activities"]
    )

    before = [m["record"] for m in written if m["type"] == "RECORD" and m["stream"] == "activities"]
    before += resumed.records["activities"]
    counts = guid_counts(before + later.records["activities"])
    assert set(counts) == set(expected_guids(sim, "activities", since))  # nothing lost
    resent = sum(n - 1 for n in counts.values())
    after_last_state = 0
    for message in written:
        if message["type"] == "RECORD" and message["stream"] == "activities":
            after_last_state += 1
        elif message["type"] == "STATE":
            after_last_state = 0
    again = [r for r in later.records["activities"] if r["marketoGUID"] in guid_counts(before)]
    (killed,) = send_email_partition(last)
    cursor = killed["cursor"]  # the send's pass was under way
    # Either way the later run sends nothing twice: the cursor carried the keys where they
    # fit, and their tally (sync/tally.py) where they did not; the later run proves which
    # re-read rows the target has from it (sync/gap.py).
    assert 0 < resent <= after_last_state < 10_000
    assert not again
    assert "does not cover" not in later.stderr
    assert ("pending" in cursor) is keys_fit
    assert ("tally" in cursor) is not keys_fit
