"""The one place this tap overrides private Singer SDK methods, and why.

The SDK has no public hook for either of these (checked against singer-sdk 0.54.9);
``tests/test_sdk_private.py`` pins their signatures so that an SDK release that
renames or reshapes them fails our suite loudly instead of silently bringing back
the behaviour we switch off here.

* ``_increment_stream_state``: for an unsorted stream the SDK keeps progress markers
  per record and promotes their maximum to the bookmark when a partition ends. Our
  bookmark must never pass the server's clock at run start, never move backwards
  when a run sees only late rows, and must be written together with the overlap set
  and cursor; :class:`~tap_marketo_activities.incremental.PartitionSync` owns it.
* ``_process_record``: the SDK copies the state partition's context keys into every
  record and then syncs child streams once per record. Our partition key
  (``activity_type_ids``, a list of type ids) is how the state is grouped, not data, and
  it would make every record carry a column that changes meaning when groups are
  re-formed; and our only child streams, the per-type tables, are written by the
  ``activities`` walk itself (one read serves both shapes), so a per-record child sync
  would only repeat work and state messages.
"""

from __future__ import annotations

import typing as t

from singer_sdk.streams import Stream
from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record

#: Parameter names (in order) of the overridden private methods in the SDK we support.
PINNED_SIGNATURES: dict[str, tuple[str, ...]] = {
    "_increment_stream_state": ("self", "latest_record", "context"),
    "_process_record": ("self", "record", "child_context", "partition_context"),
}


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
