"""The bulk backfill as one step of a partition's pass in the tap (called by ``activities``).

``backfill_method`` and ``bulk_threshold_days`` decide whether the pass starts with bulk
(``handover.wants_bulk``); if so, the window up to a settle margin before the run's start is
read through export jobs, then the caller's REST walk continues from a lookback before that
point. The state is written after every finished window and every 10,000 rows, so a killed
run resumes at the next window, or inside the window's job at the row it reached.

When the 500 MB daily export quota is spent, the partition's pass ends without a REST walk
(its backfill is not finished), its state saved; the other partitions and streams go on, and
the next run after the quota resets enqueues the saved job. A run stopped by Ctrl-C or
SIGTERM while it waits for a job or downloads its file cancels the job and stops with one
line. While rows are being written SIGTERM keeps its default effect (the process ends at
once, as on the REST path); the job is Completed then, nothing to cancel.
"""

from __future__ import annotations

import datetime as dt
import signal
import typing as t

from tap_marketo_activities.errors import MarketoError
from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.sources.bulk.backfill import STATE_KEY, BulkBackfill
from tap_marketo_activities.sources.bulk.errors import UNUSABLE, ExportQuotaExceeded
from tap_marketo_activities.sources.bulk.job_steps import BackfillSettings, BulkStats
from tap_marketo_activities.sources.bulk.signals import Terminated
from tap_marketo_activities.streams.bulk_transport import StreamBulkTransport
from tap_marketo_activities.sync.handover import bulk_then_handover, wants_bulk

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from singer_sdk.helpers.types import Context

    from tap_marketo_activities.sources.bulk.cache import ExportCache
    from tap_marketo_activities.sources.bulk.windows import Window
    from tap_marketo_activities.streams.client import MarketoStream
    from tap_marketo_activities.sync.incremental import PartitionSync

SETTLE = dt.timedelta(minutes=15)
_WRITE_EVERY = 10_000


class BackfillPaused(Exception):
    """The export quota is spent: this partition's pass ends here, state saved; others go on."""


def fresh(stream: MarketoStream) -> list[int]:
    """Types of the stream's partitions that have no bookmark yet (they start together)."""
    bookmarked = {
        tuple((p.get("context") or {}).get("activity_type_ids") or ())
        for p in stream.state_manager.get_state_partitions() or []
        if p.get("replication_key_value")
    }
    types: set[int] = set()
    for partition in stream.partitions or []:
        ids = tuple(partition.get("activity_type_ids") or ())
        if ids not in bookmarked:
            types.update(ids)
    return sorted(types)


def share_job(
    stream: MarketoStream,
    context: Context | None,
    window: Window,
    export_id: str,
    write_state: Callable[[], None],
    *,
    sharing: bool,
) -> None:
    """Record a new job in the state of every partition that will read it, then write state.

    The partition that created it has it as its ``job`` already; the other partitions without
    a bookmark get it under ``shared``, keyed by the window's start, so that after a stopped
    run each of them reuses the job rather than creating its own.
    """
    if sharing:
        for partition in stream.partitions or []:
            if partition == context:
                continue
            state = stream.get_context_state(partition)
            if state.get("replication_key_value") is not None:
                continue
            progress = state.setdefault(STATE_KEY, {})
            progress.setdefault("shared", {})[format_datetime(window.start)] = {
                "exportId": export_id,
                "endAt": format_datetime(window.end),
            }
    write_state()


def give_up_to_rest(sync: PartitionSync, why: str, logger: t.Any) -> None:
    """A job of this run (or its file) cannot be used: REST reads from the unfinished window.

    Windows finished by bulk (this run or earlier ones) stay finished (``done_until``); the
    window whose job broke is read by the REST walk that follows, as any pass's window is,
    and the job is forgotten so that no later run is stuck on it. The other partitions and
    streams are not affected.
    """
    progress = sync.state.get(STATE_KEY)
    done = None
    if isinstance(progress, dict):
        progress["job"] = None
        raw = progress.get("done_until")
        done = parse_datetime(raw) if isinstance(raw, str) else None
    resume = max(sync.window_start, done or sync.window_start)
    sync.window_start = resume
    sync.prune_floor = resume  # keys of the broken window sent before it broke stay known
    sync.page_done(None)
    logger.warning(
        "%s: the bulk backfill gave up (%s); reading from %s through REST instead.",
        sync.label,
        why,
        resume.isoformat(),
    )


def settings_from(config: t.Mapping[str, t.Any]) -> BackfillSettings:
    return BackfillSettings(
        settle=SETTLE,
        poll_initial_s=float(config.get("bulk_poll_seconds", 30)),
    )


def backfill_pass(
    stream: MarketoStream,
    sync: PartitionSync,
    context: Context | None,
    *,
    type_names: t.Mapping[int, str],
    cache: ExportCache,
    write_state: Callable[[], None],
    route: Callable[[dict[str, t.Any]], bool] = lambda record: True,
) -> Iterator[dict[str, t.Any]]:
    """Bulk rows of this partition's window when bulk applies; nothing otherwise."""
    config = stream.config
    settings = settings_from(config)
    if not wants_bulk(
        str(config.get("backfill_method", "auto")),
        threshold=dt.timedelta(days=float(config.get("bulk_threshold_days", 3))),
        window_start=sync.window_start,
        now=stream.api.now(),
        settle=settings.settle,
        state=sync.state,
        resuming_cursor=sync.start().resumes_cursor,
    ):
        return
    if cache.gave_up is not None:
        why = f"a bulk export job of this run could not be used: {cache.gave_up}"
        give_up_to_rest(sync, why, stream.logger)
        write_state()
        return
    stats = BulkStats()
    own = list((context or {}).get("activity_type_ids") or ())
    # A partition without a bookmark shares its jobs with every other such partition.
    job_types = own if sync.bookmark is not None else cache.fresh_types(lambda: fresh(stream))
    backfill = BulkBackfill(
        transport=StreamBulkTransport(stream),
        type_ids=own,
        job_type_ids=sorted(set(job_types) | set(own)),
        cache=cache,
        type_names=type_names,
        state=sync.state,
        settings=settings,
        stats=stats,
        logger=stream.logger,
        server_now=stream.api.now,
        label=sync.label,
        on_job_created=lambda window, export_id: share_job(
            stream, context, window, export_id, write_state, sharing=sync.bookmark is None
        ),
    )
    stream.logger.info(
        "Backfilling %s through bulk export jobs from %s (backfill_method %s).",
        sync.label,
        sync.window_start.isoformat(),
        config.get("backfill_method", "auto"),
    )
    run_stats = stream.api.stats
    windows = 0
    try:
        for count, record in enumerate(bulk_then_handover(backfill, sync), start=1):
            if route(record):  # per-type tables get their rows here too
                run_stats.records[stream.name] += 1
                yield record
            if count % _WRITE_EVERY == 0 or stats.windows != windows:
                windows = stats.windows
                write_state()  # the SDK has written every row up to this one
        write_state()
    except (KeyboardInterrupt, Terminated) as exc:
        write_state()
        terminated = isinstance(exc, Terminated)
        name = "SIGTERM" if terminated else "SIGINT (Ctrl-C)"
        msg = (
            f"Stopped by {name} during the bulk backfill of {sync.label}; an export job it "
            "had queued and Marketo had not finished was cancelled. The next run resumes at "
            "the first unfinished window."
        )
        # As the tap's own signal handlers: 128 + the signal's number (143, 130).
        code = 128 + (signal.SIGTERM if terminated else signal.SIGINT)
        stream.logger.error("%s Exiting with %d.", msg, code)
        raise SystemExit(code) from None
    except ExportQuotaExceeded as exc:
        write_state()  # the saved job is enqueued by the next run
        raise BackfillPaused(str(exc)) from None
    except UNUSABLE as exc:
        give_up_to_rest(sync, str(exc), stream.logger)
        cache.gave_up = type(exc).__name__
        write_state()
        return
    except MarketoError:
        write_state()
        raise
    finally:
        run_stats.bulk_jobs += stats.jobs
        run_stats.bulk_bytes += stats.bytes
        run_stats.bulk_wait_s += stats.wait_s
    stream.logger.info(
        "Bulk backfill of %s done up to %s: %s; REST continues from %s.",
        sync.label,
        backfill.end_for(stream.api.now()).isoformat(),
        stats.summary(),
        sync.window_start.isoformat(),
    )
