"""The run context: what one run shares, built once by the Tap and handed to every stream.

A stream used to reach back into the Tap for each of these (the Tap was a service locator,
and ``tap.py``, the streams and the client imported each other). Now the Tap builds one
:class:`RunContext` and passes it to every stream it constructs; a stream reads its own file
and this object, nothing else of the run. Tests build one without a Tap (``connect`` and
``fetch`` are plain callables), and reading this module needs no SDK.

Services that cost something (the connection, which may start the simulator; the read-ahead
threads; the bulk export folder; the types.json call) are made at first use, and everything
the run opened is closed by :meth:`RunContext.close` when the run ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import typing as t
from dataclasses import dataclass, field
from functools import cached_property

from tap_marketo_activities.errors import ConfigError, MarketoError
from tap_marketo_activities.sources.bulk.cache import ExportCache
from tap_marketo_activities.sources.prefetch import Prefetcher
from tap_marketo_activities.sync.lead_changes import LeadChanges

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from tap_marketo_activities.sources.prefetch import Plan
    from tap_marketo_activities.wire.transport import MarketoConnection

# Types another stream carries, left out of the default `activities` selection: 12 New Lead
# and 13 Change Data Value (lead_changes, with their fields), 37 Delete Lead (deleted_leads).
# Marketo serves New Lead from both endpoints with the same marketoGUID; reading it twice by
# default would make a warehouse that loads both streams count every new lead twice.
OWN_STREAM_TYPES = frozenset({12, 13, 37})


class ActivityTypes:
    """The instance's activity types (``/activities/types.json``), read once, at first use."""

    def __init__(
        self,
        fetch: Callable[[], list[dict[str, t.Any]]],
        configured_ids: Sequence[int] | None = None,
    ) -> None:
        self._fetch = fetch
        self._configured_ids = list(configured_ids or ())

    @cached_property
    def rows(self) -> list[dict[str, t.Any]]:
        """types.json's rows, as Marketo lists them."""
        return self._fetch()

    @cached_property
    def names(self) -> dict[int, str]:
        """Type id -> name, for ``activityTypeName``."""
        return {int(row["id"]): str(row.get("name")) for row in self.rows}

    def selected_ids(self) -> list[int]:
        """``activity_type_ids`` (checked against the instance), or all but 12, 13 and 37."""
        listed = sorted(self.names)
        if not self._configured_ids:
            return [i for i in listed if i not in OWN_STREAM_TYPES]
        unknown = sorted(set(self._configured_ids) - set(listed))
        if unknown:
            msg = (
                f"activity_type_ids lists {', '.join(map(str, unknown))}, which this instance "
                "does not list in /activities/types.json; remove them or check the ids "
                "(the activity_types stream shows every id and name)."
            )
            raise ConfigError(msg)
        return sorted(set(self._configured_ids))


@dataclass
class LatenessGauge:
    """The largest lateness any pass of the run saw, for the metric and the warning."""

    largest: dt.timedelta = field(default_factory=dt.timedelta)

    def note(self, lateness: dt.timedelta) -> None:
        """Keep the larger of what was seen and ``lateness``."""
        self.largest = max(self.largest, lateness)


class StateWriter(t.Protocol):
    """Writes a STATE message (the SDK's ``StateWriter``)."""

    def write_state(self, state: t.Any) -> None:
        """Write ``state`` as the tap's current state."""
        ...


class MessageWriter(t.Protocol):
    """Writes a Singer message (the tap's message writer)."""

    def write_message(self, message: t.Any) -> None:
        """Write one message to the tap's output."""
        ...


class Walk(t.Protocol):
    """A stream whose page chains the read-ahead may start (``IncrementalStream``)."""

    name: str
    ABORT_AT_RECORD_COUNT: int | None

    @property
    def selected(self) -> bool:
        """True when the catalog selects the stream."""
        ...

    @property
    def has_selected_descendents(self) -> bool:
        """True when a child stream (a per-type table) is selected."""
        ...

    def plan_chains(self) -> list[Plan]:
        """The stream's walks to read ahead."""
        ...


def _no_walks() -> list[Walk]:
    return []


@dataclass(eq=False)
class RunContext:
    """What a run shares: connection, activity types, read-ahead, bulk cache, gauges, writers.

    The Tap builds it once per run (``TapMarketoActivities.run``) and hands it to every
    stream it constructs.
    """

    #: The run's settings, read and checked (``settings.py``).
    settings: Mapping[str, t.Any]
    #: Where a stream or partition without a bookmark starts.
    start_date: dt.datetime
    #: Makes the run's one connection, at first use (it may start the simulator).
    connect: Callable[[RunContext], MarketoConnection]
    #: The instance's activity types, fetched once.
    activity_types: ActivityTypes
    #: Writes STATE messages (the SDK's state writer).
    state_writer: StateWriter
    #: Writes every other message (the tap's message writer).
    message_writer: MessageWriter
    #: The tap's logger, for what the run says outside any stream.
    logger: logging.Logger = field(
        default_factory=lambda: logging.getLogger("tap-marketo-activities")
    )
    #: The run's incremental streams, in sync order (for the read-ahead and a stop's STATE).
    walks: Callable[[], Iterable[Walk]] = _no_walks
    #: Streams the input state already had bookmarks for (None: no state was given).
    streams_in_state: frozenset[str] | None = None
    #: The largest lateness seen by any pass.
    lateness: LatenessGauge = field(default_factory=LatenessGauge)
    #: Rows of the lead-changing types the activities walk saw, for the leads feed.
    lead_changes: LeadChanges = field(default_factory=LeadChanges)
    #: What the run opened (simulator, export folder, fetcher threads), closed at its end.
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @cached_property
    def connection(self) -> MarketoConnection:
        """The run's one connection to Marketo (or to the built-in simulator)."""
        return self.connect(self)

    @property
    def connected(self) -> bool:
        """True once the connection was made (the run called Marketo, or tried to)."""
        return "connection" in self.__dict__

    @cached_property
    def bulk_exports(self) -> ExportCache:
        """Export files of this run, shared by the activities partitions; removed at its end."""
        return self.resources.enter_context(ExportCache())

    @cached_property
    def read_ahead(self) -> Prefetcher:
        """The run's page chains read ahead (``sources/prefetch.py``); stopped at its end."""
        prefetcher = Prefetcher(self.connection.limiter)
        self.resources.callback(prefetcher.close)
        return prefetcher

    def start_read_ahead(self) -> None:
        """Start reading every chain of the sync ahead, once, when the first walk begins.

        Not with one call at a time (``max_concurrent_calls: 1``: nothing to overlap), and
        not in a ``--test`` run, which stops every stream after its first record.
        """
        if self.read_ahead.started:
            return
        walks = list(self.walks())
        plans = []
        if int(self.settings["max_concurrent_calls"]) > 1 and not any(
            walk.ABORT_AT_RECORD_COUNT is not None for walk in walks
        ):
            for walk in walks:
                if not walk.selected and not walk.has_selected_descendents:
                    continue
                try:
                    plans += walk.plan_chains()
                except MarketoError as exc:  # the pass itself reports it, in its turn
                    self.logger.debug("Not reading %s ahead: %s", walk.name, exc)
        self.read_ahead.start(plans)

    def close(self) -> None:
        """Close what the run opened: fetchers, export files, the simulator."""
        self.resources.close()
