"""A run that reconciles sends each lead once, with its newest values.

Such a run sends every lead from the export files, then the leads the change feed names.
Those the files already hold with their current values are not sent again; a lead that
changed after its file was taken is sent again, newest last. The tap runs as a process
against the simulator; a second scenario moves the virtual clock while each export job
processes, so that activities commit between a lead's file and the feed.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from test_leads import FIRST_NOW, START, assert_current, changed, leads_config, world

from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.simulator.leads import database
from tap_marketo_activities.streams.leads.emitted import Emitted

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tap_marketo_activities.simulator import MarketoSimulator

LOOKBACK = timedelta(minutes=60)


def at(days: float, hours: float = 0) -> str:
    return format_datetime(parse_datetime(FIRST_NOW) + timedelta(days=days, hours=hours))


def sends(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Each lead's records, in the order the run sent them."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        out[record["id"]].append(record)
    return out


def test_a_lead_sent_with_the_same_values_is_held_back_and_a_changed_one_is_not():
    sent = Emitted({"id": "integer", "seats": "integer", "price": "currency", "at": "datetime"})
    sent.add({"id": 7, "seats": 3, "price": 5.0, "at": "2024-04-12T14:00:00Z"})
    sent.add({"id": 2, "seats": 1, "price": 1.5, "at": None})
    sent.add({"id": 7, "seats": 4, "price": 5.0, "at": "2024-04-12T14:00:00Z"})  # sent again
    rows = [
        {"id": 7, "seats": 4, "price": 5, "at": "2024-04-12T07:00:00-07:00"},  # the same
        {"id": 7, "seats": 3, "price": 5.0, "at": "2024-04-12T14:00:00Z"},  # not the last
        {"id": 2, "seats": 1, "price": 1.5, "at": None},  # the same
        {"id": 2, "seats": 1, "price": 1.5, "at": "2024-04-12T14:00:00Z"},  # changed
        {"id": 9, "seats": 1, "price": 1.5, "at": None},  # never sent
        {"id": None},
    ]
    assert [row["id"] for row in sent.unsent(rows)] == [7, 2, 9, None]
    assert sent.skipped == 2
    assert len(sent) == 3


@pytest.mark.parametrize("updated_at_filter", [False, True], ids=["feed", "updatedAt"])
def test_a_reconciling_run_sends_each_changed_lead_once(simulator, run_tap, updated_at_filter):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    sim.bulk.lead_updated_at_filter = updated_at_filter
    sim.clock.set(at(8))  # the afternoon's changes have all committed; reconciliation is due
    quiet = set(database(sim).at(sim.clock.now())) - set(changed(sim, START, at(8)))
    silent = min(quiet)
    database(sim).change_silently(silent, "region", "LATAM")  # no feed shows it

    due = run_tap(leads_config(sim), state=first.state)
    assert due.returncode == 0, due.stderr[-2000:]
    assert "is complete" in due.stderr, "the run reconciled"
    truth = database(sim).at(sim.clock.now())
    since = format_datetime(parse_datetime(FIRST_NOW) - LOOKBACK)
    feed = {lead for lead in changed(sim, since, at(8)) if lead in truth}
    kinds = set().union(*changed(sim, since, at(8)).values())
    assert {13, 22, 23, 32} <= kinds, "changes of every kind: standard, score, owner, merge"
    assert len(feed) > 20
    counts = Counter(record["id"] for record in due.records["leads"])
    assert [lead for lead, n in counts.items() if n > 1] == [], "each lead once"
    assert set(counts) == set(truth)
    assert_current(due.records["leads"], sim)
    assert next(r for r in due.records["leads"] if r["id"] == silent)["region"] == "LATAM"
    assert "already sent by this run's reconciliation with the same values" in due.stderr


def clock_moves_while_jobs_process(sim: MarketoSimulator, step: timedelta) -> Iterator[None]:
    """While active: each lead export job, once processing, moves the virtual clock ``step``.

    The job's file holds the leads as they were when it started; the clock moving on lets
    the activities stamped meanwhile commit, as a long reconciliation sees on a busy day.
    """
    stop, moved = threading.Event(), set()

    def watch() -> None:
        while not stop.wait(0.01):
            for job in list(sim.bulk.jobs.values()):
                if job.status == "Processing" and job.export_id not in moved:
                    moved.add(job.export_id)
                    sim.clock.advance(step)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def test_a_lead_changed_after_its_export_comes_again_with_its_newer_values(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    state = first.state
    state["bookmarks"]["leads"]["reconciled_at"] = at(-8)  # the last full read: 8 days ago
    sim.clock.set(at(0, hours=1))  # 15:00: activities keep coming until 18:00
    sim.bulk.processing_s = 600
    moving = clock_moves_while_jobs_process(sim, timedelta(seconds=600))
    next(moving)
    try:
        due = run_tap(leads_config(sim), state=state)
    finally:
        next(moving, None)
    assert due.returncode == 0, due.stderr[-2000:]
    assert "is complete" in due.stderr, "the run reconciled"
    assert sim.clock.now() > parse_datetime(at(0, hours=3)), "the clock moved during the run"
    truth = database(sim).at(sim.clock.now())
    by_lead = sends(due.records["leads"])
    assert set(by_lead) >= set(truth)
    for lead, records in by_lead.items():
        assert len(records) <= 2, lead
        if len(records) == 2:
            assert records[0] != records[1], f"lead {lead} sent twice with the same values"
    # Changes of the types the activities walk carried (score, owner, ...) made after that
    # walk ran reach the feed with the next run, whose walk reads them (leads/changes.py
    # keeps each type's position): every lead is current after it, none is lost.
    after = run_tap(leads_config(sim), state=due.state)
    assert after.returncode == 0, after.stderr[-2000:]
    latest = {lead: records[-1] for lead, records in by_lead.items()}
    latest.update({lead: records[-1] for lead, records in sends(after.records["leads"]).items()})
    assert_current([record for lead, record in latest.items() if lead in truth], sim)
    # The leads whose file (the reconciliation's row, sent first) is not current: each
    # changed after its export, and came again from the feed with the newer values.
    stale = {lead for lead, records in by_lead.items() if lead in truth and len(records) == 2}
    assert len(stale) >= 3, "the scenario changes leads after their export"
    assert "already sent by this run's reconciliation with the same values" in due.stderr
