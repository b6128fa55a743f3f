"""The four streams: thin classes naming an endpoint, a key, a schema and partitions."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import typing as t
from functools import cached_property

from singer_sdk import metrics
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import StateMessage
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_marketo_activities.bulk.handover import wants_bulk
from tap_marketo_activities.bulk.stream_pass import SETTLE, BackfillPaused, backfill_pass
from tap_marketo_activities.client import MarketoPaginator, MarketoStream
from tap_marketo_activities.envelope import envelope, page_rows
from tap_marketo_activities.errors import (
    ConfigError,
    CursorRejected,
    MarketoError,
    QuotaExhausted,
)
from tap_marketo_activities.incremental import REPLICATION_KEY, OverlapSet, PartitionSync, Start
from tap_marketo_activities.logs import Progress
from tap_marketo_activities.output import write_record, write_schema
from tap_marketo_activities.prefetch import Plan, chain_key
from tap_marketo_activities.records import dated_activity_record, format_datetime, parse_datetime
from tap_marketo_activities.sdk_private import DirectRecordMessages, PartitionOwnedState
from tap_marketo_activities.typed import EXTRA_ATTRIBUTES, Column, TypeLayout, typed_record
from tap_marketo_activities.writer import BatchingWriter

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    import requests
    from singer_sdk.helpers.types import Context

    from tap_marketo_activities.prefetch import Chain
    from tap_marketo_activities.tap import TapMarketoActivities

# Types another stream carries, left out of the default `activities` selection: 12 New Lead
# and 13 Change Data Value (lead_changes, with their fields), 37 Delete Lead (deleted_leads).
# Marketo serves New Lead from both endpoints with the same marketoGUID; reading it twice by
# default would make a warehouse that loads both streams count every new lead twice.
OWN_STREAM_TYPES = frozenset({12, 13, 37})
MAX_TYPES_PER_CALL = 10
DELETIONS_RETAINED = dt.timedelta(days=14)

ATTRIBUTE_TYPE = th.ObjectType(
    th.Property("name", th.StringType, required=True),
    th.Property("dataType", th.StringType),
    th.Property("apiName", th.StringType),
)

ACTIVITY_PROPERTIES: list[th.Property] = [
    th.Property("marketoGUID", th.StringType, required=True, description="Primary key"),
    th.Property("id", th.IntegerType, description="Legacy id; absent on some instances"),
    th.Property("leadId", th.IntegerType),
    th.Property(
        "activityDate",
        th.DateTimeType,
        required=True,
        description="When the activity happened, RFC 3339 UTC",
    ),
    th.Property("activityTypeId", th.IntegerType, required=True),
    th.Property("activityTypeName", th.StringType),
    th.Property("campaignId", th.IntegerType),
    th.Property("primaryAttributeValueId", th.IntegerType),
    th.Property("primaryAttributeValue", th.StringType),
    th.Property(
        "attributes",
        th.ObjectType(additional_properties=True),
        description="Attribute values keyed by attribute name, with their JSON types",
    ),
]


class ActivityTypesStream(MarketoStream):
    """Every activity type the instance lists, standard and custom."""

    name = "activity_types"
    path = "/v1/activities/types.json"
    primary_keys = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType, required=True),
        th.Property("description", th.StringType),
        th.Property("apiName", th.StringType),
        th.Property("primaryAttribute", ATTRIBUTE_TYPE),
        th.Property("attributes", th.ArrayType(ATTRIBUTE_TYPE)),
    ).to_dict()

    def fetch(self) -> list[dict[str, t.Any]]:
        """One types.json call (the tap caches the answer for the run)."""
        return [row for row in self.fetch_result(self.path) if "id" in row]

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Emit the cached list, counted in the run summary like every other stream."""
        counter = self.api.stats.records
        for row in self.tap.activity_types():
            yield row
            counter[self.name] += 1


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
            start_date=self.tap.start_date,
            lookback=dt.timedelta(minutes=int(self.config["lookback_minutes"])),
            run_started=self.api.now,
            resumable=not self.batching,
        )

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """One pass: resume or mint a token, walk to the end, promote the bookmark."""
        self.api.stats.records[self.name] += 0  # the run summary names it, even with none new
        self.tap.start_prefetch()
        records = self.api.stats.records
        with (
            self.tap.prefetcher.closing_on_error(),
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
        sync.finish()
        self._write_state()
        self.api.stats.duplicates_skipped[self.name] += sync.report.duplicates
        self.tap.note_lateness(sync.report.max_lateness)
        self.logger.info(
            "Finished %s: %d new rows, %d overlap re-reads skipped, bookmark %s",
            sync.label,
            sync.report.emitted,
            sync.report.duplicates,
            sync.state.get("replication_key_value"),
        )

    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """Hook for stream-specific checks before a pass."""

    def backfill(self, sync: PartitionSync, context: Context | None) -> Iterable[dict]:
        """Hook: rows read another way before the REST walk (bulk, for activities)."""
        del sync, context
        return ()

    def _walk(self, context: Context | None, sync: PartitionSync, start: Start) -> Iterable[dict]:
        self._pass = sync
        chain = self.tap.prefetcher.claim(chain_key(self.name, context), start)
        self._walking = True
        try:
            yield from self._walk_from(context, sync, start, chain)
        except CursorRejected:
            raise
        except (Exception, KeyboardInterrupt):
            write_state_at_stop(self.tap.streams.values())
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

    # -- reading ahead (prefetch.py) ---------------------------------------------------

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
        names = self.tap.activity_type_names()
        records = [
            dated_activity_record(row, type_names=names, request_id=request_id) for row in rows
        ]
        counter = self.api.stats.records
        for record, when in records:
            # admit first: a re-read never reaches any stream, typed or unified.
            if sync.admit(record["marketoGUID"], when) and self.route(record):
                yield record
                counter[self.name] += 1  # once written: --test stops a stream at a record
        # Every row of this page has been written by now: the cursor may move past it.
        if sync.page_done(body.get("nextPageToken"), self._state_key_room):
            self._write_state()
        if self._progress.due():
            reached = format_datetime(sync.max_seen) if sync.max_seen else "nothing new yet"
            self.logger.info(
                "Still reading %s: %d new rows so far, activityDate reached %s",
                sync.label,
                sync.report.emitted,
                reached,
            )

    def route(self, record: dict[str, t.Any]) -> bool:
        """Hand a new row to any other stream that takes it; True if this stream emits it."""
        return True

    @property
    def batching(self) -> bool:
        """True when the SDK sends BATCH files, and writes the state after each itself."""
        return self.get_batch_config(self.config) is not None

    def _write_state(self) -> None:
        if not self.batching:
            self.tap.state_writer.write_state(self.tap_state)

    def _state_key_room(self) -> int:
        """Bytes the STATE about to be written may grow by and still go out at once (keys)."""
        writer = self.tap.message_writer
        if self.batching or not isinstance(writer, BatchingWriter):
            return 0
        return writer.state_room(len(writer.format_message(StateMessage(value=self.tap_state))))


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
    tap = incremental[0].tap
    writer = tap.message_writer
    if isinstance(writer, BatchingWriter):
        writer.force_state = True  # written at once, whatever its size
    # A target that is gone (broken pipe) is reported by the stop itself.
    with contextlib.suppress(OSError, ValueError):
        tap.state_writer.write_state(incremental[0].tap_state)


class ActivitiesStream(IncrementalStream):
    """Lead activities of the configured types, in partitions of at most 10 types."""

    name = "activities"
    path = "/v1/activities.json"

    @property
    @override
    def partitions(self) -> list[dict] | None:
        """Groups of at most 10 type ids; existing groups in the state are kept as they are.

        Reusing the state's groups means a new custom type (or a removed one) only
        forms or changes its own group, instead of reshuffling every group and
        re-reading all of them from start_date.
        """
        remaining = set(self.unified_type_ids) | set(self.typed_routes)
        groups: list[list[int]] = []
        known: set[int] = set()
        history = set(self.history_types)
        # Most recently bookmarked first, so a group revived by a re-added type never
        # wins over the group that has read its other types since.
        for partition in sorted(
            self.state_manager.get_state_partitions() or [],
            key=lambda p: str(p.get("replication_key_value") or ""),
            reverse=True,
        ):
            ids = (partition.get("context") or {}).get("activity_type_ids")
            if not isinstance(ids, list) or not ids:
                continue
            if partition.get("replication_key_value"):
                known |= set(ids)
            if set(ids) & history:
                continue  # a type whose new table reads its history forms its own group
            if set(ids) <= remaining:
                groups.append(list(ids))
                remaining -= set(ids)
        # Types read before and never-read types go to separate new groups: a group
        # inherits progress only when every one of its types has some.
        remaining -= history
        for fresh in (sorted(remaining & known), sorted(remaining - known), sorted(history)):
            groups += [
                fresh[i : i + MAX_TYPES_PER_CALL] for i in range(0, len(fresh), MAX_TYPES_PER_CALL)
            ]
        return [{"activity_type_ids": ids} for ids in groups]

    @cached_property
    def unified_type_ids(self) -> frozenset[int]:
        """The types this stream's own records carry (none when only per-type tables are on)."""
        if not self.selected:
            return frozenset()
        return frozenset(self.tap.selected_activity_type_ids())

    @cached_property
    def history_types(self) -> dict[int, tuple[dt.datetime, OverlapSet | None]]:
        """Types whose per-type table is selected for the first time after earlier runs.

        Their table has no entry in the state the run started from, while a type group
        there has read the type already: reading on from that group's bookmark would give
        the new table no history. Such a type is read in a group of its own from
        ``start_date``; its rows go to the new table all, and to ``activities`` only when
        that stream had not sent them (stamped after the old group's overlap start and not
        in its overlap set). Value: that start and set, per type.
        """
        in_state = getattr(self.tap, "streams_in_state", None)
        if not in_state or "activities" not in in_state:
            return {}
        found: dict[int, tuple[dt.datetime, OverlapSet | None]] = {}
        for type_id, table in self.typed_routes.items():
            if table.name in in_state:
                continue
            donors = self._donors({type_id})
            if not donors:
                continue
            donor = donors[0]
            bookmark = parse_datetime(donor["replication_key_value"])
            overlap = donor.get("overlap") or {}
            since = overlap.get("since")
            keys = overlap.get("keys")
            found[type_id] = (
                parse_datetime(since) if isinstance(since, str) else bookmark,
                OverlapSet.decode(keys) if isinstance(keys, str) else None,
            )
            self.logger.warning(
                "%s is selected for the first time after earlier runs: type %d is read again "
                "from start_date (%s) so that the table gets its history; 'activities' is not "
                "sent those rows twice.",
                table.name,
                type_id,
                format_datetime(self.tap.start_date),
            )
        return found

    @cached_property
    def typed_routes(self) -> dict[int, TypedActivitiesStream]:
        """Selected per-type tables by type id: the same walk feeds them (one read, two shapes)."""
        return {
            stream.layout.type_id: stream
            for stream in self.child_streams
            if isinstance(stream, TypedActivitiesStream) and stream.selected
        }

    @override
    def route(self, record: dict[str, t.Any]) -> bool:
        """Write the row to its per-type table if selected; emit it here if its type is ours."""
        type_id = record["activityTypeId"]
        typed = self.typed_routes.get(type_id)
        if typed is not None:
            typed.write(record)
            self.api.stats.records[typed.name] += 1
        if type_id not in self.unified_type_ids:
            return False
        sent = self.history_types.get(type_id)
        if sent is None:
            return True
        since, overlap = sent  # a history re-read: what 'activities' already has is skipped
        if parse_datetime(record["activityDate"]) < since:
            return False
        return overlap is None or record["marketoGUID"] not in overlap

    @override
    def backfill(self, sync: PartitionSync, context: Context | None) -> Iterable[dict]:
        """Long windows go through Bulk Extract jobs first (bulk/stream_pass.py)."""
        return backfill_pass(
            self,
            sync,
            context,
            type_names=self.tap.activity_type_names(),
            cache=self.tap.bulk_exports,
            write_state=self._write_state,
            route=self.route,
        )

    @override
    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """A new group made of types that older groups already read inherits their progress.

        When a type leaves ``activity_type_ids``, the rest of its group forms a new group
        with no state; starting it at ``start_date`` would re-read years of history. If every
        type in it was read by a group in the state, it starts from the earliest of those
        bookmarks (never later than any of them: nothing is skipped) with their overlap sets.
        """
        if sync.bookmark is not None or sync.cursor is not None:
            return
        types = set((context or {}).get("activity_type_ids") or ())
        if types & set(self.history_types):
            return  # a new per-type table's history: from start_date (history_types)
        donors = self._donors(types)
        covered = {i for p in donors for i in p["context"]["activity_type_ids"]}
        if not donors or not types <= covered:
            return
        earliest = min(donors, key=lambda p: parse_datetime(p["replication_key_value"]))
        sync.inherit(
            bookmark=parse_datetime(earliest["replication_key_value"]),
            overlaps=[p.get("overlap") for p in donors],
        )
        self.logger.info(
            "%s starts from bookmark %s, inherited from the type groups that read its types before",
            sync.label,
            earliest["replication_key_value"],
        )

    def _donors(self, types: set[int]) -> list[dict[str, t.Any]]:
        """Bookmarked partitions in the state that read some of these types."""
        return [
            p
            for p in self.state_manager.get_state_partitions() or []
            if set((p.get("context") or {}).get("activity_type_ids") or ()) & types
            and p.get("replication_key_value")
        ]

    @override
    def reads_ahead(self, sync: PartitionSync, context: Context | None) -> bool:
        """Not a pass that may inherit progress (``before_pass``) or start with bulk."""
        types = set((context or {}).get("activity_type_ids") or ())
        if sync.bookmark is None and sync.cursor is None and self._donors(types):
            return False
        return not wants_bulk(
            str(self.config.get("backfill_method", "auto")),
            threshold=dt.timedelta(days=float(self.config.get("bulk_threshold_days", 3))),
            window_start=sync.window_start,
            now=self.api.now(),
            settle=SETTLE,
            state=sync.state,
            resuming_cursor=sync.start().resumes_cursor,
        )

    @override
    def get_url_params(self, context: Context | None, next_page_token: str | None) -> dict:
        """Add the partition's activity types (comma-separated, as the docs show)."""
        params = super().get_url_params(context, next_page_token)
        ids = (context or {}).get("activity_type_ids", [])
        params["activityTypeIds"] = ",".join(str(i) for i in ids)
        return params


class LeadChangesStream(IncrementalStream):
    """Changes to the configured lead fields (types 12 New Lead and 13 Change Data Value)."""

    name = "lead_changes"
    path = "/v1/activities/leadchanges.json"
    schema = th.PropertiesList(
        *ACTIVITY_PROPERTIES,
        th.Property(
            "fields",
            th.ArrayType(
                th.ObjectType(
                    th.Property("id", th.IntegerType),
                    th.Property("name", th.StringType),
                    th.Property("newValue", th.StringType),
                    th.Property("oldValue", th.StringType),
                )
            ),
            description="The lead fields this activity changed",
        ),
    ).to_dict()

    @override
    def get_url_params(self, context: Context | None, next_page_token: str | None) -> dict:
        """Add the lead fields to watch (the endpoint requires at least one)."""
        params = super().get_url_params(context, next_page_token)
        params["fields"] = ",".join(self.config["lead_change_fields"])
        return params

    @override
    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """Remember the fields read; say so when one is added (its history is not read)."""
        fields = sorted(self.config["lead_change_fields"])
        added = sorted(set(fields) - set(sync.state.get("lead_change_fields") or fields))
        if added and sync.bookmark is not None:
            self.logger.warning(
                "lead_change_fields now includes %s: their changes from after %s are read, "
                "earlier ones are not. To backfill them, clear the lead_changes state.",
                ", ".join(added),
                sync.window_start.isoformat(),
            )
        sync.state["lead_change_fields"] = fields

    @override
    def fatal_message(
        self, code: str, message: str, request_id: str, advice: str, path: str | None = None
    ) -> str:
        """Name the setting when Marketo rejects a field (of leadchanges.json itself)."""
        if code in {"1003", "1006"} and path in (None, self.path):
            fields = ", ".join(self.config["lead_change_fields"])
            return (
                f"Marketo rejected lead_change_fields ({fields}): {code} {message} (requestId "
                f"{request_id}). Use lead fields' REST API names (Admin > Field Management > "
                "Export Field Names) and remove the one named above."
            )
        return super().fatal_message(code, message, request_id, advice, path)


class DeletedLeadsStream(IncrementalStream):
    """Leads deleted from the instance (type 37); Marketo prunes them after 14 days."""

    name = "deleted_leads"
    path = "/v1/activities/deletedleads.json"

    @override
    def before_pass(self, sync: PartitionSync, context: Context | None) -> None:
        """Warn when the bookmark is older than Marketo keeps deletions."""
        if sync.bookmark is not None and self.api.now() - sync.bookmark > DELETIONS_RETAINED:
            self.logger.warning(
                "The deleted_leads bookmark (%s) is more than 14 days old; Marketo may already "
                "have pruned deletions from before %s. Run at least every few days to catch "
                "every deletion.",
                sync.bookmark.isoformat(),
                (self.api.now() - DELETIONS_RETAINED).date().isoformat(),
            )


def describe_start(sync: PartitionSync, start: Start) -> str:
    """Where a pass starts and why, for the log line that replaces the SDK's own.

    The SDK would log the bookmark as the starting point; the walk starts a lookback
    before it, so the line says both.
    """
    since = format_datetime(start.since)
    minutes = int(sync.lookback.total_seconds() // 60)
    if sync.bookmark is None and start.since > sync.start_date:
        # A bulk backfill read the window up to here and handed over (bulk/handover.py).
        done = format_datetime(start.since + sync.lookback)
        return f"{since} (bulk backfill done up to {done} minus {minutes} min lookback)"
    if sync.bookmark is None:
        return f"{since} (start_date; no bookmark yet)"
    if start.since == sync.bookmark - sync.lookback:
        return f"{since} (bookmark {format_datetime(sync.bookmark)} minus {minutes} min lookback)"
    return f"{since} (bookmark {format_datetime(sync.bookmark)}; not before start_date)"


#: The unified record's fields every per-type table keeps, under the same names.
COMMON_FIELDS = tuple(
    str(p.name) for p in ACTIVITY_PROPERTIES if p.name not in {"attributes", "activityTypeName"}
)


class TypedActivitiesStream(MarketoStream):
    """One activity type as a table of typed columns (``typed.py`` has the naming rules).

    Its rows come from the ``activities`` walk, which reads each group of types once and
    writes every row to the shapes selected for its type; so this stream is the SDK's
    child of ``activities`` (never synced on its own) and its progress is the walk's
    state. It is off unless selected.
    """

    parent_stream_type = ActivitiesStream
    primary_keys = ("marketoGUID",)
    replication_key = REPLICATION_KEY
    is_sorted = False
    selected_by_default = False
    path = ActivitiesStream.path

    def __init__(self, tap: TapMarketoActivities, layout: TypeLayout) -> None:
        self.layout = layout
        properties = [p for p in ACTIVITY_PROPERTIES if p.name in COMMON_FIELDS]
        columns = [
            th.Property(c.name, c.json_type, description=c.attribute) for c in layout.columns
        ]
        extra = th.Property(
            EXTRA_ATTRIBUTES,
            th.ObjectType(additional_properties=True),
            description="Attributes the type does not describe, and values that did not parse",
        )
        schema = th.PropertiesList(*properties, *columns, extra).to_dict()
        super().__init__(tap, name=layout.stream_name, schema=schema)
        self._schema_written = False
        self._misfits: set[str] = set()

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Nothing of its own: the ``activities`` walk writes this table's rows."""
        return iter(())

    def write(self, record: dict[str, t.Any]) -> None:
        """One unified record as a typed row, through this stream's maps, to the output."""
        if not self._schema_written:
            write_schema(self)
            self._schema_written = True
        row = typed_record(
            record,
            self.layout,
            common=COMMON_FIELDS,
            columns_in_schema=self.schema["properties"],
            on_misfit=self._warn_once,
        )
        write_record(self, row)

    def _warn_once(self, column: Column, value: t.Any) -> None:
        if column.name in self._misfits:
            return
        self._misfits.add(column.name)
        self.logger.warning(
            "%s: %r in attribute '%s' is not a %s; kept as text in %s.%s (said once per "
            "column and run)",
            self.name,
            value,
            column.attribute,
            column.data_type,
            EXTRA_ATTRIBUTES,
            column.attribute,
        )
