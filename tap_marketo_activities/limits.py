"""Staying inside Marketo's shared limits, and counting what the run spent.

Marketo allows 100 calls per 20 seconds and 10 concurrent calls per instance,
shared by every integration, and a daily quota (50,000 in most subscriptions).
Adobe advises one integration to take at most half of the rate and concurrency,
so the limiter defaults to 50 calls per window and 5 at once: under normal
conditions the tap itself never provokes a 606 or 615.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import threading
import time
import typing as t
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from tap_marketo_activities.errors import QuotaExhausted
from tap_marketo_activities.records import format_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterator

CENTRAL = ZoneInfo("America/Chicago")


@dataclass
class RunStats:
    """What the run cost: the one-line summary every run ends with."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    records: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates_skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    waited_s: float = 0.0
    bulk_jobs: int = 0
    bulk_bytes: int = 0
    bulk_wait_s: float = 0.0

    def summary(self) -> str:
        """One line, stable order, no secrets."""

        def fmt(counter: collections.Counter[str]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "none"

        return (
            f"Run summary: calls {sum(self.calls.values())} ({fmt(self.calls)}); "
            f"retries {sum(self.retries.values())} ({fmt(self.retries)}); "
            f"records {sum(self.records.values())} ({fmt(self.records)}); "
            f"overlap duplicates skipped {sum(self.duplicates_skipped.values())}; "
            f"waited on limits {self.waited_s:.1f} s; "
            f"bulk jobs {self.bulk_jobs}, {self.bulk_bytes / 1048576:.1f} MB, "
            f"waited on bulk jobs {self.bulk_wait_s:.1f} s"
        )


class CallLimiter:
    """A sliding-window rate limiter plus a concurrency cap, shared by all streams."""

    def __init__(
        self,
        *,
        max_calls: int,
        window_s: float,
        max_concurrent: int,
        stats: RunStats,
        clock: t.Callable[[], float] = time.monotonic,
        sleep: t.Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_calls = max_calls
        self.window_s = window_s
        self._started: collections.deque[float] = collections.deque()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._stats = stats
        self._clock = clock
        self._sleep = sleep

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one concurrent slot and one place in the rate window for a call."""
        waited_from = self._clock()
        with self._slots:
            self._reserve()
            self._stats.waited_s += self._clock() - waited_from
            yield

    def _reserve(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._started and now - self._started[0] >= self.window_s:
                    self._started.popleft()
                if len(self._started) < self.max_calls:
                    self._started.append(now)
                    return
                # A small margin: the server's window edge and ours are not in sync.
                pause = self.window_s - (now - self._started[0]) + 0.05
            self._sleep(max(pause, 0.01))


class DailyBudget:
    """Our own cap on the instance's daily usage (``max_daily_calls``), if set.

    Marketo counts every integration's calls in ``/stats/usage.json``; a budget lets
    a user keep part of the quota for the others. The first call of a budgeted run
    reads that count (``read_usage``, itself one counted call), and from then on we
    add our own calls, so no second usage call is ever needed.
    """

    def __init__(self, limit: int | None, read_usage: t.Callable[[], int] | None = None) -> None:
        self.limit = limit
        self.used_at_start: int | None = None
        self.ours = 0
        self._read_usage = read_usage if limit is not None else None

    def spend(self) -> None:
        """Count one call; refuse it if it would cross the budget."""
        if self._read_usage is not None:
            read, self._read_usage = self._read_usage, None
            self.used_at_start = read()  # its own call comes through here, uncapped
        if (
            self.limit is not None
            and self.used_at_start is not None
            and self.used_at_start + self.ours + 1 > self.limit
        ):
            msg = (
                f"Stopped before exceeding max_daily_calls={self.limit}: the instance had "
                f"used {self.used_at_start} calls today before this run and this run made "
                f"{self.ours}. {quota_reset_text()} The next run resumes where this one "
                "stopped."
            )
            raise QuotaExhausted(msg)
        self.ours += 1


def next_quota_reset(now: dt.datetime | None = None) -> dt.datetime:
    """Marketo resets the daily quota at midnight US Central time."""
    now = now or dt.datetime.now(dt.timezone.utc)
    local = now.astimezone(CENTRAL)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), CENTRAL)
    return midnight.astimezone(dt.timezone.utc)


def quota_reset_text(now: dt.datetime | None = None) -> str:
    """'The quota resets at ... (in 5 h 12 min).' for error messages."""
    now = now or dt.datetime.now(dt.timezone.utc)
    reset = next_quota_reset(now)
    minutes = int((reset - now).total_seconds() // 60)
    return (
        f"Marketo resets the daily quota at midnight US Central, "
        f"{format_datetime(reset)} (in {minutes // 60} h {minutes % 60} min)."
    )
