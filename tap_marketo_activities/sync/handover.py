"""Bulk first, REST after, in one pass over one partition, with nothing lost or sent twice.

The bulk path reads the partition's window up to a settle margin before the run's start (by
Marketo's clock). Every bulk row goes through ``PartitionSync.admit`` like a REST row, so the
pass's delivered-keys set and ``max_seen`` (the future bookmark) account for it. The REST
engine then starts ``lookback`` before the handover point: rows committed late around it are
read there, and the keys bulk delivered inside that lookback are skipped as re-reads.
"""

from __future__ import annotations

import typing as t

from tap_marketo_activities.sources.bulk.backfill import STATE_KEY

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator

    from tap_marketo_activities.sources.bulk.backfill import BulkBackfill
    from tap_marketo_activities.sync.incremental import PartitionSync

METHODS = ("rest", "bulk", "auto")
_PRUNE_EVERY = 10_000


def in_progress(state: dict[str, t.Any]) -> bool:
    """True when a backfill of this partition started and its REST pass has not finished."""
    progress = state.get(STATE_KEY)
    if not isinstance(progress, dict):
        return False
    return bool(progress.get("job")) or (
        progress.get("done_until") is not None and state.get("replication_key_value") is None
    )


def wants_bulk(
    method: str,
    *,
    threshold: dt.timedelta,
    window_start: dt.datetime,
    now: dt.datetime,
    settle: dt.timedelta,
    state: dict[str, t.Any],
    resuming_cursor: bool,
) -> bool:
    """Whether this pass backfills through bulk (``backfill_method``, see the README).

    ``backfill_method`` governs backfills only: ``bulk`` exports a partition's first window
    (no bookmark yet) whatever its length, but once the partition is caught up a scheduled
    run reads REST unless its window is longer than the threshold, as with ``auto``; an
    export job per scheduled run would only add minutes of waiting and a snapshot that can
    miss the late rows REST reads anyway.
    """
    if method == "rest" or resuming_cursor:
        return False
    if in_progress(state):
        return True
    span = now - window_start
    if method == "bulk" and state.get("replication_key_value") is None:
        return span > settle
    return span > threshold


def bulk_then_handover(backfill: BulkBackfill, sync: PartitionSync) -> Iterator[dict[str, t.Any]]:
    """Yield the window's bulk rows, then move ``sync``'s window start to the handover point.

    The caller then starts its REST walk from ``sync.start()``: ``lookback`` before the
    backfill's end, or earlier when a file's snapshot was taken before that (a job reused
    from an earlier run): from ``lookback`` before the snapshot (``BulkBackfill.rest_from``).
    The keys bulk delivered from that point on are kept for the whole pass, so the REST
    re-read skips them.
    """
    if sync.bookmark is not None and not in_progress(sync.state):
        sync.state.pop(STATE_KEY, None)  # a finished backfill of an earlier run
    start = sync.window_start
    end = backfill.end_for(sync.run_started())
    backfill.lookback = sync.lookback
    backfill.on_replayed = sync.admit
    # No REST start can be earlier than this (older saved jobs are created again).
    sync.prune_floor = sync.run_started() - backfill.settings.stale_after - sync.lookback
    for seen, (record, when) in enumerate(backfill.dated_records(start, end), start=1):
        if sync.admit(record["marketoGUID"], when):
            yield record
        if seen % _PRUNE_EVERY == 0:
            sync.page_done(None)  # forget keys no later window can re-read
    handover = max(start, min(end, sync.run_started()) - sync.lookback)
    late = backfill.rest_from
    if late is not None and late < handover:
        handover = max(start, late)
        sync.prune_floor = handover
        backfill.logger.info(
            "%s: an export file was taken before the rows stamped up to its end had all "
            "committed; REST re-reads from %s so that rows committed later are not lost.",
            sync.label,
            handover.isoformat(),
        )
    else:
        sync.prune_floor = None
    sync.page_done(None)
    sync.window_start = handover
