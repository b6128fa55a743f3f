"""The leads a reconciliation sent in this run, and with which values (pure logic).

A run that reconciles sends every lead from the export files first, then the leads the
change feed names (leads/streams.py). A lead in both would arrive twice; the feed's copy is
only worth sending when it differs from the file's, that is when the lead changed after its
file was taken. Comparing values, rather than the change activities' dates with the export's
start, needs no time per lead from the feed, trusts no clock, and catches a change whose
activity commits late. Reading the feed's leads still costs what it did (one call per 300);
what is saved is the rows a target loads twice.

Each lead is held as its id and an 8-byte digest of its values, in two arrays (16 bytes a
lead; the reconciliation's byte budget bounds how many one run reads). A row whose digest
differs, or whose id was not sent, is sent: when in doubt, send (a duplicate with newer
values beats a stale row). Values are compared as values: a number as a number (REST's
``5`` equals a file's ``5.0``), a datetime as an instant (a ``-08:00`` REST value equals the
export's ``Z`` one); any other difference of form sends the row again.
"""

from __future__ import annotations

import hashlib
import json
import typing as t
from array import array
from bisect import bisect_right

from tap_marketo_activities.records import format_datetime, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping


class Emitted:
    """Ids and value digests of the rows sent; ``same(row)``: sent already with these values."""

    def __init__(self, types: Mapping[str, str]) -> None:
        #: field name -> Marketo dataType (datetimes are compared as instants)
        self.types = dict(types)
        self._ids = array("q")
        self._digests = array("q")
        self._sorted = True
        #: rows ``unsent`` held back as sent already (for the log)
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, row: Mapping[str, t.Any]) -> None:
        """Remember ``row`` as sent (a row without an integer id is not remembered)."""
        lead = row.get("id")
        if not isinstance(lead, int) or isinstance(lead, bool):
            return
        self._ids.append(lead)
        self._digests.append(self.digest(row))
        self._sorted = False

    def unsent(self, rows: Iterable[dict[str, t.Any]]) -> Iterator[dict[str, t.Any]]:
        """The rows not sent already with the same values (those are counted in ``skipped``)."""
        for row in rows:
            if self.same(row):
                self.skipped += 1
            else:
                yield row

    def same(self, row: Mapping[str, t.Any]) -> bool:
        """Whether a row with this id and these values was sent (the last one sent counts)."""
        lead = row.get("id")
        if not isinstance(lead, int) or isinstance(lead, bool) or not self._ids:
            return False
        self._sort()
        at = bisect_right(self._ids, lead) - 1
        return at >= 0 and self._ids[at] == lead and self._digests[at] == self.digest(row)

    def digest(self, row: Mapping[str, t.Any]) -> int:
        """8 bytes of BLAKE2b over the row's values, by field name, datetimes in UTC."""
        values = {name: self._canonical(name, value) for name, value in row.items()}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
        raw = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(raw, "big", signed=True)

    def _canonical(self, name: str, value: t.Any) -> t.Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # a currency of 5 comes as 5 by REST and as 5.0 from a file
        if self.types.get(name) == "datetime" and isinstance(value, str):
            try:
                return format_datetime(parse_datetime(value))
            except ValueError:
                return value
        return value

    def _sort(self) -> None:
        """Order by id once after adds; equal ids keep their order (sorted is stable)."""
        if self._sorted:
            return
        order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
        self._ids = array("q", (self._ids[i] for i in order))
        self._digests = array("q", (self._digests[i] for i in order))
        self._sorted = True
