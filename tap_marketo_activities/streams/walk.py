"""The paged walk every incremental stream shares: lookback, overlap dedup, resumable cursors.

The streams themselves are thin subclasses naming an endpoint, a key, a schema and
partitions: ``activities.py``, ``lead_activities.py``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import typing as t

from singer_sdk import metrics
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import StateMessage
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_marketo_activities.errors import (
    ConfigError,
    CursorRejected,
    MarketoError,
    QuotaExhausted,
)
from tap_marketo_activities.logs import Progress
from tap_marketo_activities.records import dated_activity_record, format_datetime
from tap_marketo_activities.sources.prefetch import Plan, chain_key
from tap_marketo_activities.streams.bulk_pass import BackfillPaused
from tap_marketo_activities.streams.client import MarketoPaginator, MarketoStream
from tap_marketo_activities.streams.schemas import ACTIVITY_PROPERTIES
from tap_marketo_activities.streams.sdk_private import DirectRecordMessages, PartitionOwnedState
from tap_marketo_activities.streams.writer import BatchingWriter
from tap_marketo_activities.sync.incremental import (
    REPLICATION_KEY,
    PartitionSync,
    Start,
)
from tap_marketo_activities.wire.envelope import envelope, page_rows

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    import requests
    from singer_sdk.helpers.types import Context

    from tap_marketo_activities.sources.prefetch import Chain


class IncrementalStream(PartitionOwnedState, DirectRecordMessages, MarketoStream):
    """A paged activity walk with lookback, overlap dedup and resumable cursors.

    The SDK's own bookmarking for unsorted streams (progress markers) would move
    a bookmark backwards when a run sees only late rows, and has no place for a
    cursor; :class:`PartitionSync` owns the partition's state instead, and the two
    SDK hooks that would fight it are switched off (``sdk_private.py``).
    """

    primary_keys = ("marketoGUID",)
    replication_key = REPLICATION_KEY
    is_sorted = False
    schema = th.PropertiesList(*ACTIVITY_PROPERTIES).to_dict()
    #: ``records.activity_record`` already builds exactly the schema's properties with
    #: JSON types (RFC 3339 strings, ints, None, attribute values as Marketo sent them),
    #: so the SDK's per-record type conforming only re-checks what is true by
    #: construction; skipping it saved a sixth of the CPU per record (benchmarks/README.md).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    #: The SDK's count-based STATE (every 10,000 records of the stream) is off: it lands in
    #: the middle of a page, with the cursor the last page left, which carries neither keys
    #: nor tally, so a SIGKILL after it cost the next run a lookback of re-sends (measured:
    #: three of nine cursors on the busy hour). ``PartitionSync.page_done`` asks for STATE
    #: at the same cadence, per partition, at a page's end, with keys or a tally.
    STATE_MSG_FREQUENCY = 1 << 62

    _pass: PartitionSync
    _progress: Progress
    _first_token: str | None = None
    #: True while a REST walk runs: the state dict then names only what the target has
    #: (its cursor moves after a page's rows are written), so it may be written at a stop.
    _walking = False
    #: True while the bulk backfill runs: its state is written by its own stops.
    _backfilling = False
    #: False while the first page of a pass resumed from a saved cursor is in flight:
    #: a failure then means Marketo refused the cursor (see ``_walk``).
    _cursor_accepted = True

    @override
    def get_new_paginator(self) -> MarketoPaginator:
        """Start the walk at the token chosen for this pass."""
        return MarketoPaginator(self._first_token, int(self.config["page_size"]))

    @override
    def get_url_params(self, context: Context | None, next_page_token: str | None) -> dict:
        """Token and page size; subclasses add their filters."""
        return {"nextPageToken": next_page_token, "batchSize": self.config["page_size"]}

    @override
    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """No SDK signpost: the cap is the server's clock at run start (PartitionSync)."""
        return

    def partition_label(self, context: Context | None) -> str:
        """How errors and logs name this partition."""
        return f"stream '{self.name}'" + (f" partition {dict(context)}" if context else "")

    def partition_sync(self, state: dict[str, t.Any], context: Context | None) -> PartitionSync:
        """The pass over one partition, reading (and later writing) ``state``."""
        return PartitionSync(
            state,
            label=self.partition_label(context),
            start_date=self.run.start_date,
            lookback=dt.timedelta(minutes=int(self.config["lookback_minutes"])),
            run_started=self.api.now,
            resumable=not self.batching,
        )

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """One pass: resume or mint a token, walk to the end, promote the bookmark."""
        self.api.stats.records[self.name] += 0  # the run summary names it, even with none new
        self.run.start_read_ahead()
        records = self.api.stats.records
        with (
            self.run.read_ahead.closing_on_error(),
            # A long wait on a limit during this pass names it (limits.WaitNotice).
            self.api.limiter.notice.reading(
                self.partition_label(context),
                lambda: f"{records[self.name]} rows of {self.name} sent so far",
            ),
        ):
            yield from self._pass_records(context)

    def _pass_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        sync = self.partition_sync(self.get_context_state(context), context)
        self.before_pass(sync, context)
        uncovered = sync.uncovered_overlap()
        if uncovered:
            self.logger.warning(
                "%s: this run re-reads %s to %s, which the overlap set of the previous run "
                "does not cover (lookback_minutes grew, or that run was resumed after a "
                "kill); rows stamped then may be sent once more (targets that upsert on "
                "marketoGUID keep one).",
                sync.label,
                uncovered[0].isoformat(),
                uncovered[1].isoformat(),
            )
        self._backfilling = True
        try:
            yield from self.backfill(sync, context)
        except BackfillPaused as paused:
            self.logger.warning("%s: bulk backfill paused: %s", sync.label, paused)
            return
        finally:
            self._backfilling = False
        start = sync.start()
        try:
            yield from self._walk(context, sync, start)
        except CursorRejected as refusal:
            start = sync.fall_back()
            self.logger.warning(
                "Marketo refused the saved cursor of %s (%s); restarting from the recovery "
                "time %s (max delivered activityDate minus lookback). Rows are not lost; "
                "rows already delivered are skipped by the overlap set.",
                sync.label,
                refusal,
                start.since.isoformat(),
            )
            yield from self._walk(context, sync, start)
        # Rows still held for a tallied second (sync/gap.py) go out before the pass ends.
        yield from self._emit(sync.release_all())
        sync.finish()
        self.walked(context, sync, start)
        self._write_state()
        self.api.stats.duplicates_skipped[self.name] += sync.report.duplicates
        self.run.lateness.note(sync.report.max_lateness)
        self.logger.info(
            "Finished %s: %d new rows, %d overlap re-reads skipped, bookmark %s",
            sync.label,
            sync.report.emitted,
            sync.report.duplicates,
            sync.state.get("replication_key_value"),
        )
        if sync.gap.proven or sync.gap.flushed:
            self.logger.info(
                "%s: %d re-read rows proven delivered by a stopped run's tally and skipped; "
                "%d rows of seconds the tally could not settle sent (some may be re-sends)",
                sync.label,
                sync.gap.proven,
                sync.gap.flushed,
            )

    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """Hook for stream-specific checks before a pass."""

    def backfill(self, sync: PartitionSync, context: Context | None) -> Iterable[dict]:
        """Hook: rows read another way before the REST walk (bulk, for activities)."""
        del sync, context
        return ()

    def page_seen(self, rows: list[t.Any]) -> None:
        """Hook: every row of a checked page, before the dedup (activities: leads feed)."""

    def walked(self, context: Context | None, sync: PartitionSync, start: Start) -> None:
        """Hook: the REST walk from ``start`` reached the end of its chain."""

    def _walk(self, context: Context | None, sync: PartitionSync, start: Start) -> Iterable[dict]:
        self._pass = sync
        chain = self.run.read_ahead.claim(chain_key(self.name, context), start)
        self._walking = True
        try:
            yield from self._walk_from(context, sync, start, chain)
        except CursorRejected:
            raise
        except (Exception, KeyboardInterrupt):
            write_state_at_stop(self.run.walks())
            raise
        finally:
            self._walking = False
            if chain is not None:
                chain.cancel()

    def _walk_from(
        self, context: Context | None, sync: PartitionSync, start: Start, chain: Chain | None
    ) -> Iterable[dict]:
        if start.resumes_cursor:
            self.logger.info("Resuming %s from its saved cursor", sync.label)
            self._first_token = start.token
        else:
            self.logger.info("Reading %s from %s", sync.label, describe_start(sync, start))
            self._first_token = chain.token() if chain else self.mint_token(start.since)
        self._cursor_accepted = not start.resumes_cursor
        sync.page_token = self._first_token
        self._progress = Progress()
        try:
            if chain is None:
                yield from self.request_records(context)
            else:
                yield from self._read_ahead_records(context, chain)
        except (QuotaExhausted, ConfigError):
            raise
        except MarketoError as exc:
            # Marketo's answer to a stale token is undocumented: whatever keeps the first
            # page from a saved cursor from arriving, restart from the recovery time
            # rather than fail every run on the same cursor.
            if self._cursor_accepted:
                raise
            raise CursorRejected(str(exc)) from None
        finally:
            self._cursor_accepted = True

    # -- reading ahead (sources/prefetch.py) -------------------------------------------

    def plan_chains(self) -> list[Plan]:
        """This stream's walks to read ahead, each from the start its state gives now.

        Read from a copy of the state: nothing is written before the pass itself runs.
        A partition whose state is unreadable, or that will not walk from a start known
        now (see ``reads_ahead``), is left to the pass, which says why or decides then.
        """
        if self.batching:
            return []
        plans = []
        contexts: list[dict | None] = [None]
        if self.partitions:
            contexts = list(self.partitions)
        for context in contexts:
            try:
                sync = self.partition_sync(copy.deepcopy(self._saved_state(context)), context)
            except MarketoError:
                continue
            if self.reads_ahead(sync, context):
                key = chain_key(self.name, context)
                plans.append(Plan(key=key, start=sync.start(), source=self, context=context))
        return plans

    def _saved_state(self, context: Context | None) -> dict[str, t.Any]:
        """The partition's state as the run found it, without creating an entry for it."""
        stream_state = (self.tap_state.get("bookmarks") or {}).get(self.name) or {}
        if context is None:
            return dict(stream_state)
        for partition in stream_state.get("partitions") or []:
            if partition.get("context") == dict(context):
                return dict(partition)
        return {}

    def reads_ahead(self, sync: PartitionSync, context: Context | None) -> bool:
        """Hook: False when the pass may start elsewhere than ``sync.start()`` says now."""
        del sync, context
        return True

    def fetch_page(self, context: Context | None, token: str) -> requests.Response:
        """One page of this stream's walk, as ``request_records`` would ask for it.

        Called from a fetcher thread: the request is built by the same hooks
        (``get_http_request`` with its long-request form), and sent with the same
        validation, token renewal and retries (``request_decorator``).
        """
        request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=token)
        )
        prepared = self.build_prepared_request(
            method=request.method,
            url=request.url,
            params=request.encode_params(),
            headers=request.headers,
            data=request.data,
        )
        send = self.request_decorator(self._send_single)
        return t.cast("requests.Response", send(prepared))

    def next_page(self, token: str, response: requests.Response) -> str | None:
        """The token after this page (None at the end), as the paginator decides it.

        A page that ``parse_response`` will refuse ends the read-ahead here.
        """
        page_rows(response)
        paginator = MarketoPaginator(token, int(self.config["page_size"]))
        paginator.advance(response)
        return None if paginator.finished else paginator.current_value

    def _read_ahead_records(self, context: Context | None, chain: Chain) -> Iterable[dict]:
        """The pages a fetcher read ahead, each handled as ``request_records`` would."""
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            for response in chain.pages():
                request_counter.increment()
                self._log_duration(response, context)
                yield from self.parse_response(response)

    def _log_duration(self, response: requests.Response, context: Context | None) -> None:
        """The SDK's ``http_request_duration`` metric for a page read ahead."""
        tags: dict[str, t.Any] = {
            metrics.Tag.STREAM: self.name,
            metrics.Tag.ENDPOINT: self.path,
            metrics.Tag.HTTP_STATUS_CODE: response.status_code,
            metrics.Tag.STATUS: (
                metrics.Status.SUCCEEDED if response.status_code < 400 else metrics.Status.FAILED
            ),
        }
        if context:
            tags[metrics.Tag.CONTEXT] = context
        point = metrics.Point(
            "timer",
            metric=metrics.Metric.HTTP_REQUEST_DURATION,
            value=response.elapsed.total_seconds(),
            tags=tags,
        )
        metrics.log(self.metrics_logger, point)

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, t.Any]]:
        """Validate the whole page, emit its new rows, then save the cursor."""
        rows = page_rows(response)
        self._cursor_accepted = True
        sync = self._pass
        sync.check_clock(self.api.now())  # the first answer has told us Marketo's clock
        body = envelope(response)
        request_id = str(body.get("requestId", "unknown"))
        names = self.run.activity_types.names
        records = [
            dated_activity_record(row, type_names=names, request_id=request_id) for row in rows
        ]
        self.page_seen(rows)
        counter = self.api.stats.records
        for record, when in records:
            # take first: a re-read never reaches any stream, typed or unified. It gives
            # the row, nothing, or rows held from earlier pages (sync/gap.py).
            for taken in sync.take(record["marketoGUID"], when, record):
                if self.route(taken):
                    yield taken
                    counter[self.name] += 1  # once written: --test stops a stream at a record
        next_token = body.get("nextPageToken")
        yield from self._emit(sync.release_held(next_token))
        # Every row of this page has been written by now: the cursor may move past it.
        if sync.page_done(next_token, self._state_key_room, self._state_tally_room):
            self._write_state()
        if self._progress.due():
            reached = format_datetime(sync.max_seen) if sync.max_seen else "nothing new yet"
            self.logger.info(
                "Still reading %s: %d new rows so far, activityDate reached %s",
                sync.label,
                sync.report.emitted,
                reached,
            )

    def _emit(self, records: t.Sequence[dict[str, t.Any]]) -> Iterable[dict[str, t.Any]]:
        counter = self.api.stats.records
        for record in records:
            if self.route(record):
                yield record
                counter[self.name] += 1  # once written: --test stops a stream at a record

    def route(self, record: dict[str, t.Any]) -> bool:
        """Hand a new row to any other stream that takes it; True if this stream emits it."""
        return True

    @property
    def batching(self) -> bool:
        """True when the SDK sends BATCH files, and writes the state after each itself."""
        return self.get_batch_config(self.config) is not None

    def _write_state(self) -> None:
        if not self.batching:
            self.run.state_writer.write_state(self.tap_state)

    def _state_key_room(self) -> int:
        """Bytes the STATE about to be written may grow by and still go out at once (keys)."""
        writer = self.run.message_writer
        if self.batching or not isinstance(writer, BatchingWriter):
            return 0
        return writer.state_room(len(writer.format_message(StateMessage(value=self.tap_state))))

    def _state_tally_room(self) -> int:
        """Bytes the STATE about to be written may grow by and still go out at once (tally)."""
        writer = self.run.message_writer
        if self.batching or not isinstance(writer, BatchingWriter):
            return 0
        return writer.tally_room(len(writer.format_message(StateMessage(value=self.tap_state))))


def write_state_at_stop(streams: t.Iterable[t.Any]) -> None:
    """A STATE before a stop that lets Python run (issue 22), written at once.

    STATE is written every 10,000 rows of a partition (and held back where its size would
    pass 5 % of the records, writer.py), so a run that stops between two (607, 1029, a
    failure it reports, SIGTERM, Ctrl-C) writes the current one on its way out: a pass in
    its REST walk names the cursor of the last page whose rows are written, with the keys
    the target has; the next run resumes there instead of re-sending. Only when a walk has
    finished a page since its pass began (otherwise the last STATE says it all), and not
    during a bulk backfill, whose state runs ahead of the rows written (it writes its own).
    """
    incremental = [s for s in streams if isinstance(s, IncrementalStream)]
    if not incremental or incremental[0].batching or any(s._backfilling for s in incremental):
        return
    walking = [s for s in incremental if s._walking and s._pass.cursor is not None]
    if not walking:
        return  # no page finished since the last STATE (written, or held and written at exit)
    for stream in walking:
        stream._pass.keys_for_stop()
    run = incremental[0].run
    writer = run.message_writer
    if isinstance(writer, BatchingWriter):
        writer.force_state = True  # written at once, whatever its size
    # A target that is gone (broken pipe) is reported by the stop itself.
    with contextlib.suppress(OSError, ValueError):
        run.state_writer.write_state(incremental[0].tap_state)


def describe_start(sync: PartitionSync, start: Start) -> str:
    """Where a pass starts and why, for the log line that replaces the SDK's own.

    The SDK would log the bookmark as the starting point; the walk starts a lookback
    before it, so the line says both.
    """
    since = format_datetime(start.since)
    minutes = int(sync.lookback.total_seconds() // 60)
    if sync.bookmark is None and start.since > sync.start_date:
        # A bulk backfill read the window up to here and handed over (sync/handover.py).
        done = format_datetime(start.since + sync.lookback)
        return f"{since} (bulk backfill done up to {done} minus {minutes} min lookback)"
    if sync.bookmark is None:
        return f"{since} (start_date; no bookmark yet)"
    if start.since == sync.bookmark - sync.lookback:
        return f"{since} (bookmark {format_datetime(sync.bookmark)} minus {minutes} min lookback)"
    return f"{since} (bookmark {format_datetime(sync.bookmark)}; not before start_date)"
