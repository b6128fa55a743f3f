"""The ``leads`` and ``merged_leads`` streams.

``leads`` reads which leads changed from the activity types that change lead fields
(``feed.CHANGE_TYPES``), from its bookmark minus the lookback (or a type's own position,
``changes.py``), taking a type from the ``activities`` walk of the same run where that walk
read it from there, with calls of its own otherwise; then reads those leads by id,
300 a call, always as ``POST leads.json?_method=GET`` (a full-width field list passes 8 KB).
A lead missing from the answer was deleted or merged away: it is logged, not emitted. The
bookmark (the latest ``activityDate`` read) moves only after every changed lead has been
written, so a run killed midway re-reads the same changes next time (at least once, never
lost). ``merged_leads`` rows are written by the same pass, from Merge Leads activities.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import typing as t
from functools import cached_property
from urllib.parse import urlencode

from singer_sdk import typing as th
from typing_extensions import override

from tap_marketo_activities.errors import ConfigError, MarketoError
from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.sources.bulk.errors import BulkApiError, ExportQuotaExceeded
from tap_marketo_activities.sources.bulk.windows import Window, plan_windows
from tap_marketo_activities.streams.bulk_pass import settings_from
from tap_marketo_activities.streams.bulk_transport import StreamBulkTransport
from tap_marketo_activities.streams.client import MarketoStream
from tap_marketo_activities.streams.leads import changes, feed, reconcile
from tap_marketo_activities.streams.leads.backfill import PASS_STOPPERS, LeadBackfill, exported_rows
from tap_marketo_activities.streams.leads.emitted import Emitted
from tap_marketo_activities.streams.leads.export import LeadExportJobs, export_window
from tap_marketo_activities.streams.leads.schema import (
    Field,
    choose,
    conform,
    fields_from_describe,
    fields_from_describe2,
    lead_schema,
)
from tap_marketo_activities.streams.output import write_record, write_schema
from tap_marketo_activities.streams.writer import BatchingWriter
from tap_marketo_activities.sync.leads_state import first_sync_progress, state_time
from tap_marketo_activities.wire.envelope import envelope, page_rows
from tap_marketo_activities.wire.transport import FORM_CONTENT_TYPE

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_marketo_activities.run import RunContext

IDS_PER_CALL = 300
ACTIVITIES_PATH = "/v1/activities.json"


def describe_fields(stream: MarketoStream) -> list[Field]:
    """describe2.json's fields, or describe.json's where describe2 fails or is empty."""
    try:
        fields = fields_from_describe2(stream.fetch_result("/v1/leads/describe2.json"))
    except MarketoError as exc:
        stream.logger.warning("describe2.json failed (%s); reading describe.json instead", exc)
        fields = []
    return fields or fields_from_describe(stream.fetch_result("/v1/leads/describe.json"))


def chosen_fields(stream: MarketoStream, wanted: list[str] | None) -> list[Field]:
    """The described fields that ``lead_fields`` names (all when unset)."""
    described = describe_fields(stream)
    try:
        return choose(described, wanted)
    except ValueError as exc:
        msg = (
            f"lead_fields names fields this instance does not have: {exc}. Use REST API "
            "names as /rest/v1/leads/describe2.json lists them, or unset lead_fields."
        )
        raise ConfigError(msg) from None


class LeadsStream(MarketoStream):
    """Every lead field (or ``lead_fields``), for each lead the change feed names."""

    name = "leads"
    path = "/v1/leads.json"
    primary_keys = ("id",)
    replication_key = None

    def __init__(self, tap: Tap, run: RunContext, merged: MergedLeadsStream) -> None:
        self.merged = merged
        #: described once per run, through the sibling stream (this one is not built yet)
        self.fields = chosen_fields(merged, tap.config.get("lead_fields"))
        #: each change type's furthest position, as this run's feed read it
        self._reached: dict[int, dt.datetime] = {}
        #: the activities walk keeps what this feed needs of its pages (leads/changes.py)
        run.lead_changes.watch(feed.CHANGE_TYPES, whole={feed.MERGE_LEADS})
        super().__init__(tap, run, schema=lead_schema(self.fields))

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """A first sync; or a reconciliation when due, then the change feed; then the bookmark."""
        state = self.get_context_state(None)
        now = self.api.now().replace(microsecond=0)
        bookmark = state_time(state, "replication_key_value", now)
        if bookmark is None:
            yield from self._first_sync(state, now)
            self.merged.write([])
            return
        # Before the feed: a file of an earlier run holds older values than the feed reads.
        # What it sends is remembered: the feed sends a lead again only if it changed since.
        sent = Emitted({field.name: field.data_type for field in self.fields})
        oldest = yield from self._reconcile(state, now, sent)
        lookback = dt.timedelta(minutes=int(self.config["lookback_minutes"]))
        since = min(bookmark, oldest or bookmark) - lookback
        changed, merges, latest = self._feed(since)
        self.logger.info(
            "leads: %d changed leads and %d merges in activities since %s",
            len(changed),
            len(merges),
            format_datetime(since),
        )
        started = self.api.now().replace(microsecond=0)
        exported: set[int] = set()
        if self._updated_at_filter():
            # Every field change moves the bulk filter's notion of updatedAt, custom and
            # system fields included: the export sees what no activity shows.
            for window in plan_windows(since, started):
                rows = export_window(
                    self._jobs,
                    self._transport,
                    window,
                    self.fields,
                    kind="updatedAt",
                    poll_s=float(self.config["bulk_poll_seconds"]),
                )
                for row in rows:
                    if row["id"] not in exported:
                        exported.add(row["id"])
                        yield from sent.unsent([row])
            latest = max(latest or started, started)
        yield from sent.unsent(self._read(sorted(changed - exported)))
        if sent.skipped:
            self.logger.info(
                "leads: %d changed leads were already sent by this run's reconciliation with "
                "the same values; not sent again",
                sent.skipped,
            )
        self.merged.write(merges)
        reached = bookmark
        if latest is not None and latest > bookmark:
            # Later than this run's start when the feed read rows committed since: the
            # next run's check (sync/leads_state.py) compares it with that run's clock.
            reached = latest
            state["replication_key_value"] = format_datetime(latest)
        self._keep_positions(state, bookmark, reached)
        self._write_state()

    def _write_state(self, force: bool = True) -> None:
        """The tap's STATE; ``force``: at once, whatever its size (writer.py)."""
        writer = self.run.message_writer
        if force and isinstance(writer, BatchingWriter):
            writer.force_state = True
        self.run.state_writer.write_state(self.tap_state)

    def _backfill(self, state: dict[str, t.Any], fields: list[Field], label: str) -> LeadBackfill:
        """Lead export jobs over ``state['bulk']``, resumable (leads/backfill.py)."""
        return LeadBackfill(
            transport=self._transport,
            type_ids=(),
            type_names={},
            state=state,
            settings=settings_from(self.config),
            logger=self.logger,
            server_now=self.api.now,
            label=label,
            fields=fields,
            strict=label != "leads first sync",
            write_state=self._write_state,
        )

    def _reconcile(
        self, state: dict[str, t.Any], now: dt.datetime, sent: Emitted
    ) -> Generator[dict[str, t.Any], None, dt.datetime | None]:
        """The reconciliation pass when due or in progress (leads/reconcile.py); returns the
        oldest snapshot among the files it read (None: none). Each lead it sends is added
        to ``sent``."""
        last = state_time(state, "reconciled_at", now)
        days = int(self.config.get("leads_reconcile_days", 7))
        bookmark = state_time(state, "replication_key_value", now)
        if last is None and bookmark is not None and days > 0 and "reconcile" not in state:
            last = reconcile.assume_read_at_bookmark(state, bookmark, days, self.logger)
        progress = reconcile.begin(state, now, days, last)
        if progress is None:
            return None
        backfill = self._backfill(progress, self._with_created_at(), "leads reconciliation")
        wanted = {field.name for field in self.fields}
        try:
            rows = reconcile.run(
                state,
                progress,
                backfill,
                start_date=self.run.start_date,
                now=now,
                budget=reconcile.budget_bytes(self.config),
                rows=lambda start, end: exported_rows(
                    backfill, start, end, stats=self.api.stats, logger=self.logger
                ),
                logger=self.logger,
            )
            for row in rows:
                record = {name: value for name, value in row.items() if name in wanted}
                sent.add(record)
                yield record
        except PASS_STOPPERS as exc:
            # The feed still runs: a reconciliation that cannot go on must not keep the
            # leads from being updated; the next run takes it up where the state says.
            self.logger.warning(
                "leads: reconciliation paused (%s); the change feed runs as usual and the "
                "next run continues the reconciliation",
                exc,
            )
        return backfill.oldest_snapshot

    def _with_created_at(self) -> list[Field]:
        """The chosen fields, and createdAt (which keeps each lead in one window)."""
        if "createdAt" in {field.name for field in self.fields}:
            return self.fields
        return [*self.fields, Field("createdAt", "datetime")]

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        """None: ``merged_leads`` is written by this pass, not synced per lead."""
        return ()

    @cached_property
    def _transport(self) -> StreamBulkTransport:
        return StreamBulkTransport(self)

    @cached_property
    def _jobs(self) -> LeadExportJobs:
        return LeadExportJobs(self._transport, clock=self.api.now)

    def _updated_at_filter(self) -> bool:
        """Probe once per run: a one-second updatedAt job; 1035 means the filter is missing."""
        moment = self.api.now().replace(microsecond=0)
        try:
            job = self._jobs.create_leads(
                Window(moment - dt.timedelta(seconds=1), moment), ["id"], "updatedAt"
            )
        except BulkApiError as exc:
            if exc.code != "1035":
                raise
            self.logger.info(
                "leads: this instance has no bulk updatedAt filter (1035); reading the leads "
                "the activities name"
            )
            return False
        with contextlib.suppress(BulkApiError):
            self._jobs.cancel(job.export_id)  # never enqueued: it holds no queue place
        return True

    def _first_sync(self, state: dict[str, t.Any], now: dt.datetime) -> Iterable[dict[str, t.Any]]:
        """Every lead created from start_date to the first run's start, by bulk export.

        Progress is the activities backfill's ``bulk`` state (the last window written, the
        job in progress with its rows sent; leads/backfill.py); the feed's bookmark becomes
        the first run's start (``backfill_started``) once every window is written, so
        changes made while a long backfill ran (and resumed) are read next run.
        """
        started = state_time(state, "backfill_started", now) or now
        state["backfill_started"] = format_datetime(started)
        first_sync_progress(state)
        wanted = {field.name for field in self.fields}
        backfill = self._backfill(state, self._with_created_at(), "leads first sync")
        begin = self.run.start_date
        self.logger.info(
            "leads: first sync by bulk lead export, %d createdAt windows from %s to %s",
            len(plan_windows(max(begin, backfill.done_until() or begin), started)),
            format_datetime(begin),
            format_datetime(started),
        )
        rows = exported_rows(backfill, begin, started, stats=self.api.stats, logger=self.logger)
        try:
            for row in rows:
                yield {name: value for name, value in row.items() if name in wanted}
        except ExportQuotaExceeded as exc:
            # As the activities backfill: a spent export quota is a pause, not a failure (a
            # large first sync takes several quota days); the state was written with its job.
            self.logger.warning(
                "leads: first sync paused with the leads created before %s written: %s",
                format_datetime(backfill.done_until() or begin),
                exc,
            )
            return
        state.pop("bulk", None)
        state.pop("backfill_started", None)
        state["replication_key_value"] = format_datetime(started)
        state["reconciled_at"] = format_datetime(started)  # a first sync reads every lead
        self._write_state()

    def _feed(self, since: dt.datetime) -> tuple[set[int], list[feed.Merge], dt.datetime | None]:
        """Changed ids, merges and the furthest position of the change types' rows stamped at
        or after ``since`` (or a type's own older position; kept as ids, not rows: a first
        sync reads many). A type the ``activities`` walk of this run read from there is taken
        from it; the others cost calls of their own (leads/changes.py)."""
        state = self.get_context_state(None)
        present = sorted(feed.CHANGE_TYPES & set(self.run.activity_types.names))
        lookback = dt.timedelta(minutes=int(self.config["lookback_minutes"]))
        starts = changes.type_since(present, since, state.get(changes.POSITIONS) or {}, lookback)
        found = changes.gather(starts, self.run.lead_changes, self._activity_pages)
        self._reached = found.reached
        self.logger.info(
            "leads: change types taken from the activities chains: %s; read with calls of "
            "its own: %s",
            ", ".join(map(str, found.from_walk)) or "none",
            ", ".join(map(str, found.read)) or "none",
        )
        return found.changed, found.merges, found.latest

    def _activity_pages(self, types: list[int], since: dt.datetime) -> Iterable[list[dict]]:
        """The rows of each page of ``/v1/activities.json`` for ``types`` from ``since``."""
        token = self.mint_token(since)
        while True:
            params = {
                "nextPageToken": token,
                "activityTypeIds": ",".join(map(str, types)),
                "batchSize": self.config["page_size"],
            }
            response = self.call(ACTIVITIES_PATH, params)
            yield [row for row in page_rows(response) if isinstance(row, dict)]
            body = envelope(response)
            following = body.get("nextPageToken")
            if not body.get("moreResult") or not following or following == token:
                return
            token = str(following)

    def _keep_positions(
        self, state: dict[str, t.Any], before: dt.datetime, bookmark: dt.datetime
    ) -> None:
        """Each change type's position behind the bookmark, once every lead is written.

        ``bookmark`` is the one just set, passed rather than read back: read back, it was
        checked against this run's start and refused when the feed had read later rows.
        """
        kept = changes.positions(
            self._reached,
            state.get(changes.POSITIONS) or {},
            before,
            bookmark,
            feed.CHANGE_TYPES & set(self.run.activity_types.names),
        )
        if kept:
            state[changes.POSITIONS] = kept
        else:
            state.pop(changes.POSITIONS, None)

    def _read(self, ids: list[int]) -> Iterable[dict[str, t.Any]]:
        types = {field.name: field.data_type for field in self.fields}
        names = ",".join(types)
        missing: list[int] = []
        for start in range(0, len(ids), IDS_PER_CALL):
            chunk = ids[start : start + IDS_PER_CALL]
            response = self._post_get(
                {"filterType": "id", "filterValues": ",".join(map(str, chunk)), "fields": names}
            )
            found = {}
            for row in page_rows(response):
                if isinstance(row, dict) and row.get("id") is not None:
                    found[int(row["id"])] = row
            missing += [lead for lead in chunk if lead not in found]
            for lead in chunk:
                if lead in found:
                    row = found[lead]
                    yield {name: conform(row.get(name), kind) for name, kind in types.items()}
        if missing:
            self.logger.warning(
                "leads: %d changed leads no longer exist (deleted or merged away), not "
                "emitted: %s%s",
                len(missing),
                ", ".join(map(str, missing[:20])),
                " ..." if len(missing) > 20 else "",
            )

    def _post_get(self, form: dict[str, str]) -> requests.Response:
        """``POST /rest/v1/leads.json?_method=GET`` with a form body, with retries.

        ``_method=GET`` goes in the query string (Adobe's documented form): a bare POST to
        leads.json is Sync Leads, a write.
        """
        request = self.build_prepared_request(
            method="POST",
            url=f"{self.url_base}{self.path}?_method=GET",
            data=urlencode(form),
            headers={"Content-Type": FORM_CONTENT_TYPE},
        )
        send = self.request_decorator(self._send_single)
        return t.cast("requests.Response", send(request))


class MergedLeadsStream(MarketoStream):
    """Leads merged away: loser id, winner id and merge time (from Merge Leads activities).

    The SDK's child of ``leads`` (as the per-type tables are of ``activities``), so it is
    never synced on its own: the ``leads`` pass writes its SCHEMA, once, before its first
    row. As a stream of its own it wrote a SCHEMA at its sync too, after the pass had.
    """

    name = "merged_leads"
    parent_stream_type = LeadsStream
    path = ACTIVITIES_PATH
    primary_keys = ("loserId", "winnerId")
    replication_key = None
    schema = th.PropertiesList(
        th.Property("loserId", th.IntegerType, required=True),
        th.Property("winnerId", th.IntegerType, required=True),
        th.Property("mergedAt", th.DateTimeType, required=True),
        th.Property("marketoGUID", th.StringType, description="The Merge Leads activity"),
    ).to_dict()
    schema_written = False

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Nothing of its own: the ``leads`` pass writes these rows."""
        return iter(())

    def write(self, merges: list[feed.Merge]) -> None:
        """The rows of these merges, after its SCHEMA (written once per run, rows or none)."""
        if not self.selected:
            return
        if not self.schema_written:
            write_schema(self)
            self.schema_written = True
        for merge in merges:
            row = {
                "loserId": merge.loser_id,
                "winnerId": merge.winner_id,
                "mergedAt": format_datetime(parse_datetime(merge.merged_at)),
                "marketoGUID": merge.marketo_guid,
            }
            write_record(self, row)
