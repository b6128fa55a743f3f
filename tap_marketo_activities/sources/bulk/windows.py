"""Which ``createdAt`` windows a backfill asks for (pure functions).

Marketo accepts a ``createdAt`` span of at most 31 days per job, and a job may list any
number of activity types, so one job per 31 days covers every type: splitting by type would
multiply jobs (and queue places, shared with every other integration) for nothing.

The backfill ends a settle margin before the run's start by Marketo's clock: rows stamped
in the last minutes are still committing, and the REST engine that takes over re-reads its
lookback anyway. Window edges are whole seconds, because ``createdAt`` takes ISO 8601 without
milliseconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tap_marketo_activities.records import format_datetime

MAX_SPAN = dt.timedelta(days=31)


@dataclass(frozen=True)
class Window:
    """Rows stamped ``start <= activityDate < end``."""

    start: dt.datetime
    end: dt.datetime

    def contains(self, moment: dt.datetime) -> bool:
        return self.start <= moment < self.end

    def created_at_filter(self) -> dict[str, str]:
        """The job's ``createdAt`` filter: whole seconds covering the window."""
        return {
            "startAt": format_datetime(_floor_second(self.start)),
            "endAt": format_datetime(_floor_second(self.end)),
        }

    def label(self) -> str:
        return f"{format_datetime(self.start)} .. {format_datetime(self.end)}"


def _floor_second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def backfill_end(run_started: dt.datetime, settle: dt.timedelta) -> dt.datetime:
    """Where the bulk backfill stops: ``settle`` before the run's start (Marketo's clock)."""
    return _floor_second(run_started - settle)


def plan_windows(
    start: dt.datetime, end: dt.datetime, max_span: dt.timedelta = MAX_SPAN
) -> list[Window]:
    """Consecutive windows from ``start`` to ``end``, each at most ``max_span`` long.

    The first window starts exactly at ``start``; its job asks from ``start`` floored to the
    second, and rows before ``start`` are dropped by ``Window.contains``. No window when
    ``end`` is not after ``start``.
    """
    if max_span <= dt.timedelta(0) or max_span > MAX_SPAN:
        msg = f"max_span must be positive and at most 31 days, got {max_span}"
        raise ValueError(msg)
    cursor = start
    end = _floor_second(end)
    windows: list[Window] = []
    while cursor < end:
        stop = min(_floor_second(cursor) + max_span, end)
        windows.append(Window(cursor, stop))
        cursor = stop
    return windows
