"""The leads reconciliation pass: when due, every lead again by bulk createdAt windows.

It catches what no feed shows (the simulator's ``change_silently``: a field set with no
activity and ``updatedAt`` unmoved, as a system or formula field changes), runs only when
the last full read began ``leads_reconcile_days`` ago or more (0: never), and spends at most
its share of the day's bulk quota, continuing in later runs.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from test_leads import FIRST_NOW, START, changed, leads_config, world

from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.simulator.leads import database
from tap_marketo_activities.sources.bulk.windows import plan_windows

if TYPE_CHECKING:
    from tap_marketo_activities.simulator import MarketoSimulator


def at(days: float) -> str:
    return format_datetime(parse_datetime(FIRST_NOW) + timedelta(days=days))


def created_jobs(sim: MarketoSimulator) -> int:
    """Lead export jobs by createdAt (the first sync's and the reconciliation's)."""
    return sum(
        1
        for job in sim.bulk.jobs.values()
        if job.lead_filter is not None and job.lead_filter[0] == "createdAt"
    )


def leads_of(run: Any) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in run.records["leads"]}


def test_due_not_due_off_and_a_change_no_feed_shows(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    windows = created_jobs(sim)
    assert first.state["bookmarks"]["leads"]["reconciled_at"] == FIRST_NOW

    sim.clock.set(at(3))
    quiet = set(database(sim).at(sim.clock.now())) - set(changed(sim, START, at(3)))
    lead = min(quiet)  # no activity ever changed it
    before = database(sim).at(sim.clock.now())[lead]
    database(sim).change_silently(lead, "region", "LATAM")
    after = database(sim).at(sim.clock.now())[lead]
    assert after["region"] == "LATAM"
    assert after["updatedAt"] == before["updatedAt"], "no feed shows it"

    not_due = run_tap(leads_config(sim), state=first.state)
    assert not_due.returncode == 0, not_due.stderr[-2000:]
    assert created_jobs(sim) == windows, "3 days after the first sync: not due (7)"
    assert lead not in leads_of(not_due)
    assert not_due.state["bookmarks"]["leads"]["reconciled_at"] == FIRST_NOW

    sim.clock.set(at(8))
    off = run_tap(leads_config(sim, leads_reconcile_days=0), state=not_due.state)
    assert off.returncode == 0, off.stderr[-2000:]
    assert created_jobs(sim) == windows, "0 turns it off"
    assert lead not in leads_of(off)

    due = run_tap(leads_config(sim), state=not_due.state)
    assert due.returncode == 0, due.stderr[-2000:]
    planned = len(plan_windows(parse_datetime(START), parse_datetime(at(8))))
    assert created_jobs(sim) == windows + planned, "one job per createdAt window"
    truth = database(sim).at(sim.clock.now())
    got = leads_of(due)
    assert set(got) == set(truth), "every lead is read again"
    assert got[lead]["region"] == "LATAM", "the change no feed showed arrives"
    assert got[lead]["updatedAt"] == before["updatedAt"]
    assert due.state["bookmarks"]["leads"]["reconciled_at"] == at(8)
    assert "reconcile" not in due.state["bookmarks"]["leads"]
    assert "is complete" in due.stderr

    again = run_tap(leads_config(sim), state=due.state)
    assert again.returncode == 0, again.stderr[-2000:]
    assert created_jobs(sim) == windows + planned, "done: not due for 7 days"


def test_stops_at_its_budget_and_continues_on_a_later_quota_day(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    start_jobs = created_jobs(sim)
    # 20 KB a day: a few of the ~6 KB windows (the simulator's 30 fields, ~20 leads each)
    config = leads_config(sim, bulk_daily_quota_mb=0.02, leads_reconcile_quota_percent=100)
    budget = int(0.02 * 1024 * 1024)
    planned = len(plan_windows(parse_datetime(START), parse_datetime(at(8))))
    state, seen, runs = first.state, set(), []
    for day in range(8, 30):
        sim.clock.set(at(day))
        before = created_jobs(sim)
        run = run_tap(config, state=state)
        assert run.returncode == 0, run.stderr[-2000:]
        state, jobs = run.state, created_jobs(sim) - before
        seen |= set(leads_of(run))
        progress = state["bookmarks"]["leads"].get("reconcile")
        runs.append(jobs)
        if progress is None:
            break
        assert "reconciliation paused at" in run.stderr
        assert progress["started"] == at(8), "one pass, continued"
        assert progress["bytes_today"] <= budget + 10_000, "at most one window past"
        assert 0 < jobs < planned
        if day == 8:  # the same quota day again: the budget is spent, nothing exported
            sim.clock.set(at(8.01))
            same = run_tap(config, state=state)
            assert same.returncode == 0, same.stderr[-2000:]
            assert created_jobs(sim) - before - jobs <= 1
            state = same.state
            seen |= set(leads_of(same))
    assert len(runs) > 2, "the budget split the pass"
    assert created_jobs(sim) - start_jobs == planned, "each window exported once"
    assert state["bookmarks"]["leads"]["reconciled_at"] == at(8)
    assert seen >= set(database(sim).at(sim.clock.now())), "every lead read again"


def test_a_failing_reconciliation_pauses_and_the_feed_still_runs(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set(at(8))
    sim.bulk.fail_jobs = 1  # the first window's job ends Failed
    failed = run_tap(leads_config(sim), state=first.state)
    assert failed.returncode == 0, failed.stderr[-2000:]
    assert "leads: reconciliation paused (" in failed.stderr
    since = format_datetime(parse_datetime(FIRST_NOW) - timedelta(minutes=60))  # lookback
    feed = set(changed(sim, since, at(8))) & set(database(sim).at(sim.clock.now()))
    assert feed, "the scenario has changed leads"
    assert feed <= set(leads_of(failed)), "the feed ran"
    leads_state = failed.state["bookmarks"]["leads"]
    assert leads_state["reconcile"]["started"] == at(8)
    assert leads_state["reconciled_at"] == FIRST_NOW
    sim.clock.set(at(8.5))
    resumed = run_tap(leads_config(sim), state=failed.state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert set(leads_of(resumed)) == set(database(sim).at(sim.clock.now()))
    assert resumed.state["bookmarks"]["leads"]["reconciled_at"] == at(8)


def test_a_state_without_reconciled_at_counts_its_bookmark_as_the_last_full_read(
    simulator, run_tap
):
    """A state of a version before the pass: the first pass comes a period after the bookmark."""
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    older = copy.deepcopy(first.state)
    del older["bookmarks"]["leads"]["reconciled_at"]
    planned = len(plan_windows(parse_datetime(START), parse_datetime(at(8))))

    sim.clock.set(at(3))
    jobs = created_jobs(sim)
    upgraded = run_tap(leads_config(sim), state=older)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert created_jobs(sim) == jobs, "not in the first run after the upgrade"
    (line,) = [line for line in upgraded.stderr.splitlines() if "no reconciled_at" in line]
    assert f"counting the leads as read in full at the bookmark, {FIRST_NOW}" in line
    assert "the first reconciliation comes 7 days after it" in line
    assert upgraded.state["bookmarks"]["leads"]["reconciled_at"] == FIRST_NOW

    sim.clock.set(at(8))
    due = run_tap(leads_config(sim), state=upgraded.state)
    assert due.returncode == 0, due.stderr[-2000:]
    assert created_jobs(sim) == jobs + planned, "a period after the bookmark: due"
    assert "no reconciled_at" not in due.stderr
    assert due.state["bookmarks"]["leads"]["reconciled_at"] == at(8)

    late = run_tap(leads_config(sim), state=older)  # its bookmark is a period old already
    assert late.returncode == 0, late.stderr[-2000:]
    assert "no reconciled_at" in late.stderr
    assert created_jobs(sim) == jobs + 2 * planned, "due at once"
    assert late.state["bookmarks"]["leads"]["reconciled_at"] == at(8)
