"""The simulator's virtual clock and the date formats Marketo reads and writes.

Why virtual: late commits are a matter of *when* a client asks. A test must be able to say
"it is now 14:00, run the tap; now it is 14:10, run it again" without sleeping, and the server's
HTTP ``Date`` header (which the tap uses as the moment a run started) must agree with it.

Two modes:
- frozen (the default for scenarios with a fixed afternoon): time moves only through ``set`` and
  ``advance``;
- ticking (the quick start, anchored to the present): virtual now = real now + an offset that
  ``set``/``advance`` change.

Token expiry and rate limits deliberately do NOT use this clock: they use real monotonic time, so
that a test lasting a few seconds can see a token expire or a 20-second window fill.
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, timedelta, timezone

UTC = timezone.utc

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$"
)


def parse_datetime(value: str | datetime | date) -> datetime:
    """Parse what Marketo accepts for ``sinceDatetime`` into an aware UTC datetime.

    Accepted: ``...Z``, ``...+hh:mm``, ``...+hhmm``, a naive datetime (taken as UTC) and a
    date alone (midnight UTC; a Marketo blog post calls that valid). Raises ``ValueError`` for
    anything else.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    match = _ISO.match(value.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    moment = datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
        tzinfo=UTC,
    )
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment -= sign * offset
    return moment


def to_epoch(moment: datetime) -> int:
    """Whole seconds since the epoch (the simulator stores times as ints)."""
    return int(moment.timestamp())


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class VirtualClock:
    """Thread-safe virtual now; see the module docstring for the two modes."""

    def __init__(self, start: str | datetime | None = None, *, ticking: bool = False) -> None:
        self._lock = threading.Lock()
        self.ticking = ticking
        real = datetime.now(UTC)
        base = real if start is None else parse_datetime(start)
        self._offset = base - real  # used when ticking
        self._frozen = base  # used when frozen

    def now(self) -> datetime:
        """The virtual now, an aware UTC datetime."""
        with self._lock:
            if self.ticking:
                return datetime.now(UTC) + self._offset
            return self._frozen

    def set(self, moment: str | datetime) -> None:
        target = parse_datetime(moment)
        with self._lock:
            self._frozen = target
            self._offset = target - datetime.now(UTC)

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move the virtual now forward (or back, with a negative amount); returns the new now."""
        step = (delta or timedelta()) + timedelta(hours=hours, minutes=minutes, seconds=seconds)
        with self._lock:
            self._frozen += step
            self._offset += step
            return datetime.now(UTC) + self._offset if self.ticking else self._frozen
