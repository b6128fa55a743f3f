"""Rows of tallied seconds, held until they are proven delivered or new.

A tally (``sync/tally.py``) says that ``n`` rows of a second were delivered, and the XOR
of their fingerprints, but not which rows. A pass that re-reads such a second holds
every row of it that no key vouches for, and decides as soon as what it holds proves
something (``_resolve``): the rows held are exactly ``n`` and XOR to the tally's value
(all delivered: skipped), or one or two more than ``n`` and the XOR singles the new ones
out (emitted, the rest skipped). Rows a pass cannot place that way, because the second is
still incomplete when a STATE is due, the pass ends or too many rows are held, are
emitted (``flush``): a re-send, never a loss. Proven rows' keys become known again, so
the overlap set the pass ends with carries them exactly.

Held rows come from pages the cursor has passed, so while any is held the cursor stays
at the page the oldest came from (``oldest_token``): a stop re-reads from there.
"""

from __future__ import annotations

import typing as t

from tap_marketo_activities.sync.overlap import fingerprint

if t.TYPE_CHECKING:
    import datetime as dt

    from tap_marketo_activities.sync.overlap import _Key
    from tap_marketo_activities.sync.tally import Tally

#: Held rows of every second together past which all are emitted (memory stays bounded).
MAX_HELD = 20_000
#: How many rows more than the tally a second's held rows may be and still be singled out.
MAX_EXTRA = 4
#: Three or four new rows are looked for among pairs of held rows: only in seconds with at
#: most this many held (16,384 pairs at most per row held).
MAX_SEARCHED = 128


class Held(t.NamedTuple):
    """A row held back: its key, date, fingerprint, the record, and the page it came from."""

    key: _Key
    when: dt.datetime
    print: int
    record: t.Any
    token: str | None
    order: int


class Outcome(t.NamedTuple):
    """What holding a row decided: rows to emit now, and rows proven delivered."""

    emit: list[Held]
    delivered: list[Held]


def _new_rows(held: list[Held], target: int, extra: int) -> list[Held] | None:
    """The ``extra`` held rows whose prints XOR to ``target``; None when none are found.

    Any other choice would have to match 64 bits by chance: with 128 rows held and four
    new, about 10^7 candidate sets against 1.8 * 10^19 values.
    """
    if extra == 0:
        return [] if target == 0 else None
    by_print = {row.print: row for row in held}
    if extra == 1:
        found = by_print.get(target)
        return None if found is None else [found]
    if extra == 2:
        for row in held:
            other = by_print.get(target ^ row.print)
            if other is not None and other is not row:
                return [row, other]
        return None
    if len(held) > MAX_SEARCHED:
        return None
    pairs = [(a, b) for i, a in enumerate(held) for b in held[i + 1 :]]  # every pair once
    if extra == 3:
        for a, b in pairs:
            other = by_print.get(target ^ a.print ^ b.print)
            if other is not None and other is not a and other is not b:
                return [a, b, other]
        return None
    by_pair: dict[int, list[tuple[Held, Held]]] = {}
    for a, b in pairs:
        by_pair.setdefault(a.print ^ b.print, []).append((a, b))
    for a, b in pairs:
        for c, d in by_pair.get(target ^ a.print ^ b.print, ()):
            if len({id(a), id(b), id(c), id(d)}) == 4:
                return [a, b, c, d]
    return None


class GapResolver:
    """The tallied seconds a pass has not settled yet, and the rows it holds for them."""

    def __init__(self, tally: Tally) -> None:
        #: Seconds still open in this pass: rows delivered whose keys nobody knows.
        self.open = tally
        #: What the pass hands on (``PartitionSync.finish``): every second but those proven.
        #: A second whose held rows were sent unproven stays: rows of it that this pass
        #: never saw (before a resumed pass's cursor) are still known only by the tally.
        self.carry = tally.copy()
        self._held: dict[int, list[Held]] = {}
        self._xor: dict[int, int] = {}
        self._keys: set[_Key] = set()
        self._count = 0
        self._order = 0
        #: Rows emitted by ``flush`` whose seconds had not been proven (re-sends, or new).
        self.flushed = 0
        #: Rows proven delivered (skipped).
        self.proven = 0

    @property
    def holding(self) -> int:
        """Rows held now."""
        return self._count

    def holds(self, key: _Key) -> bool:
        """True when this row is held already."""
        return key in self._keys

    def suspect(self, stamp: int) -> bool:
        """True when a row of this second, not vouched for by any key, must be held."""
        return self.open.get(stamp) is not None

    def hold(
        self, key: _Key, stamp: int, when: dt.datetime, record: t.Any, token: str | None
    ) -> Outcome:
        """Hold one row of an open second, and settle the second if what it holds proves it."""
        self._order += 1
        row = Held(key, when, fingerprint(key), record, token, self._order)
        self._held.setdefault(stamp, []).append(row)
        self._keys.add(key)
        self._xor[stamp] = self._xor.get(stamp, 0) ^ row.print
        self._count += 1
        return self._resolve(stamp)

    def _resolve(self, stamp: int) -> Outcome:
        entry = self.open.get(stamp)
        held = self._held[stamp]
        if entry is None:  # pragma: no cover - only open seconds are held
            return Outcome([], [])
        count, xor = entry
        extra = len(held) - count
        if extra < 0:
            return Outcome([], [])  # not all of the second's delivered rows seen yet
        target = self._xor[stamp] ^ xor  # the XOR of the new rows' prints
        new = _new_rows(held, target, extra) if extra <= MAX_EXTRA else None
        if new is None:
            if extra < MAX_EXTRA and (extra < 3 or len(held) <= MAX_SEARCHED):
                return Outcome([], [])  # a delivered row may still come
            return self._settle(stamp, emit_all=True)
        chosen = {id(row) for row in new}
        delivered = [row for row in held if id(row) not in chosen]
        self._close(stamp)
        self.carry.drop(stamp)  # every delivered row of it is known by key now
        self.proven += len(delivered)
        return Outcome(new, delivered)

    def _close(self, stamp: int) -> None:
        rows = self._held.pop(stamp)
        self._count -= len(rows)
        self._keys.difference_update(row.key for row in rows)
        self._xor.pop(stamp, None)
        self.open.drop(stamp)

    def _settle(self, stamp: int, *, emit_all: bool) -> Outcome:
        rows = self._held.get(stamp, [])
        self._close(stamp)
        if emit_all:
            self.flushed += len(rows)
        return Outcome(rows, [])

    def flush(self) -> list[Held]:
        """Emit every row held (their seconds close): before a STATE, at the pass's end."""
        rows: list[Held] = []
        for stamp in list(self._held):
            rows += self._settle(stamp, emit_all=True).emit
        rows.sort(key=lambda row: row.order)
        return rows

    def oldest_token(self) -> tuple[bool, str | None]:
        """(True, the token of the page the oldest held row came from) while rows are held."""
        if not self._count:
            return False, None
        oldest = min((rows[0] for rows in self._held.values() if rows), key=lambda r: r.order)
        return True, oldest.token
