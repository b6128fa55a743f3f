"""Marketo's limits, enforced: calls per trailing window (606), calls in flight (615), calls per
day (607).

Rate and concurrency use REAL monotonic time, so a test with a 1-second window sees them without
a virtual clock. The daily quota follows the VIRTUAL clock's day in US Central Standard Time
(UTC-6; Marketo resets at midnight CST, and whether that follows daylight saving is UNVERIFIED).
Identity calls do not count. Calls refused by a limit do not count toward the window or quota.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import date, datetime, timedelta

CST = timedelta(hours=-6)


def quota_day(now: datetime) -> date:
    return (now + CST).date()


class Limits:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self.in_flight = 0
        self.quota_used = 0
        self._quota_day: date | None = None

    def enter(self) -> int:
        with self._lock:
            self.in_flight += 1
            return self.in_flight

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def admit_rate(self, calls: int, window_s: float) -> bool:
        """Record a call in the trailing window, or refuse it (606) when the window is full."""
        now = time.monotonic()
        with self._lock:
            while self._window and self._window[0] <= now - window_s:
                self._window.popleft()
            if len(self._window) >= calls:
                return False
            self._window.append(now)
            return True

    def admit_quota(self, daily_quota: int, now: datetime) -> bool:
        with self._lock:
            self._roll(now)
            if self.quota_used >= daily_quota:
                return False
            self.quota_used += 1
            return True

    def set_quota(self, used: int, now: datetime) -> None:
        with self._lock:
            self._roll(now)
            self.quota_used = used

    def usage(self, now: datetime) -> tuple[date, int]:
        with self._lock:
            self._roll(now)
            assert self._quota_day is not None
            return self._quota_day, self.quota_used

    def _roll(self, now: datetime) -> None:
        day = quota_day(now)
        if day != self._quota_day:
            self._quota_day = day
            self.quota_used = 0
