"""What the activities walk saw of the types that change leads, kept for the leads feed.

The ``leads`` stream (issue 26) learns which leads changed from activities of a few types
(``streams/leads/feed.py``). When the ``activities`` stream walks those types in the same
run, its pages already hold every such row: this run-scoped collector keeps what the feed
needs of them, so the feed makes no activity calls of its own for those types.

Fed with every row a page returns (before the overlap dedup: the leads bookmark may be
older than the partition's), it keeps per watched type: the latest change ``activityDate``
of each lead, the raw rows of the types asked for whole (Merge Leads, whose losers are in
its attributes), and the coverage. A pass covers its types from ``since`` only when it
started from a token minted at ``since`` and read to the end of the chain without error
(``pass_done``); what a pass resumed from a saved cursor, a bulk pass or a failed pass saw
is kept but covers nothing, so the feed reads those types itself.

Pure and thread-safe (a lock around every change); it holds no rows it was not asked for.
"""

from __future__ import annotations

import datetime as dt
import threading
import typing as t
from dataclasses import dataclass

from tap_marketo_activities.records import parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Coverage:
    """A pass that read a type from ``since`` to the end of its chain.

    ``reached``: the pass's bookmark after it (its latest ``activityDate``, capped at the
    run's start), up to which the type's rows were read; None when it never saw a row.
    """

    since: dt.datetime
    reached: dt.datetime | None


class LeadChanges:
    """Rows of the watched activity types, per type, as the activities walk saw them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: frozenset[int] = frozenset()
        self._whole: frozenset[int] = frozenset()
        #: type id -> lead id -> latest activityDate of a row of that type, in epoch seconds
        #: (an int, not a datetime: a walk from far back may name a great many leads)
        self._leads: dict[int, dict[int, int]] = {}
        #: type id -> marketoGUID -> (activityDate in epoch seconds, row), for types kept whole
        self._rows: dict[int, dict[str, tuple[int, dict[str, t.Any]]]] = {}
        self._covered: dict[int, list[Coverage]] = {}

    def watch(self, types: Iterable[int], whole: Iterable[int] = ()) -> None:
        """Keep rows of ``types`` from now on; of ``whole`` (among them) the rows themselves."""
        with self._lock:
            self._types = frozenset(types)
            self._whole = frozenset(whole) & self._types

    @property
    def watching(self) -> frozenset[int]:
        """The types kept (none unless the leads stream asked)."""
        return self._types

    def page(self, rows: Iterable[t.Any]) -> None:
        """Every row of a page, before any dedup; rows of other types are ignored."""
        types = self._types
        if not types:
            return
        kept = []
        for row in rows:
            if not isinstance(row, dict) or row.get("activityTypeId") not in types:
                continue
            lead, when = row.get("leadId"), row.get("activityDate")
            if lead is None or not when:
                continue
            moment = int(parse_datetime(str(when)).timestamp())
            kept.append((int(row["activityTypeId"]), int(lead), moment, row))
        if not kept:
            return
        with self._lock:
            for type_id, lead, when, row in kept:
                leads = self._leads.setdefault(type_id, {})
                if lead not in leads or when > leads[lead]:
                    leads[lead] = when
                if type_id in self._whole:
                    self._rows.setdefault(type_id, {})[str(row.get("marketoGUID"))] = (when, row)

    def pass_done(
        self,
        types: Iterable[int],
        *,
        since: dt.datetime,
        reached: dt.datetime | None,
        fresh: bool,
    ) -> None:
        """A pass over ``types`` read to its end; it covers them if it began ``fresh``.

        ``fresh``: from a token minted at ``since`` (not a saved cursor); only then did its
        pages hold every row of its types stamped at or after ``since``.
        """
        if not fresh:
            return
        with self._lock:
            for type_id in set(types) & self._types:
                self._covered.setdefault(type_id, []).append(Coverage(since, reached))

    def coverage(self, type_id: int, since: dt.datetime) -> Coverage | None:
        """The pass that read ``type_id`` from ``since`` or earlier (the furthest reaching)."""
        with self._lock:
            found = [c for c in self._covered.get(type_id, ()) if c.since <= since]
        return max(found, key=_reach, default=None)

    def any_coverage(self, type_id: int) -> Coverage | None:
        """The furthest-reaching pass over ``type_id`` this run, from wherever it began."""
        with self._lock:
            return max(self._covered.get(type_id, ()), key=_reach, default=None)

    def leads(self, type_id: int, since: dt.datetime) -> set[int]:
        """Leads with a row of ``type_id`` stamped at or after ``since``."""
        cut = since.timestamp()
        with self._lock:
            return {lead for lead, when in self._leads.get(type_id, {}).items() if when >= cut}

    def rows(self, type_id: int, since: dt.datetime) -> list[dict[str, t.Any]]:
        """The rows of a type kept whole, stamped at or after ``since``, oldest first."""
        cut = since.timestamp()
        with self._lock:
            kept = sorted(self._rows.get(type_id, {}).values(), key=lambda item: item[0])
        return [row for when, row in kept if when >= cut]


def _reach(coverage: Coverage) -> dt.datetime:
    return coverage.reached or dt.datetime.min.replace(tzinfo=dt.timezone.utc)
