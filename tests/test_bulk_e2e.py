"""The bulk backfill against the simulator over real HTTP: windows, jobs, downloads, state.

``BulkBackfill`` runs in-process through ``PlainBulkTransport`` (requests + bearer token) to a
real simulator; its ``sleep`` advances the simulator's virtual clock, so waiting for a job or
for a queue place costs no real time.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from helpers import expected_guids, sim_config

from tap_marketo_activities.records import activity_record, parse_datetime
from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator import catalog as cat
from tap_marketo_activities.sources.bulk import (
    BackfillSettings,
    BulkBackfill,
    PlainBulkTransport,
    Terminated,
)
from tap_marketo_activities.sources.bulk.errors import (
    ChecksumMismatch,
    ExportQuotaExceeded,
    JobFailed,
)
from tap_marketo_activities.sync.handover import bulk_then_handover, wants_bulk
from tap_marketo_activities.sync.incremental import PartitionSync

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
TYPES = sorted(cat.DEFAULT_ACTIVITY_TYPE_IDS)
TYPE_NAMES = {t.id: t.name for t in cat.ACTIVITY_TYPES}
CREATE = "/bulk/v1/activities/export/create.json"
FILE_SUFFIX = "/file.json"
WORLD = World.generate(
    start=START, hours=24 * 70, rows=3000, seed=5, late_fraction=0.05, max_late_minutes=30
)


@pytest.fixture
def sim():
    with MarketoSimulator(WORLD) as simulator:
        yield simulator


@pytest.fixture
def transport(sim):
    plain = PlainBulkTransport(sim.base_url, sim.client_id, sim.client_secret, timeout=10)
    yield plain
    plain.close()


def make_backfill(sim, transport, state, **settings):
    return BulkBackfill(
        transport=transport,
        type_ids=TYPES,
        type_names=TYPE_NAMES,
        state=state,
        settings=BackfillSettings(poll_initial_s=30, **settings),
        sleep=lambda seconds: sim.clock.advance(seconds=seconds),
        server_now=sim.clock.now,
    )


def end_of(backfill, sim):
    return backfill.end_for(sim.clock.now())


def expected_records(sim, end):
    """What the REST path would emit for rows stamped in [START, end), ``id`` aside."""
    out = []
    for row in sim.expected("activities", type_ids=TYPES, since=START):
        if parse_datetime(row["activityDate"]) < end:
            record = activity_record(row, type_names=TYPE_NAMES, request_id="truth")
            record["id"] = None  # the export has no id column
            out.append(record)
    return sorted(out, key=lambda r: r["marketoGUID"])


def file_calls(sim):
    return sum(n for path, n in sim.counters.calls_by_path.items() if path.endswith(FILE_SUFFIX))


def by_guid(records):
    return sorted(records, key=lambda r: r["marketoGUID"])


def test_a_backfill_delivers_exactly_the_rest_records_in_one_job_per_31_days(sim, transport):
    state: dict = {}
    backfill = make_backfill(sim, transport, state)
    end = end_of(backfill, sim)
    got = list(backfill.records(START, end))
    assert by_guid(got) == expected_records(sim, end)
    assert not [g for g, n in Counter(r["marketoGUID"] for r in got).items() if n > 1]
    assert sim.counters.calls_by_path[CREATE] == 3  # 70 days, every type in each job
    assert backfill.stats.jobs == 3
    assert backfill.stats.rows == len(got)
    assert state["bulk"] == {"job": None, "done_until": "2024-03-10T23:45:00Z"}
    assert transport.calls < 20


@pytest.mark.parametrize("form", ["object", "array"])
def test_both_attribute_forms_give_the_same_records(sim, transport, form):
    sim.bulk.attributes_form = form
    backfill = make_backfill(sim, transport, {})
    end = START + dt.timedelta(days=10)
    assert by_guid(backfill.records(START, end)) == expected_records(sim, end)


def test_a_broken_download_resumes_with_range(sim, transport, caplog):
    sim.bulk.break_downloads = 2
    backfill = make_backfill(sim, transport, {})
    end = START + dt.timedelta(days=20)
    with caplog.at_level(logging.INFO):
        got = list(backfill.records(START, end))
    assert by_guid(got) == expected_records(sim, end)
    assert file_calls(sim) == 3  # one answer broke twice; two Range requests finished it
    assert sim.counters.injected_by_code["broken_download"] == 2
    assert sim.counters.bulk_range_answers == 2
    assert sim.counters.bulk_bytes_served < 1.5 * backfill.stats.bytes  # never from byte 0
    assert "download broke at byte" in caplog.text


def test_a_checksum_mismatch_fails_clearly_and_emits_nothing_from_that_file(sim, transport):
    sim.bulk.corrupt_checksum = True
    state: dict = {}
    backfill = make_backfill(sim, transport, state)
    got = []
    with pytest.raises(ChecksumMismatch) as caught:
        got.extend(backfill.records(START, START + dt.timedelta(days=10)))
    assert got == []
    assert "nothing from the file was emitted and the bookmark did not move" in str(caught.value)
    assert "done_until" not in state["bulk"]
    assert sim.counters.calls_by_path[CREATE] == 2  # the job was created once more
    export_id = state["bulk"]["job"]["exportId"]
    # the next run downloads the same job's file again instead of creating a new job
    sim.bulk.corrupt_checksum = False
    again = make_backfill(sim, transport, state)
    end = START + dt.timedelta(days=10)
    assert by_guid(again.records(START, end)) == expected_records(sim, end)
    assert sim.counters.calls_by_path[CREATE] == 2
    assert export_id in sim.bulk.statuses()


def test_a_completed_file_that_answers_404_is_retried(sim, transport):
    sim.bulk.file_404_times = 2
    backfill = make_backfill(sim, transport, {})
    end = START + dt.timedelta(days=10)
    assert by_guid(backfill.records(START, end)) == expected_records(sim, end)
    assert file_calls(sim) == 3


def test_a_full_queue_waits_for_a_place(sim, transport, caplog):
    sim.bulk.processing_s = 600
    sim.bulk.occupy(sim.clock.now(), 10)  # another integration fills the queue
    backfill = make_backfill(sim, transport, {})
    end = START + dt.timedelta(days=10)
    with caplog.at_level(logging.INFO):
        got = list(backfill.records(START, end))
    assert by_guid(got) == expected_records(sim, end)
    assert sim.counters.errors_by_code["1029"] >= 1
    assert "Marketo's bulk export queue is full (1029 Too many jobs in queue" in caplog.text
    assert backfill.stats.wait_s >= 600


def test_the_export_quota_stops_cleanly_and_the_next_day_resumes_the_same_job(sim, transport):
    end = START + dt.timedelta(days=40)
    first = make_backfill(sim, transport, {})
    got = []
    sim.bulk.quota_bytes = 1  # the first file uses up the day's quota
    state = first.state
    with pytest.raises(ExportQuotaExceeded) as caught:
        got.extend(first.records(START, end))
    assert "1029 Export daily quota exceeded" in str(caught.value)
    assert "Marketo resets the daily quota at midnight US Central" in str(caught.value)
    assert state["bulk"]["done_until"] == "2024-02-01T00:00:00Z"  # the first window is done
    pending = state["bulk"]["job"]["exportId"]
    assert sim.bulk.statuses()[pending] == "Created"
    sim.clock.advance(dt.timedelta(days=1))
    second = make_backfill(sim, transport, copy.deepcopy(state))
    got.extend(second.records(START, end))
    assert by_guid(got) == expected_records(sim, end)
    assert sim.counters.calls_by_path[CREATE] == 2  # the saved job was enqueued, not redone


def test_a_failed_job_says_why(sim, transport):
    sim.bulk.fail_jobs = 1
    state: dict = {}
    with pytest.raises(JobFailed) as caught:
        list(make_backfill(sim, transport, state).records(START, START + dt.timedelta(days=5)))
    assert str(caught.value).endswith(
        "failed: Export failed: the simulator was told to fail this job. The next run creates "
        "it again; set backfill_method to rest if it keeps failing."
    )
    assert state["bulk"]["job"] is None


@pytest.mark.parametrize("signal_exception", [KeyboardInterrupt, Terminated])
def test_an_interrupted_backfill_cancels_the_job_it_queued(sim, transport, signal_exception):
    sim.bulk.processing_s = 3600
    state: dict = {}
    backfill = make_backfill(sim, transport, state)
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            raise signal_exception

    backfill.sleep = sleep
    with pytest.raises(signal_exception):
        list(backfill.records(START, START + dt.timedelta(days=5)))
    (status,) = sim.bulk.statuses(sim.client_id).values()
    assert status == "Cancelled"
    assert state["bulk"]["job"] is None


def test_a_killed_backfill_resumes_without_rereading_finished_windows(sim, transport):
    end = START + dt.timedelta(days=70)
    state: dict = {}
    first = make_backfill(sim, transport, state)
    stream = first.records(START, end)
    window_1 = sum(1 for r in expected_records(sim, end) if r["activityDate"] < "2024-02-01")
    delivered = [next(stream) for _ in range(window_1 + 25)]  # into the second window
    saved = copy.deepcopy(state)  # the last STATE the target saw; then the process dies
    stream.close()
    assert saved["bulk"]["done_until"] == "2024-02-01T00:00:00Z"
    assert saved["bulk"]["job"]["rows_done"] >= 25
    before = sim.counters.bulk_bytes_served
    second = make_backfill(sim, transport, saved)
    delivered.extend(second.records(START, end))
    assert by_guid(delivered) == expected_records(sim, end)  # none lost, none twice
    assert sim.counters.calls_by_path[CREATE] == 3  # the second window's job was reused
    # the resumed run downloaded windows 2 and 3 only
    assert sim.counters.bulk_bytes_served - before == second.stats.bytes
    assert second.stats.windows == 2


def test_a_saved_job_marketo_no_longer_has_is_created_again(sim, transport):
    end = START + dt.timedelta(days=10)
    state: dict = {}
    stream = make_backfill(sim, transport, state).records(START, end)
    delivered = [next(stream) for _ in range(10)]
    saved = copy.deepcopy(state)
    stream.close()
    sim.bulk.forget()
    again = list(make_backfill(sim, transport, saved).records(START, end))
    assert sim.counters.calls_by_path[CREATE] == 2
    assert by_guid(again) == expected_records(sim, end)  # the window is read again in full
    assert {r["marketoGUID"] for r in delivered} <= {r["marketoGUID"] for r in again}


SIGTERM_CHILD = """
import sys
from tap_marketo_activities.sources.bulk import (
    BackfillSettings, BulkBackfill, PlainBulkTransport, Terminated, terminate_as_exception
)
from tap_marketo_activities.records import parse_datetime
base_url, start, end = sys.argv[1], parse_datetime(sys.argv[2]), parse_datetime(sys.argv[3])
backfill = BulkBackfill(
    transport=PlainBulkTransport(base_url, "simulator", "simulator"),
    type_ids=[1, 6],
    type_names={},
    state={},
    settings=BackfillSettings(poll_initial_s=0.1, poll_max_s=0.1),
)
try:
    with terminate_as_exception():
        print("started", flush=True)
        for _ in backfill.records(start, end):
            pass
except Terminated:
    print("state", backfill.state, flush=True)
    sys.exit(143)
"""


def test_sigterm_in_a_real_process_cancels_the_queued_job(sim):
    sim.bulk.processing_s = 3600  # the job never finishes on its own: the clock is frozen
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SIGTERM_CHILD,
            sim.base_url,
            START.isoformat(),
            (START + dt.timedelta(days=3)).isoformat(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = sigterm_once_polled(child, sim, timeout=30)
    assert child.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert list(sim.bulk.statuses(sim.client_id).values()) == ["Cancelled"]
    assert "'job': None" in stdout


def status_polls(sim):
    return sum(n for p, n in sim.counters.calls_by_path.items() if p.endswith("/status.json"))


def sigterm_once_polled(process, sim, timeout, signum=signal.SIGTERM):
    """Signal ``process`` once its job is queued and being polled; return its output."""
    try:
        deadline = time.monotonic() + timeout
        while not status_polls(sim) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signum)
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


# ----------------------------------------------------------------------------- handover
HANDOVER_TYPES = [1, 2, 3, 6, 7, 8, 9, 10, 11, 12]  # one partition: at most 10 types
LOOKBACK = dt.timedelta(minutes=60)


def rest_pass(transport, sync, types):
    """The REST engine's walk from ``sync.start()``, as the tap does it (plain HTTP)."""
    since = sync.start().since
    token = transport.get_json(
        "/rest/v1/activities/pagingtoken.json", {"sinceDatetime": since.isoformat()}
    )["nextPageToken"]
    names = {t.id: t.name for t in cat.ACTIVITY_TYPES}
    while True:
        page = transport.get_json(
            "/rest/v1/activities.json",
            {"nextPageToken": token, "activityTypeIds": ",".join(map(str, types))},
        )
        assert page["success"], page
        for row in page.get("result") or []:
            record = activity_record(row, type_names=names, request_id=page["requestId"])
            if sync.admit(record["marketoGUID"], parse_datetime(record["activityDate"])):
                yield record
        token = page["nextPageToken"]
        sync.page_done(token if page["moreResult"] else None)
        if not page["moreResult"]:
            return


def new_pass(sim, transport, state):
    """The partition's sync and its bulk backfill, as one run of the tap builds them."""
    run_started = sim.clock.now()
    sync = PartitionSync(
        state,
        label="activities test",
        start_date=START,
        lookback=LOOKBACK,
        run_started=lambda: run_started,
    )
    backfill = BulkBackfill(
        transport=transport,
        type_ids=HANDOVER_TYPES,
        type_names=TYPE_NAMES,
        state=state,
        settings=BackfillSettings(poll_initial_s=30),
        sleep=lambda seconds: sim.clock.advance(seconds=seconds),
        server_now=sim.clock.now,
    )
    return sync, backfill


def one_run(sim, transport, state, *, method="auto"):
    """One run of the partition: bulk (if chosen) then REST, the bookmark promoted at the end."""
    sync, backfill = new_pass(sim, transport, state)
    records = []
    used_bulk = wants_bulk(
        method,
        threshold=dt.timedelta(days=3),
        window_start=sync.window_start,
        now=sync.run_started(),
        settle=backfill.settings.settle,
        state=state,
        resuming_cursor=sync.start().resumes_cursor,
    )
    if used_bulk:
        records.extend(bulk_then_handover(backfill, sync))
    records.extend(rest_pass(transport, sync, HANDOVER_TYPES))
    sync.finish()
    return records, used_bulk, sync


def test_bulk_then_rest_runs_deliver_exactly_the_expected_set_across_the_handover(
    simulator, transport
):
    del transport
    world = World.generate(
        start=START,
        hours=24 * 40,
        rows=6000,
        seed=9,
        late_fraction=0.3,
        max_late_minutes=50,
        campaigns=[
            # a send stamped just before the handover point, committing well after the run
            {
                "at": START + dt.timedelta(days=40, minutes=-40),
                "size": 300,
                "type_id": 6,
                "commit_until": START + dt.timedelta(days=40, minutes=25),
            },
        ],
    )
    sim = simulator(world)
    sim.bulk.processing_s = 600  # rows keep committing while the jobs process
    plain = PlainBulkTransport(sim.base_url, sim.client_id, sim.client_secret, timeout=10)
    state: dict = {}
    delivered, used_bulk, sync = one_run(sim, plain, state)
    assert used_bulk
    assert sync.report.duplicates > 0  # REST re-read bulk rows inside the lookback: skipped
    handover = sync.run_started() - dt.timedelta(minutes=15)
    late = [
        r
        for r in sim.world.rows()
        if r.activity_type_id in HANDOVER_TYPES
        and r.activity_date < handover
        and r.committed_at > sim.clock.now()
    ]
    assert late  # rows stamped before the handover that commit after this run
    for _ in range(3):  # incremental runs while the late rows commit
        sim.clock.advance(minutes=20)
        more, used_bulk, _ = one_run(sim, plain, state)
        assert not used_bulk
        delivered.extend(more)
    counts = Counter(r["marketoGUID"] for r in delivered)
    assert [g for g, n in counts.items() if n > 1] == []  # nothing twice
    expected = sorted(
        r["marketoGUID"] for r in sim.expected("activities", type_ids=HANDOVER_TYPES, since=START)
    )
    assert sorted(counts) == expected  # nothing lost
    assert {r.marketo_guid for r in late} <= set(counts)
    assert "bulk" not in state or not state["bulk"].get("job")
    assert sim.counters.calls_by_path[CREATE] == 2  # 40 days: two windows
    plain.close()


# ----------------------------------------------------------------------------- the tap
TAP_START = "2024-01-01T00:00:00Z"


def tap_world(days=40, rows=6000, seed=9):
    """Days of activity ending at the clock, with late commits and a send around the end."""
    end = START + dt.timedelta(days=days)
    return World.generate(
        start=START,
        hours=24 * days,
        rows=rows,
        seed=seed,
        late_fraction=0.3,
        max_late_minutes=50,
        campaigns=[
            {
                "at": end - dt.timedelta(minutes=40),
                "size": 300,
                "type_id": 6,
                "commit_until": end + dt.timedelta(minutes=25),
            }
        ],
    )


def bulk_config(sim, **overrides):
    return sim_config(sim, start_date=TAP_START, bulk_poll_seconds=0.2, **overrides)


def creates(sim):
    return sim.counters.calls_by_path.get(CREATE, 0)


def file_fetches(sim):
    return {
        path.split("/")[-2]: n
        for path, n in sim.counters.calls_by_path.items()
        if path.endswith(FILE_SUFFIX)
    }


def assert_clean(run):
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


def test_tap_bulk_backfill_then_rest_runs_deliver_exactly_the_expected_set(simulator, run_tap):
    sim = simulator(tap_world())
    runs = [run_tap(bulk_config(sim))]
    first = runs[0]
    assert first.returncode == 0, first.stderr[-3000:]
    assert_clean(first)
    assert "through bulk export jobs" in first.stderr
    # 40 days: two windows, one job each for every activities partition together
    assert creates(sim) == 2
    assert re.search(r"Run summary: .*bulk jobs 2, [0-9.]+ MB, waited on bulk jobs", first.stderr)
    for _ in range(3):  # incremental runs while the send around the handover commits
        sim.clock.advance(minutes=20)
        runs.append(run_tap(bulk_config(sim), state=runs[-1].state))
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
        assert "through bulk export jobs" not in runs[-1].stderr
    assert creates(sim) == 2
    for stream in ("activities", "lead_changes", "deleted_leads"):
        delivered = [g for run in runs for g in run.guids(stream)]
        assert [g for g, n in Counter(delivered).items() if n > 1] == [], stream
        assert sorted(delivered) == expected_guids(sim, stream, TAP_START), stream
    late = [
        r
        for r in sim.world.rows()
        if r.activity_type_id == 6 and r.committed_at > sim.clock.now() - dt.timedelta(hours=1)
    ]
    assert late  # rows committed after the backfill, stamped before its end
    # bulk records have REST's shape: same fields, attributes as an object
    rest_record = next(r for run in runs[1:] for r in run.records["activities"])
    assert set(first.records["activities"][0]) == set(rest_record)
    assert isinstance(first.records["activities"][0]["attributes"], dict)


def test_tap_rest_method_never_creates_jobs(simulator, run_tap):
    sim = simulator(tap_world(days=5, rows=800))
    run = run_tap(bulk_config(sim, backfill_method="rest"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert creates(sim) == 0
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities", TAP_START)


def test_tap_broken_download_resumes_with_range(simulator, run_tap):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.break_downloads = 2
    run = run_tap(bulk_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    assert sim.counters.bulk_range_answers == 2
    assert "download broke at byte" in run.stderr
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities", TAP_START)


def test_tap_export_quota_stops_cleanly_and_the_next_day_resumes(simulator, run_tap):
    sim = simulator(tap_world())
    sim.bulk.quota_bytes = 1  # the first file spends the day's export quota
    first = run_tap(bulk_config(sim))
    # the backfill pauses with its state saved; the other streams are read as usual
    assert first.returncode == 0, first.stderr[-3000:]
    assert_clean(first)
    warnings = [line for line in first.stderr.splitlines() if "bulk backfill paused" in line]
    assert warnings
    assert "1029 Export daily quota exceeded" in warnings[0]
    assert "Marketo resets the daily quota at midnight US Central" in warnings[0]
    assert "The next run resumes this backfill where it stopped" in warnings[0]
    for stream in ("lead_changes", "deleted_leads"):
        assert sorted(first.guids(stream)) == expected_guids(sim, stream, TAP_START)
    for partition in first.state["bookmarks"]["activities"]["partitions"]:
        assert "replication_key_value" not in partition  # the backfill is not finished
    (partition,) = [
        p
        for p in first.state["bookmarks"]["activities"]["partitions"]
        if (p.get("bulk") or {}).get("job")
    ]
    pending = partition["bulk"]["job"]["exportId"]
    assert partition["bulk"]["done_until"] == "2024-02-01T00:00:00Z"
    sim.clock.advance(dt.timedelta(days=1))
    sim.bulk.quota_bytes = 500 * 1024 * 1024
    second = run_tap(bulk_config(sim), state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    # the saved job, created a day ago, is older than stale_after (6 h): which of its
    # timestamps bounds its snapshot is unverified, so it is created again rather than
    # enqueued; one more for the day that passed
    assert creates(sim) == 4
    assert pending not in file_fetches(sim)
    assert f"Bulk export {pending} saved in the state was taken at" in second.stderr
    delivered = first.guids("activities") + second.guids("activities")
    assert [g for g, n in Counter(delivered).items() if n > 1] == []
    assert sorted(delivered) == expected_guids(sim, "activities", TAP_START)


def test_tap_full_queue_waits_for_a_place(simulator, run_tap):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.processing_s = 60
    sim.bulk.occupy(sim.clock.now(), 10)
    config = bulk_config(sim)
    ticker_stop = threading.Event()

    def tick():  # other integrations' jobs finish as virtual time passes
        while not ticker_stop.wait(0.3):
            if sim.counters.errors_by_code.get("1029"):
                sim.clock.advance(seconds=60)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        first = run_tap(config)
    finally:
        ticker_stop.set()
        ticker.join()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Marketo's bulk export queue is full (1029 Too many jobs in queue" in first.stderr
    second = run_tap(config, state=first.state)
    delivered = first.guids("activities") + second.guids("activities")
    assert [g for g, n in Counter(delivered).items() if n > 1] == []
    assert sorted(delivered) == expected_guids(sim, "activities", TAP_START)


@pytest.mark.parametrize(
    ("signum", "name"),
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT (Ctrl-C)")],
)
def test_tap_sigterm_cancels_its_queued_job(simulator, tmp_path, signum, name):
    """SIGTERM (a scheduler) and Ctrl-C alike: job cancelled, state saved, 128 + signal."""
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.processing_s = 3600  # never finishes: the clock is frozen
    config = tmp_path / "config.json"
    config.write_text(json.dumps(bulk_config(sim)))
    tap = subprocess.Popen(
        [sys.executable, "-m", "tap_marketo_activities", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = sigterm_once_polled(tap, sim, timeout=60, signum=signum)
    assert tap.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"Stopped by {name} during the bulk backfill of stream 'activities'" in stderr
    assert len([line for line in stderr.splitlines() if "Stopped by" in line]) == 1
    assert list(sim.bulk.statuses(sim.client_id).values()) == ["Cancelled"]
    states = [json.loads(line)["value"] for line in stdout.splitlines() if '"STATE"' in line]
    partitions = states[-1]["bookmarks"]["activities"]["partitions"]
    assert all(not (p.get("bulk") or {}).get("job") for p in partitions)


def test_a_killed_tap_backfill_resumes_without_rereading_finished_windows(
    simulator, run_tap, tmp_path
):
    sim = simulator(tap_world(days=70, rows=9000))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(bulk_config(sim)))
    tap = subprocess.Popen(
        [sys.executable, "-m", "tap_marketo_activities", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    delivered, state, after_window = [], None, None
    try:
        assert tap.stdout is not None
        for raw in tap.stdout:
            message = json.loads(raw)
            if message["type"] == "RECORD" and message["stream"] == "activities":
                delivered.append(message["record"]["marketoGUID"])
                if after_window is not None and len(delivered) >= after_window + 50:
                    break
            elif message["type"] == "STATE":
                state = message["value"]
                parts = state.get("bookmarks", {}).get("activities", {}).get("partitions", [])
                if after_window is None and any(
                    (p.get("bulk") or {}).get("done_until") for p in parts
                ):
                    after_window = len(delivered)
    finally:
        tap.kill()  # SIGKILL: no cleanup at all
        tap.communicate()
    assert after_window is not None
    second = run_tap(bulk_config(sim), state=state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert creates(sim) == 3  # 70 days: three windows, each created once across both runs
    # the partition that was stopped resumes inside its second window's job; the others
    # read the jobs it created for them (ids shared through the state), none created twice
    assert re.search(
        r"Resuming bulk export \S+ \(completed\) for 2024-02-01T00:00:00Z", second.stderr
    )
    resent = Counter(delivered) & Counter(second.guids("activities"))
    assert 0 < len(resent) <= 50  # only the rows after the last STATE are sent again
    assert sorted(set(delivered) | set(second.guids("activities"))) == expected_guids(
        sim, "activities", TAP_START
    )


def test_an_expired_token_on_the_file_is_renewed_not_written_into_the_file(sim, transport):
    sim.inject("/file.json", "602")  # an error envelope where the file was due
    backfill = make_backfill(sim, transport, {})
    end = START + dt.timedelta(days=10)
    assert by_guid(backfill.records(START, end)) == expected_records(sim, end)
    assert sim.counters.injected_by_code["602"] == 1


def test_tap_renews_a_token_refused_on_the_file(simulator, run_tap):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.inject("/file.json", "602")
    run = run_tap(bulk_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "token expired (601/602)=1" in run.stderr
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities", TAP_START)


def test_typed_tables_ride_the_same_bulk_jobs_as_the_unified_stream(simulator, run_tap):
    """Issue 14 with bulk: five per-type tables cost the jobs and MB of `activities` over them."""
    five = {
        "activities_send_email": 6,
        "activities_email_delivered": 7,
        "activities_open_email": 10,
        "activities_click_email": 11,
        "activities_attend_webinar": 100001,
    }
    world = tap_world(days=35, rows=3000, seed=12)

    def run(selected, **overrides):
        sim = simulator(world)
        config = bulk_config(sim, **overrides)
        discovered = run_tap(config, args=("--discover",))
        assert discovered.returncode == 0, discovered.stderr[-3000:]
        catalog = json.loads(discovered.stdout)
        for entry in catalog["streams"]:
            for item in entry["metadata"]:
                if item["breadcrumb"] == []:
                    item["metadata"]["selected"] = entry["tap_stream_id"] in selected
        done = run_tap(config, catalog=catalog)
        assert done.returncode == 0, done.stderr[-3000:]
        assert_clean(done)
        exported = sum(
            n for path, n in sim.counters.calls_by_path.items() if path.endswith(FILE_SUFFIX)
        )
        return sim, done, creates(sim), exported

    sim, typed, typed_jobs, typed_files = run(set(five))
    _, unified, unified_jobs, unified_files = run(
        {"activities"}, activity_type_ids=sorted(five.values())
    )
    assert typed_jobs == unified_jobs >= 2  # 35 days: two windows
    assert typed_files == unified_files
    summary = [line for line in typed.stderr.splitlines() if "Run summary" in line]
    unified_summary = [line for line in unified.stderr.splitlines() if "Run summary" in line]
    megabytes = re.compile(r"bulk jobs \d+, ([0-9.]+) MB")
    assert megabytes.search(summary[0]).group(1) == megabytes.search(unified_summary[0]).group(1)
    assert "activities" not in typed.records
    for name, type_id in five.items():
        want = expected_guids(sim, "activities", TAP_START, type_ids=[type_id])
        assert want, name
        assert sorted(typed.guids(name)) == want, name
    assert isinstance(typed.records["activities_send_email"][0]["mailing_id"], int)
