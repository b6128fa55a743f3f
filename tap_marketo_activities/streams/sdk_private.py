"""The one place this tap overrides private Singer SDK methods, and why.

The SDK has no public hook for any of these (checked against singer-sdk 0.54.9);
``tests/test_sdk_hooks.py`` pins their signatures so that an SDK release that
renames or reshapes them fails our suite loudly instead of silently bringing back
the behaviour we switch off here.

* ``_increment_stream_state``: for an unsorted stream the SDK keeps progress markers
  per record and promotes their maximum to the bookmark when a partition ends. Our
  bookmark must never pass the server's clock at run start, never move backwards
  when a run sees only late rows, and must be written together with the overlap set
  and cursor; :class:`~tap_marketo_activities.sync.incremental.PartitionSync` owns it.
* ``_process_record``: the SDK copies the state partition's context keys into every
  record and then syncs child streams once per record. Our partition key
  (``activity_type_ids``, a list of type ids) is how the state is grouped, not data, and
  it would make every record carry a column that changes meaning when groups are
  re-formed; and our only child streams, the per-type tables, are written by the
  ``activities`` walk itself (one read serves both shapes), so a per-record child sync
  would only repeat work and state messages.
* ``_write_record_message``: per record the SDK walks every property against the selection
  mask (recursing into ``attributes``), calls the type conforming (a no-op at our level
  ``NONE``) and every stream map, then builds the message: 8 to 11 us of the tap's 30 to
  40 us per record in the emit benchmark (benchmarks/run_all.py --ab). When none of it
  can change a record -- no property deselected, the stream's one map the SDK's own
  identity map (no ``stream_maps``, no flattening), conformance ``NONE``, no table
  version -- :class:`DirectRecordMessages` has the tap's writer write the same RECORD line
  at once (``BatchingWriter.write_record``; a ``RecordMessage`` for any other writer); in
  every other case it calls the SDK's method, so selection, stream maps, aliases and
  flattening behave exactly as the SDK defines them.
  It reads the stream's ``_stream_version`` (the SDK sets it only for FULL_TABLE streams
  that activate versions) and ``_tap``, and sets ``state_manager.is_flushed`` as the
  SDK's method does, so the SDK's own periodic STATE still follows new records.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams import Stream
from typing_extensions import override

from tap_marketo_activities.streams.writer import BatchingWriter

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record

#: Parameter names (in order) of the overridden private methods in the SDK we support.
PINNED_SIGNATURES: dict[str, tuple[str, ...]] = {
    "_increment_stream_state": ("self", "latest_record", "context"),
    "_process_record": ("self", "record", "child_context", "partition_context"),
    "_write_record_message": ("self", "record"),
}
#: Private attributes of an SDK stream that ``DirectRecordMessages`` reads.
PINNED_ATTRIBUTES = ("_stream_version", "_tap")


class PartitionOwnedState(Stream):
    """Switches off the SDK's per-record bookmarking, key copying and child syncs."""

    @override
    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Bookmarks move in PartitionSync.finish, not per record (module docstring)."""

    @override
    def _process_record(
        self,
        record: Record,
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        """Neither copy partition keys into records nor sync children (module docstring)."""


class DirectRecordMessages(Stream):
    """RECORD messages without the SDK's per-record walk when it would change nothing.

    See the module docstring. ``time_extracted`` is taken per record, as the SDK does.
    """

    #: Whether this stream's records go out unchanged (decided at the first record, when
    #: the catalog and the stream maps are known; neither changes during a run).
    _unchanged_output: bool | None = None

    @override
    def _write_record_message(self, record: Record) -> None:
        """Write the record as one RECORD message, or let the SDK do it (module docstring)."""
        unchanged = self._unchanged_output
        if unchanged is None:
            unchanged = self._unchanged_output = records_go_out_unchanged(self)
        if not unchanged:
            super()._write_record_message(record)
            return
        now = dt.datetime.now(dt.timezone.utc)
        writer = self._tap.message_writer
        if type(writer) is BatchingWriter:
            writer.write_record(self.name, record, now)
        else:
            self._tap.write_message(
                RecordMessage(stream=self.name, record=record, time_extracted=now)
            )
        self.state_manager.is_flushed = False


def records_go_out_unchanged(stream: Stream) -> bool:
    """True when the SDK's record path would emit each record as it is, once, under its name."""
    maps = stream.stream_maps
    return (
        stream.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE
        and stream._stream_version is None
        and all(stream.mask.values())
        and len(maps) == 1
        and type(maps[0]) is SameRecordTransform
        and not maps[0].flattening_enabled
        and maps[0].stream_alias == stream.name
    )
