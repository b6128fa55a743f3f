"""A bulk job that breaks never stops the tap for good, nor the streams that do not use bulk.

A job that is gone (HTTP 404 or "not found"), whose file answers 404, or whose file fails its
checksum is created again, once; if that one breaks too, its partition's backfill is given up
to REST. Either way every row arrives once, the run ends 0 and ``lead_changes`` /
``deleted_leads`` are read.
"""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import expected_guids
from test_bulk_e2e import TAP_START, assert_clean, bulk_config, creates, file_fetches, tap_world


def paused_first_run(sim, run_tap):
    """A first run whose backfill pauses on the export quota with a job saved in its state."""
    sim.bulk.quota_bytes = 1  # the first file spends the day's export quota
    first = run_tap(bulk_config(sim))
    assert first.returncode == 0, first.stderr[-3000:]
    (partition,) = [
        p
        for p in first.state["bookmarks"]["activities"]["partitions"]
        if (p.get("bulk") or {}).get("job")
    ]
    sim.bulk.quota_bytes = 500 * 1024 * 1024  # quota back (same day: the job is not stale)
    return first, partition["bulk"]["job"]["exportId"]


def assert_all_once(sim, runs):
    for stream in ("activities", "lead_changes", "deleted_leads"):
        delivered = [g for run in runs for g in run.guids(stream)]
        assert [g for g, n in Counter(delivered).items() if n > 1] == [], stream
        assert sorted(delivered) == expected_guids(sim, stream, TAP_START), stream


@pytest.mark.parametrize("fault", ["vanished", "file_404_ids", "bad_checksum_ids"])
def test_a_saved_job_that_is_gone_or_broken_is_created_again(simulator, run_tap, fault):
    sim = simulator(tap_world())
    first, pending = paused_first_run(sim, run_tap)
    getattr(sim.bulk, fault).add(pending)
    second = run_tap(bulk_config(sim), state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert_clean(second)
    assert creates(sim) == 3  # two windows, the broken one once more
    if fault == "vanished":
        assert f"Bulk export {pending} saved in the state is gone" in second.stderr
    else:
        assert f"Bulk export {pending} cannot be used" in second.stderr
    assert "through REST instead" not in second.stderr
    assert_all_once(sim, [first, second])
    third = run_tap(bulk_config(sim), state=second.state)  # and nothing is stuck after it
    assert third.returncode == 0, third.stderr[-3000:]
    assert "bulk" not in third.stderr.lower() or "through bulk export jobs" not in third.stderr


def test_a_job_of_this_run_that_fails_its_checksum_twice_gives_the_backfill_up_to_rest(
    simulator, run_tap
):
    sim = simulator(tap_world(days=10, rows=1500))
    sim.bulk.corrupt_checksum = True
    run = run_tap(bulk_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    assert_clean(run)
    warning = next(line for line in run.stderr.splitlines() if "gave up" in line)
    assert "the downloaded file's SHA-256 is" in warning
    assert "reading from 2024-01-01T00:00:00+00:00 through REST instead" in warning
    assert "creating it again" in run.stderr  # once; the second file fails too: REST
    assert creates(sim) == 1 + 1
    assert len(file_fetches(sim)) == 2
    assert_all_once(sim, [run])
    again = run_tap(bulk_config(sim), state=run.state)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "through bulk export jobs" not in again.stderr  # caught up: REST
