"""A bulk backfill stopped inside its last window and resumed hours later loses no late row.

An export file holds what Marketo had committed when the job took its snapshot. Rows stamped
inside the window that commit after it (a big send's late Send Email rows) are not in the
file, so the REST walk after the backfill must start early enough to read them, however long
the tap was down between the job's creation and its reuse; and a job whose snapshot is too
old is created again. The simulator's jobs snapshot what is committed when they start.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections import Counter

import pytest
from test_bulk_e2e import HANDOVER_TYPES, LOOKBACK, START, new_pass, one_run, rest_pass

from tap_marketo_activities.simulator import World
from tap_marketo_activities.sources.bulk import PlainBulkTransport
from tap_marketo_activities.sync.handover import bulk_then_handover

CREATE = "/bulk/v1/activities/export/create.json"
DAYS = 10
END = START + dt.timedelta(days=DAYS)


def late_world() -> World:
    """Ten days of rows up to the clock and 36 h more; a send stamped 40 min before the clock
    commits until 45 min after it."""
    return World.generate(
        start=START,
        hours=24 * DAYS + 36,
        rows=2300,
        seed=21,
        late_fraction=0.1,
        max_late_minutes=20,
        campaigns=[
            {
                "at": END - dt.timedelta(minutes=40),
                "size": 500,
                "type_id": 6,
                "commit_until": END + dt.timedelta(minutes=45),
            }
        ],
    )


def killed_run(sim, transport, *, after: int):
    """A first run that stops after ``after`` bulk rows; its last STATE is returned."""
    state: dict = {}
    sync, backfill = new_pass(sim, transport, state)
    rows = bulk_then_handover(backfill, sync)
    delivered = [next(rows)["marketoGUID"] for _ in range(after)]
    saved = copy.deepcopy(state)  # the STATE written after those rows
    rows.close()  # SIGKILL: nothing after it is written
    assert saved["bulk"]["job"]["rows_done"] > 0
    return delivered, saved


def resumed_run(sim, transport, state):
    records, _, _ = one_run(sim, transport, state)
    return [r["marketoGUID"] for r in records]


def later_runs(sim, transport, state, count=3):
    """Incremental runs while the last late rows commit (REST only: caught up)."""
    out = []
    for _ in range(count):
        sim.clock.advance(minutes=30)
        records, used_bulk, _ = one_run(sim, transport, state)
        assert not used_bulk
        out.extend(r["marketoGUID"] for r in records)
    return out


@pytest.fixture
def sim(simulator):
    return simulator(late_world(), now=END)


@pytest.fixture
def transport(sim):
    plain = PlainBulkTransport(sim.base_url, sim.client_id, sim.client_secret, timeout=10)
    yield plain
    plain.close()


def late_rows_missing_from_the_file(sim):
    """Rows of the send stamped inside the backfill's window, committed after its job ran."""
    snapshot = sim.clock.now()
    window_end = snapshot - dt.timedelta(minutes=15)
    return [
        r.marketo_guid
        for r in sim.world.rows()
        if r.activity_type_id in HANDOVER_TYPES
        and r.activity_date < window_end
        and r.committed_at > snapshot
    ]


def assert_exactly_once(sim, delivered, *, may_resend=()):
    counts = Counter(delivered)
    assert {g for g, n in counts.items() if n > 1} <= set(may_resend)  # nothing twice
    expected = sim.expected("activities", type_ids=HANDOVER_TYPES, since=START)
    assert sorted(counts) == sorted(r["marketoGUID"] for r in expected)  # nothing lost


@pytest.mark.parametrize("down_hours", [4, 30])
def test_a_job_reused_hours_later_loses_no_row_committed_after_its_snapshot(
    sim, transport, caplog, down_hours
):
    late = late_rows_missing_from_the_file(sim)
    assert len(late) > 100
    first, state = killed_run(sim, transport, after=50)
    sim.clock.advance(hours=down_hours)  # the tap is down; the late rows commit meanwhile
    with caplog.at_level(logging.INFO):
        delivered = first + resumed_run(sim, transport, state)
    delivered += later_runs(sim, transport, state)
    assert set(late) <= set(delivered)
    # A job created again reads its window from the first row: the rows the killed run had
    # sent before its last STATE come again (a target keyed on marketoGUID keeps one).
    assert_exactly_once(sim, delivered, may_resend=first if down_hours > 6 else ())
    # the resumed run also exports the hours it was down (a second window)
    if down_hours < 6:  # within stale_after: the saved job is reused, REST re-reads more
        assert "Resuming bulk export" in caplog.text
        assert sim.counters.calls_by_path[CREATE] == 2
        assert "REST re-reads from 2024-01-10T23:00:00" in caplog.text
    else:  # older: the window is exported again
        assert "more than 6:00:00 ago" in caplog.text
        assert sim.counters.calls_by_path[CREATE] == 3
        assert "REST re-reads from" not in caplog.text


def test_a_fresh_backfill_hands_over_at_the_usual_point(sim, transport, caplog):
    """Without a reused job nothing changes: REST starts a lookback before the run's end."""
    state: dict = {}
    sync, backfill = new_pass(sim, transport, state)
    with caplog.at_level(logging.INFO):
        delivered = [r["marketoGUID"] for r in bulk_then_handover(backfill, sync)]
    assert sync.window_start == backfill.end_for(sync.run_started()) - LOOKBACK
    assert "REST re-reads from" not in caplog.text
    delivered += [r["marketoGUID"] for r in rest_pass(transport, sync, HANDOVER_TYPES)]
    sync.finish()
    delivered += later_runs(sim, transport, state)
    assert_exactly_once(sim, delivered)
