"""Where the leads feed takes each change type from: the activities walk, or calls of its own.

The feed needs, per change type, every row stamped from where it last read that type (minus
the lookback). The ``activities`` stream walks some of these types earlier in the same run
(``sync/lead_changes.py`` keeps what it saw): a type it read from that point or earlier, to
the end of its chain, costs the feed no call. The others are read as before, from
``/v1/activities.json``, at most 10 types a chain.

Each type's position is kept apart (the state's ``feed_types``, for types behind the
bookmark): a type taken from the walk has been read up to its group's bookmark, and groups
reach different times. Kept as one bookmark, either the next run would start the feed before
the walk of some group (and call again), or after rows some group had not reached (a loss).
With a position per type, the next run's feed starts a type exactly where the walk of its
group starts, so every run after the first takes those types from the walk.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.streams.leads import feed

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterable, Mapping

    from tap_marketo_activities.sync.lead_changes import LeadChanges

#: The leads state's map of change type id -> position, for types behind the bookmark.
POSITIONS = "feed_types"
MAX_TYPES_PER_CALL = 10


@dataclass
class Changes:
    """What the feed found: ids, merges, and how far each type was read."""

    changed: set[int] = field(default_factory=set)
    merges: list[feed.Merge] = field(default_factory=list)
    #: type id -> the latest activityDate up to which its rows were read (where known)
    reached: dict[int, dt.datetime] = field(default_factory=dict)
    from_walk: list[int] = field(default_factory=list)
    read: list[int] = field(default_factory=list)

    @property
    def latest(self) -> dt.datetime | None:
        """The furthest position of any type: the bookmark's candidate."""
        return max(self.reached.values(), default=None)


def type_since(
    types: Iterable[int],
    since: dt.datetime,
    positions: Mapping[str, t.Any],
    lookback: dt.timedelta,
) -> dict[int, dt.datetime]:
    """Where each type is read from: ``since``, or its own position minus the lookback.

    A position is never after the bookmark, so the earlier of the two keeps what lowered
    ``since`` (a reconciliation file older than the bookmark) for every type.
    """
    out = {}
    for type_id in types:
        value = positions.get(str(type_id))
        own = parse_datetime(str(value)) - lookback if value else since
        out[type_id] = min(since, own)
    return out


def gather(
    since: Mapping[int, dt.datetime],
    walk: LeadChanges,
    read: Callable[[list[int], dt.datetime], Iterable[list[dict[str, t.Any]]]],
) -> Changes:
    """The changes of each type from ``since[type]``: from the walk where it covers the
    type, from ``read(types, since)`` (pages of rows) for the rest."""
    found = Changes()
    own: list[int] = []
    for type_id, start in sorted(since.items()):
        coverage = walk.coverage(type_id, start)
        if coverage is None:
            own.append(type_id)
            continue
        found.from_walk.append(type_id)
        found.changed |= walk.leads(type_id, start)
        if type_id == feed.MERGE_LEADS:
            found.merges += [m for row in walk.rows(type_id, start) for m in feed.merges(row)]
        if coverage.reached is not None:
            found.reached[type_id] = coverage.reached
    for first in range(0, len(own), MAX_TYPES_PER_CALL):
        group = own[first : first + MAX_TYPES_PER_CALL]
        _read_group(found, group, since, walk, read)
    return found


def _read_group(
    found: Changes,
    group: list[int],
    since: Mapping[int, dt.datetime],
    walk: LeadChanges,
    read: Callable[[list[int], dt.datetime], Iterable[list[dict[str, t.Any]]]],
) -> None:
    """One chain of calls for up to 10 types, from the earliest of their starts."""
    found.read += group
    latest: dt.datetime | None = None
    for rows in read(group, min(since[type_id] for type_id in group)):
        for row in rows:
            when = row.get("activityDate")
            if not when:
                continue
            moment = parse_datetime(str(when))
            latest = max(latest or moment, moment)
            type_id = row.get("activityTypeId")
            if not isinstance(type_id, int) or type_id not in since or moment < since[type_id]:
                continue
            found.changed |= feed.changed_ids([row])
            found.merges += feed.merges(row)
    for type_id in group:
        # Read up to now, after every walk of the run: a walk's bookmark is no further.
        coverage = walk.any_coverage(type_id)
        reaches = [x for x in (latest, coverage.reached if coverage else None) if x is not None]
        if reaches:
            found.reached[type_id] = max(reaches)


def positions(
    reached: Mapping[int, dt.datetime],
    before: Mapping[str, t.Any],
    old_bookmark: dt.datetime | None,
    bookmark: dt.datetime | None,
    present: Iterable[int],
) -> dict[str, str]:
    """The state's ``feed_types`` once every changed lead is written: each change type whose
    position is behind ``bookmark`` (the others are read from the bookmark). A type this run
    moved nowhere keeps where it was: its entry, or the bookmark it was read from."""
    out = {}
    for type_id in sorted(present):
        moment = reached.get(type_id)
        value = before.get(str(type_id))
        kept = parse_datetime(str(value)) if value else old_bookmark
        if kept is not None:
            moment = max(moment or kept, kept)
        if moment is not None and bookmark is not None and moment < bookmark:
            out[str(type_id)] = format_datetime(moment)
    return out
