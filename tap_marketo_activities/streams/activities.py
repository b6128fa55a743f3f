"""``activities`` in groups of at most 10 types, and the per-type tables its walk also fills."""

from __future__ import annotations

import datetime as dt
import typing as t
from functools import cached_property

from singer_sdk import typing as th
from typing_extensions import override

from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.streams.bulk_pass import SETTLE, backfill_pass
from tap_marketo_activities.streams.client import MarketoStream
from tap_marketo_activities.streams.output import write_record, write_schema
from tap_marketo_activities.streams.schemas import ACTIVITY_PROPERTIES, COMMON_FIELDS
from tap_marketo_activities.streams.typed import EXTRA_ATTRIBUTES, Column, TypeLayout, typed_record
from tap_marketo_activities.streams.walk import IncrementalStream
from tap_marketo_activities.sync.handover import wants_bulk
from tap_marketo_activities.sync.incremental import REPLICATION_KEY, PartitionSync, Start
from tap_marketo_activities.sync.overlap import OverlapSet

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_marketo_activities.run import RunContext

MAX_TYPES_PER_CALL = 10


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
        return frozenset(self.run.activity_types.selected_ids())

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
        in_state = self.run.streams_in_state
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
                format_datetime(self.run.start_date),
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
    def page_seen(self, rows: list[t.Any]) -> None:
        """Rows of the types that change leads go to the leads feed too (sync/lead_changes.py)."""
        self.run.lead_changes.page(rows)

    @override
    def walked(self, context: Context | None, sync: PartitionSync, start: Start) -> None:
        """The feed may take this group's types from the walk: read from ``start.since`` on."""
        self.run.lead_changes.pass_done(
            (context or {}).get("activity_type_ids") or (),
            since=start.since,
            reached=sync.bookmark,
            fresh=not start.resumes_cursor,
        )

    @override
    def backfill(self, sync: PartitionSync, context: Context | None) -> Iterable[dict]:
        """Long windows go through Bulk Extract jobs first (streams/bulk_pass.py)."""
        return backfill_pass(
            self,
            sync,
            context,
            type_names=self.run.activity_types.names,
            cache=self.run.bulk_exports,
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

    def __init__(self, tap: Tap, run: RunContext, layout: TypeLayout) -> None:
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
        super().__init__(tap, run, name=layout.stream_name, schema=schema)
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
