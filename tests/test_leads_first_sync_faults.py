"""Faults during the leads first sync, as the activities bulk backfill is tested for them.

The tap runs as a process against the simulator at 23:00, after the afternoon's last
activity has committed, so the leads do not change while the virtual clock moves: each test
checks that the runs together deliver every lead, none twice beyond what the case allows,
and what a person reads.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from helpers import TAP, parse_messages, write_json
from test_leads import START, leads_config, world

from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.simulator.leads import database
from tap_marketo_activities.sources.bulk.windows import plan_windows

if TYPE_CHECKING:
    from pathlib import Path

    from helpers import TapRun

    from tap_marketo_activities.simulator import MarketoSimulator

NIGHT = "2024-04-12T23:00:00Z"  # the world's activities all committed by 18:15
WINDOWS = len(plan_windows(parse_datetime(START), parse_datetime(NIGHT)))


def lead_jobs(sim: MarketoSimulator) -> list[Any]:
    """This client's createdAt lead export jobs, in the order they were created."""
    return [
        job
        for job in sim.bulk.jobs.values()
        if job.lead_filter is not None and job.lead_filter[0] == "createdAt"
    ]


def leads_state(run: TapRun) -> dict[str, Any]:
    assert run.state is not None
    return run.state["bookmarks"]["leads"]


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def assert_every_lead(sim: MarketoSimulator, *runs: list[dict[str, Any]]) -> Counter[int]:
    """Every lead arrived across the runs; returns how often each did."""
    delivered = Counter(record["id"] for records in runs for record in records)
    assert set(delivered) == set(database(sim).at(sim.clock.now())), "every lead, none lost"
    return delivered


def test_a_failed_lead_job_says_what_failed_where_it_resumes_and_what_to_do(simulator, run_tap):
    sim = simulator(world(), now=NIGHT)
    sim.bulk.fail_jobs = 1  # the first window's job ends Failed
    failed = run_tap(leads_config(sim))
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr, failed.stderr[-2000:]
    (job,) = lead_jobs(sim)
    (line,) = lines_with(failed.stderr, "| ERROR")
    assert (
        f"Lead export {job.export_id} of the leads first sync failed in Marketo for the "
        "createdAt window 2023-01-01T00:00:00Z .. 2023-02-01T00:00:00Z: Export failed: the "
        "simulator was told to fail this job." in line
    )
    assert "the next run resumes at this window with a new export job" in line
    assert "narrow lead_fields" in line
    assert f"give Adobe support the export id {job.export_id}" in line
    assert "backfill_method" not in failed.stderr, "leads have no REST path to switch to"
    assert "replication_key_value" not in leads_state(failed)
    assert not leads_state(failed)["bulk"].get("job")
    resumed = run_tap(leads_config(sim), state=failed.state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    delivered = assert_every_lead(sim, failed.records["leads"], resumed.records["leads"])
    assert max(delivered.values()) == 1
    assert len(lead_jobs(sim)) == WINDOWS + 1, "only the failed window exported again"


def test_ctrl_c_cancels_the_queued_lead_job_and_the_next_run_loses_nothing(
    simulator, run_tap, tmp_path: Path
):
    sim = simulator(world(), now=NIGHT)
    sim.bulk.processing_s = 600  # a job processes until the clock moves 10 minutes
    done_before_stop = 3
    command = [*TAP, "--config", str(write_json(tmp_path, "config.json", leads_config(sim)))]
    tap = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=out.extend, args=(tap.stdout,), daemon=True),
        threading.Thread(target=err.extend, args=(tap.stderr,), daemon=True),
    ]
    for reader in readers:
        reader.start()
    moved: set[str] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs = lead_jobs(sim)
            for job in jobs[:done_before_stop]:  # the first windows finish
                if job.status == "Processing" and job.export_id not in moved:
                    moved.add(job.export_id)
                    sim.clock.advance(seconds=600)
            if len(jobs) > done_before_stop and jobs[-1].status == "Processing":
                break
            time.sleep(0.01)
        time.sleep(0.3)  # the tap polls the job
        tap.send_signal(signal.SIGINT)
        tap.wait(timeout=60)
    finally:
        if tap.poll() is None:
            tap.kill()
            tap.wait()
        for reader in readers:
            reader.join(timeout=10)
        for pipe in (tap.stdout, tap.stderr):
            if pipe is not None:
                pipe.close()
    stderr = "".join(err)
    assert tap.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    (line,) = lines_with(stderr, "Stopped by")
    assert (
        "Stopped by SIGINT (Ctrl-C) during the leads first sync; an export job it had queued "
        "and Marketo had not finished was cancelled. The next run resumes at the first "
        "unfinished window. Exiting with 130." in line
    )
    jobs = lead_jobs(sim)
    assert [job.status for job in jobs] == ["Completed"] * done_before_stop + ["Cancelled"]
    messages = parse_messages("".join(out))
    stopped = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "leads"]
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    progress = state["bookmarks"]["leads"]["bulk"]
    assert not progress.get("job"), "the cancelled job is not saved"
    assert progress["done_until"] == "2023-04-04T00:00:00Z", "three windows written"

    sim.bulk.processing_s = 0
    resumed = run_tap(leads_config(sim), state=state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    delivered = assert_every_lead(sim, stopped, resumed.records["leads"])
    assert max(delivered.values()) == 1, "no window read twice"
    assert len(lead_jobs(sim)) == WINDOWS + 1, "only the cancelled window exported again"


def test_a_spent_export_quota_pauses_the_first_sync_and_the_next_day_resumes(simulator, run_tap):
    sim = simulator(world(), now=NIGHT)
    sim.bulk.quota_bytes = 1  # the first file spends the day's export quota
    paused = run_tap(leads_config(sim))
    assert paused.returncode == 0, paused.stderr[-2000:]
    assert "Traceback" not in paused.stderr
    assert not lines_with(paused.stderr, "| ERROR")
    (line,) = lines_with(paused.stderr, "leads: first sync paused")
    assert "with the leads created before 2023-02-01T00:00:00Z written" in line
    assert "1029 Export daily quota exceeded" in line
    assert "Marketo resets the daily quota at midnight US Central" in line
    assert "The next run resumes the leads export where it stopped" in line
    progress = leads_state(paused)
    assert "replication_key_value" not in progress, "no bookmark before every window is read"
    assert progress["bulk"]["done_until"] == "2023-02-01T00:00:00Z"
    saved = progress["bulk"]["job"]["exportId"]
    assert sim.bulk.jobs[saved].status == "Created", "refused at enqueue: kept for next run"
    assert paused.schemas["merged_leads"], "the pass ends as usual"

    sim.clock.advance(timedelta(days=1))  # a new quota day
    sim.bulk.quota_bytes = 500 * 1024 * 1024
    resumed = run_tap(leads_config(sim), state=paused.state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming bulk export {saved}" in resumed.stderr, "the saved job is enqueued"
    delivered = assert_every_lead(sim, paused.records["leads"], resumed.records["leads"])
    assert max(delivered.values()) == 1
    assert len(lead_jobs(sim)) == WINDOWS, "each window exported once"
    assert leads_state(resumed)["replication_key_value"] == NIGHT


def test_a_full_export_queue_waits_for_a_place(simulator, run_tap):
    sim = simulator(world(), now=NIGHT)
    sim.bulk.processing_s = 60
    sim.bulk.occupy(sim.clock.now(), 10)  # other integrations hold every place
    stop = threading.Event()

    def others_finish() -> None:  # their jobs process as virtual time passes
        while not stop.wait(0.2):
            if sim.counters.errors_by_code.get("1029"):
                sim.clock.advance(seconds=60)

    ticker = threading.Thread(target=others_finish, daemon=True)
    ticker.start()
    try:
        run = run_tap(leads_config(sim))
    finally:
        stop.set()
        ticker.join()
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Marketo's bulk export queue is full (1029 Too many jobs in queue" in run.stderr
    delivered = assert_every_lead(sim, run.records["leads"])
    assert max(delivered.values()) == 1
    assert leads_state(run)["replication_key_value"] == NIGHT


def test_a_download_that_breaks_is_fetched_again_not_exported_again(simulator, run_tap):
    sim = simulator(world(), now=NIGHT)
    sim.bulk.break_downloads = 3
    run = run_tap(leads_config(sim))
    assert run.returncode == 0, run.stderr[-2000:]
    # The simulator's lead files (a few KB) break before the tap's first 64 KB chunk, so
    # the resume starts at byte 0; Range resumes of big files: test_bulk_e2e.py.
    assert len(lines_with(run.stderr, "download broke at byte")) == 3
    delivered = assert_every_lead(sim, run.records["leads"])
    assert max(delivered.values()) == 1
    assert len(lead_jobs(sim)) == WINDOWS


def test_a_download_that_keeps_breaking_stops_with_one_line_and_loses_nothing(simulator, run_tap):
    sim = simulator(world(), now=NIGHT)
    sim.bulk.break_downloads = 1000  # every answer of the file is cut half-way
    cut = run_tap(leads_config(sim))
    assert cut.returncode != 0
    assert "Traceback" not in cut.stderr, cut.stderr[-2000:]
    (line,) = lines_with(cut.stderr, "| ERROR")
    assert "The leads first sync stopped: a bulk export file kept breaking" in line
    assert "the next run resumes it" in line
    assert not cut.records["leads"], "nothing from a file not wholly downloaded"
    assert "replication_key_value" not in leads_state(cut)
    sim.bulk.break_downloads = 0
    resumed = run_tap(leads_config(sim), state=cut.state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    delivered = assert_every_lead(sim, resumed.records["leads"])
    assert max(delivered.values()) == 1


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("short_rows", "the job's status announced"),  # numberOfRecords counts rows not there
        ("corrupt_checksum", "the downloaded file's SHA-256 is"),
    ],
)
def test_a_file_that_cannot_be_trusted_is_exported_again_then_reported(
    simulator, run_tap, fault, says
):
    sim = simulator(world(), now=NIGHT)
    setattr(sim.bulk, fault, 2 if fault == "short_rows" else True)
    bad = run_tap(leads_config(sim))
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr, bad.stderr[-2000:]
    jobs = lead_jobs(sim)
    windows = [job.lead_filter for job in jobs]
    assert windows[-1] == windows[-2], "its window exported anew once, then the sync stops"
    assert len(set(windows)) == len(windows) - 1
    first_bad, again = len(jobs) - 2, jobs[-1]
    (line,) = lines_with(bad.stderr, "| ERROR")
    assert f"bulk export {again.export_id} (leads first sync" in line
    assert says in line
    assert (
        "The leads first sync stopped there, its window exported anew once already: the "
        "leads of the windows before it are written and the next run resumes at this window."
        in line
    )
    assert "backfill_method" not in bad.stderr
    assert f"Bulk export {jobs[first_bad].export_id} cannot be used" in bad.stderr
    assert "replication_key_value" not in leads_state(bad)

    setattr(sim.bulk, fault, 0 if fault == "short_rows" else False)
    resumed = run_tap(leads_config(sim), state=bad.state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    delivered = assert_every_lead(sim, bad.records["leads"], resumed.records["leads"])
    assert max(delivered.values()) == 1, "no row of a bad file was sent"
