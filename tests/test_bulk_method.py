"""``backfill_method`` governs backfills only (issue 21, point 5).

With ``backfill_method: bulk`` a first sync goes through export jobs; once caught up, a
scheduled run reads REST (an export job per run would wait minutes for a snapshot that can
miss late rows), unless the tap fell further behind than ``bulk_threshold_days``.
"""

from __future__ import annotations

from collections import Counter

from helpers import expected_guids
from test_bulk_e2e import TAP_START, assert_clean, bulk_config, creates, tap_world


def test_bulk_method_backfills_through_jobs_then_scheduled_runs_read_rest(simulator, run_tap):
    sim = simulator(tap_world(days=10, rows=1500))
    config = bulk_config(sim, backfill_method="bulk")
    runs = [run_tap(config)]
    assert runs[0].returncode == 0, runs[0].stderr[-3000:]
    assert "through bulk export jobs" in runs[0].stderr
    backfill_jobs = creates(sim)
    assert backfill_jobs >= 1
    for _ in range(2):  # scheduled runs, caught up: REST, no job
        sim.clock.advance(minutes=30)
        runs.append(run_tap(config, state=runs[-1].state))
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
        assert_clean(runs[-1])
        assert "through bulk export jobs" not in runs[-1].stderr
    assert creates(sim) == backfill_jobs
    sim.clock.advance(hours=96)  # fell behind by more than bulk_threshold_days (3): bulk again
    runs.append(run_tap(config, state=runs[-1].state))
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    assert creates(sim) > backfill_jobs
    delivered = [g for run in runs for g in run.guids("activities")]
    assert [g for g, n in Counter(delivered).items() if n > 1] == []
    assert sorted(delivered) == expected_guids(sim, "activities", TAP_START)
