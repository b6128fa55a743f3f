"""A killed leads first sync resumes as the activities backfill does: the job is reattached.

Each test runs the tap as a process against the simulator, SIGKILLs it at a point of the lead
export (job created and processing, or its file half written out), then resumes from the last
STATE the process wrote (what a target saw) and checks: every lead arrives, the number of
export jobs created, and that no more rows are sent again than the STATE cadence allows
(``TAP_MARKETO_LEADS_STATE_EVERY``; 1,000 by default).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from helpers import TAP, parse_messages, write_json
from test_leads import FIRST_NOW, START, leads_config, world
from test_typed_streams import discover, select

from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.simulator.clock import parse_datetime as sim_time
from tap_marketo_activities.simulator.leads import database
from tap_marketo_activities.sources.bulk.windows import plan_windows

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tap_marketo_activities.simulator import MarketoSimulator

EVERY = 5


def kill_when(
    command: list[str],
    ready: Callable[[list[dict[str, Any]]], bool],
    *,
    env: dict[str, str],
    pause: float = 0.0,
    timeout: float = 120,
) -> tuple[list[dict[str, Any]], int, str]:
    """Run the tap; SIGKILL it ``pause`` seconds after ``ready(messages so far)`` holds.

    Returns the messages it wrote before the kill (what a target saw), its exit code and
    its log. A watchdog kills it after ``timeout`` seconds whatever happens.
    """
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    messages: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.strip():
                continue
            messages.append(json.loads(line))
            if ready(messages):
                time.sleep(pause)
                os.kill(process.pid, signal.SIGKILL)
                break
        process.wait(timeout=timeout)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return messages, process.returncode, stderr


def resume(
    config: dict[str, Any],
    state: dict[str, Any],
    folder: Path,
    env: dict[str, str],
    extra: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], int, str]:
    command = [*TAP, "--config", str(write_json(folder, "config-resume.json", config))]
    command += ["--state", str(write_json(folder, "state-resume.json", state)), *extra]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env}
    )
    return parse_messages(done.stdout), done.returncode, done.stderr


def lead_job(state: dict[str, Any] | None) -> dict[str, Any] | None:
    leads = ((state or {}).get("bookmarks") or {}).get("leads") or {}
    return (leads.get("bulk") or {}).get("job")


def last_state(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return [m["value"] for m in messages if m["type"] == "STATE"][-1]


def lead_ids(messages: list[dict[str, Any]]) -> list[int]:
    return [m["record"]["id"] for m in messages if m["type"] == "RECORD" and m["stream"] == "leads"]


def lead_jobs(sim: MarketoSimulator) -> list[str]:
    return [
        job.export_id
        for job in sim.bulk.jobs.values()
        if job.lead_filter is not None and job.lead_filter[0] == "createdAt"
    ]


def windows(start: str, end: str) -> int:
    return len(plan_windows(parse_datetime(start), parse_datetime(end)))


def killed_while_processing(
    sim: MarketoSimulator, config: dict[str, Any], tmp_path: Path
) -> tuple[dict[str, Any], str]:
    """Kill the first sync once its first lead job is saved in a STATE and processing."""
    sim.bulk.processing_s = 3600  # the virtual clock stands still: it processes until reset
    command = [*TAP, "--config", str(write_json(tmp_path, "config.json", config))]
    written, code, _ = kill_when(
        command, lambda msgs: lead_job(msgs[-1].get("value")) is not None, env={}, pause=1.0
    )
    assert code == -signal.SIGKILL
    state = last_state(written)
    job = lead_job(state)
    assert job is not None
    assert job["rows_done"] == 0
    assert not lead_ids(written)
    assert sim.bulk.jobs[job["exportId"]].status in ("Queued", "Processing")
    sim.bulk.processing_s = 0
    return state, job["exportId"]


def test_a_first_sync_killed_while_its_job_processes_reattaches_the_job(simulator, tmp_path: Path):
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim)
    state, export_id = killed_while_processing(sim, config, tmp_path)
    messages, code, log = resume(config, state, tmp_path, {})
    assert code == 0, log[-2000:]
    assert f"Resuming bulk export {export_id}" in log
    assert len(lead_jobs(sim)) == windows(START, FIRST_NOW), "no window exported twice"
    ids = lead_ids(messages)
    assert sorted(ids) == sorted(database(sim).at(sim.clock.now())), "every lead, once"
    assert last_state(messages)["bookmarks"]["leads"]["replication_key_value"] == FIRST_NOW


def test_a_saved_job_marketo_no_longer_has_is_created_again(simulator, tmp_path: Path):
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim)
    state, export_id = killed_while_processing(sim, config, tmp_path)
    sim.bulk.vanished.add(export_id)  # every call about it answers 404 now
    messages, code, log = resume(config, state, tmp_path, {})
    assert code == 0, log[-2000:]
    assert f"Bulk export {export_id} saved in the state is gone" in log
    assert len(lead_jobs(sim)) == windows(START, FIRST_NOW) + 1
    assert sorted(lead_ids(messages)) == sorted(database(sim).at(sim.clock.now()))


def test_a_stale_saved_job_of_the_last_window_is_created_again(simulator, tmp_path: Path):
    sim = simulator(world(), now=FIRST_NOW)
    start = (sim_time(FIRST_NOW) - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {**leads_config(sim), "start_date": start}  # one window, ending at the run's start
    state, export_id = killed_while_processing(sim, config, tmp_path)
    sim.clock.advance(timedelta(hours=7))  # older than stale_after (6 h)
    messages, code, log = resume(config, state, tmp_path, {})
    assert code == 0, log[-2000:]
    assert f"Bulk export {export_id} saved in the state was taken at" in log
    assert len(lead_jobs(sim)) == 2
    truth = database(sim).at(sim.clock.now())
    expected = {lead for lead, row in truth.items() if start <= row["createdAt"] < FIRST_NOW}
    assert expected, "the window has leads"
    assert sorted(lead_ids(messages)) == sorted(expected)


def test_a_first_sync_killed_while_writing_a_file_resumes_inside_it(
    simulator, run_tap, tmp_path: Path
):
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim)
    env = {"TAP_MARKETO_LEADS_STATE_EVERY": str(EVERY)}
    # leads alone: its STATE stays under 4 KB, which the writer writes at once (with the
    # activities' overlap sets it may hold one back, and the bound is then the window's rows)
    catalog = select(discover(run_tap, config), {"leads"})
    extra = ("--catalog", str(write_json(tmp_path, "catalog.json", catalog)))

    def mid_file(messages: list[dict[str, Any]]) -> bool:
        """Two lead rows after a STATE that names rows of a file already sent."""
        marks = [
            i for i, m in enumerate(messages) if (lead_job(m.get("value")) or {}).get("rows_done")
        ]
        if not marks:
            return False
        after = messages[marks[-1] + 1 :]
        return sum(m["type"] == "RECORD" and m["stream"] == "leads" for m in after) >= 2

    command = [*TAP, "--config", str(write_json(tmp_path, "config.json", config)), *extra]
    written, code, _ = kill_when(command, mid_file, env=env)
    assert code == -signal.SIGKILL
    state = last_state(written)
    job = lead_job(state)
    assert job is not None
    assert job["rows_done"] >= EVERY
    messages, code, log = resume(config, state, tmp_path, env, extra)
    assert code == 0, log[-2000:]
    assert f"Resuming bulk export {job['exportId']}" in log
    assert f"{job['rows_done']} rows already sent" in log
    assert len(lead_jobs(sim)) == windows(START, FIRST_NOW), "the window is not exported again"
    delivered = Counter(lead_ids(written) + lead_ids(messages))
    assert set(delivered) == set(database(sim).at(sim.clock.now())), "nothing lost"
    again = sum(n - 1 for n in delivered.values())
    assert 0 < again <= EVERY, f"{again} leads sent twice (bound: {EVERY} per kill)"


def test_a_saved_lead_job_that_is_not_marketos_is_refused_before_any_call(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    hostile = [
        (
            {"exportId": "../../rest/v1/leads", "startAt": START, "endAt": "2023-02-01T00:00:00Z"},
            "bulk.job.exportId",
        ),
        (
            {
                "exportId": "0f0e6a52-8c4e-4d7e-9a55-1b5c6f1f7c11",
                "startAt": START,
                "endAt": "2099-01-01T00:00:00Z",
            },
            "bulk.job.endAt",
        ),
        (
            {
                "exportId": "0f0e6a52-8c4e-4d7e-9a55-1b5c6f1f7c11",
                "startAt": START,
                "endAt": "2023-02-01T00:00:00Z",
                "rows_done": -3,
            },
            "bulk.job.rows_done",
        ),
    ]
    for job, field in hostile:
        sim.reset_counters()
        state = {"bookmarks": {"leads": {"backfill_started": FIRST_NOW, "bulk": {"job": job}}}}
        run = run_tap(leads_config(sim), state=state)
        assert run.returncode != 0
        assert f"State for stream 'leads': field '{field}'" in run.stderr, run.stderr[-1500:]
        assert "Traceback" not in run.stderr
        assert not sim.counters.calls_by_path, "refused before any call"
