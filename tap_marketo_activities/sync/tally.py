"""Per-second tallies of delivered rows: how many, and the XOR of their 64-bit fingerprints.

Where a STATE cannot carry the keys a pass delivered (a busy partition's keys would take
STATE past 5 % of the records, issue 22), it carries this instead: about 11 bytes per
second that holds rows, whatever the number of rows in it. A later pass that re-reads
those seconds cannot look a row up in a tally, but it can prove which rows of a second
are the ones tallied once it has seen them (``sync/gap.py``): the re-read rows of a
second whose count and XOR match the tally are exactly the delivered ones, and one or
two rows more than the tally are singled out by the XOR. Nothing is ever skipped on a
count alone.
"""

from __future__ import annotations

import base64
import binascii
import typing as t

from tap_marketo_activities.sync.overlap import (
    OverlapSetError,
    _read_varint,
    _varint,
    fingerprint,
)

if t.TYPE_CHECKING:
    import datetime as dt

    from tap_marketo_activities.sync.overlap import OverlapSet

__all__ = ["MAX_ROWS", "MAX_SECONDS", "Tally", "TallyError", "fingerprint"]

_XOR_BYTES = 8
_MAX_STAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
#: Bounds on a decoded tally: a day of seconds ten times over, and rows as an overlap set.
MAX_SECONDS = 864_000
MAX_ROWS = 5_000_000
MAX_TEXT = 16 * 1024 * 1024


class TallyError(ValueError):
    """An encoded tally that the encoder cannot have written, or one over the bounds."""


class Tally:
    """Seconds (epoch) to (rows, XOR of their fingerprints); empty seconds are not kept."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tally) and self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    @property
    def rows(self) -> int:
        """Rows tallied, every second together."""
        return sum(count for count, _ in self._entries.values())

    def get(self, stamp: int) -> tuple[int, int] | None:
        """The (rows, XOR) of one second, or None."""
        return self._entries.get(stamp)

    def stamps(self) -> list[int]:
        """The seconds that hold rows, ascending."""
        return sorted(self._entries)

    def add(self, stamp: int, count: int, xor: int) -> None:
        """Tally ``count`` more rows of ``stamp`` whose fingerprints XOR to ``xor``."""
        if count <= 0:
            return
        old_count, old_xor = self._entries.get(stamp, (0, 0))
        self._entries[stamp] = (old_count + count, old_xor ^ xor)

    def update(self, other: Tally) -> None:
        """Add every second of ``other`` (two disjoint sets of rows)."""
        for stamp, (count, xor) in other._entries.items():
            self.add(stamp, count, xor)

    def drop(self, stamp: int) -> None:
        """Forget one second (its rows are now known by key, or will be sent again)."""
        self._entries.pop(stamp, None)

    def prune(self, before: dt.datetime) -> None:
        """Drop seconds before ``before``: no later window reaches them."""
        cut = int(before.timestamp())
        for stamp in [s for s in self._entries if s < cut]:
            del self._entries[stamp]

    def copy(self) -> Tally:
        result = Tally()
        result._entries = dict(self._entries)
        return result

    @classmethod
    def of(cls, keys: OverlapSet) -> Tally:
        """The tally of an overlap set's keys."""
        result = cls()
        result._entries = keys.tallies()
        return result

    def encode(self) -> str:
        """base64 of entries in stamp order: stamp delta, rows, then 8 bytes of XOR."""
        out = bytearray()
        previous = 0
        for stamp in self.stamps():
            count, xor = self._entries[stamp]
            _varint(stamp - previous, out)
            _varint(count, out)
            out += xor.to_bytes(_XOR_BYTES, "big")
            previous = stamp
        return base64.b64encode(bytes(out)).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Tally:
        """Inverse of :meth:`encode`; TallyError on anything the encoder cannot have written."""
        if len(text) > MAX_TEXT:
            msg = f"{len(text)} characters, more than the {MAX_TEXT} a tally may take"
            raise TallyError(msg)
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            msg = "not base64"
            raise TallyError(msg) from None
        try:
            return cls._entries_of(data)
        except OverlapSetError as exc:  # a varint that is cut short or too long
            raise TallyError(str(exc)) from None

    @classmethod
    def _entries_of(cls, data: bytes) -> Tally:
        result = cls()
        pos = stamp = rows = 0
        while pos < len(data):
            delta, pos = _read_varint(data, pos)
            if result._entries and not delta:
                msg = "a second listed twice"
                raise TallyError(msg)
            stamp += delta
            count, pos = _read_varint(data, pos)
            rows += count
            if stamp > _MAX_STAMP or not count or rows > MAX_ROWS:
                msg = "a time after the year 9999, an empty second, or too many rows"
                raise TallyError(msg)
            if pos + _XOR_BYTES > len(data) or len(result._entries) >= MAX_SECONDS:
                msg = "truncated, or more seconds than the limit"
                raise TallyError(msg)
            xor = int.from_bytes(data[pos : pos + _XOR_BYTES], "big")
            pos += _XOR_BYTES
            result._entries[stamp] = (count, xor)
        return result
