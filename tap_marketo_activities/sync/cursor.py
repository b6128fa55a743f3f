"""Where an unfinished pass stopped (its cursor), how a pass starts, and what one did.

Kept apart from ``incremental.PartitionSync``, which reads and writes these: the state's
``cursor`` entry, the start a walk is given, and the per-pass report and its warning.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass, field

from tap_marketo_activities.records import format_datetime

if t.TYPE_CHECKING:
    from tap_marketo_activities.sync.overlap import OverlapSet
    from tap_marketo_activities.sync.tally import Tally

STATE_VERSION = 1


def _short(value: t.Any, limit: int = 60) -> str:
    """``repr`` cut to one short line: a hostile state must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass
class Cursor:
    """Where an unfinished pass stopped: enough to resume it or to recover.

    ``pending`` (the keys the pass delivered inside the lookback) is None in most cursors:
    carrying them in every STATE made STATE 0.6-2.9 times the records (issue 22). It is
    put into the state dict only by ``PartitionSync`` (a cadence STATE whose keys fit the
    budget, a clean stop), never by ``to_state``. Without it a resumed pass trusts the
    position token, and the keys it lacks are those of rows stamped up to ``max_seen``
    (see ``PartitionSync.keys_missing_until``).
    """

    token: str
    window_start: dt.datetime
    max_seen: dt.datetime | None
    pending: OverlapSet | None = None
    #: Rows the target has whose keys the cursor does not carry (``sync/tally.py``).
    tally: Tally | None = None

    def to_state(self) -> dict[str, t.Any]:
        """JSON-ready form stored in the partition state."""
        blob: dict[str, t.Any] = {
            "v": STATE_VERSION,
            "token": self.token,
            "window_start": format_datetime(self.window_start),
            "max_seen": format_datetime(self.max_seen) if self.max_seen else None,
        }
        if self.pending is not None:
            blob["pending"] = self.pending.encode()
        return blob


@dataclass
class Start:
    """How a pass begins: a saved position token, or a date to mint one from."""

    since: dt.datetime
    token: str | None = None

    @property
    def resumes_cursor(self) -> bool:
        """True when the pass continues an interrupted one from its cursor."""
        return self.token is not None


@dataclass
class PassReport:
    """What a finished pass did, for logs and the run summary."""

    emitted: int = 0
    duplicates: int = 0
    max_lateness: dt.timedelta = field(default_factory=dt.timedelta)


def lateness_warning(max_lateness: dt.timedelta, lookback: dt.timedelta) -> str | None:
    """Plain-words warning when rows arrive within 20 % of the lookback, else None."""
    if not lookback or max_lateness < lookback * 0.8:
        return None
    late = int(max_lateness.total_seconds() // 60)
    window = int(lookback.total_seconds() // 60)
    return (
        f"rows arrived up to {late} min late; lookback is {window} min; raise lookback_minutes "
        "so that rows committed even later are not missed"
    )
