"""Staying inside Marketo's shared limits, and counting what the run spent.

Marketo allows 100 calls per 20 seconds and 10 concurrent calls per instance,
shared by every integration, and a daily quota (50,000 in most subscriptions).
Adobe advises one integration to take at most half of the rate and concurrency,
so the limiter defaults to 50 calls per window and 5 at once: under normal
conditions the tap itself never provokes a 606 or 615.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import math
import threading
import time
import typing as t
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from tap_marketo_activities.errors import QuotaExhausted
from tap_marketo_activities.logs import progress_seconds
from tap_marketo_activities.records import format_datetime

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterator

CENTRAL = ZoneInfo("America/Chicago")


@dataclass
class RunStats:
    """What the run cost: the one-line summary every run ends with.

    Calls, retries and waits are counted from every thread that makes calls (the page
    fetchers of prefetch.py too): those go through :meth:`count` and :meth:`add_wait`,
    under one lock, since ``counter[key] += 1`` is a read and a write that two threads
    can interleave. ``records`` and ``duplicates_skipped`` are written by the emitting
    thread alone.
    """

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    records: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates_skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    waited_s: float = 0.0
    bulk_jobs: int = 0
    bulk_bytes: int = 0
    bulk_wait_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, counter: collections.Counter[str], key: str) -> None:
        """Add one to ``counter[key]`` (one of this object's counters), from any thread."""
        with self._lock:
            counter[key] += 1

    def add_wait(self, seconds: float) -> None:
        """Add to the time spent waiting on limits, from any thread."""
        with self._lock:
            self.waited_s += seconds

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


class WaitNotice:
    """INFO lines while the run waits on a limit: the limiter's window, or a 606 back-off.

    A run held back by the rate window (a low ``max_calls_per_20s``, another integration's
    606s) can sit for minutes between its "Reading" and "Finished" lines; the person
    watching it cannot tell a wait from a hang. Once a wait has lasted a few seconds
    (``after_s``, or the period if that is shorter) a line says what is waited on, for
    which stream or partition, the rows it has delivered so far and when the wait should
    end; then one line per period (a minute; ``TAP_MARKETO_PROGRESS_SECONDS``) while it
    lasts. The lines of all threads share one period: the log gets one line a minute, not
    one per waiting thread.

    What is being read is told by the thread that emits records (``reading``): the waits
    worth a line are that thread's own calls and those of the fetcher reading its chain
    ahead (the limiter's favoured thread), which serve the same partition.
    """

    AFTER_S = 5.0

    def __init__(
        self,
        logger: logging.Logger | None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_s = progress_seconds() if every_s is None else every_s
        self.after_s = min(self.AFTER_S, self.every_s)
        self.clock = clock
        self._reading: tuple[str, Callable[[], str]] | None = None
        #: The thread that emits records (the one that said what it is reading).
        self.reader: int | None = None
        self._last_line = -math.inf
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def reading(self, label: str, rows: Callable[[], str]) -> Iterator[None]:
        """While the block runs, waits are said to be for ``label``; ``rows`` says how many
        rows were sent so far."""
        previous, self._reading = self._reading, (label, rows)
        self.reader = threading.get_ident()
        try:
            yield
        finally:
            self._reading = previous

    def subject(self, fallback: str) -> str:
        """'stream 'x' partition {...} (120 rows of x sent so far)', else ``fallback``."""
        reading = self._reading
        if reading is None:
            return fallback
        label, rows = reading
        return f"{label} ({rows()})"

    def due(self, waited_s: float) -> bool:
        """True (and the shared period restarts) when a wait of this length is due a line."""
        if self.logger is None or waited_s < self.after_s:
            return False
        with self._lock:
            now = self.clock()
            if now - self._last_line < self.every_s:
                return False
            self._last_line = now
            return True

    def until_due(self, waited_s: float) -> float:
        """Seconds until a wait that has lasted ``waited_s`` is due its next line."""
        if self.logger is None:
            return math.inf
        if waited_s < self.after_s:
            return self.after_s - waited_s
        return max(0.0, self.every_s - (self.clock() - self._last_line))

    def say(self, message: str, *args: t.Any) -> None:
        """Log one line at INFO: the wait is news, not trouble (a 606 has its own WARNING)."""
        if self.logger is not None:
            self.logger.info(message, *args)


class CallLimiter:
    """A sliding-window rate limiter plus a concurrency cap, shared by all threads.

    A call holds one of ``max_concurrent`` slots while it is in flight, and takes a place
    in the window from the moment it is admitted. Its place is dated when its answer
    arrives, not when it was sent: Marketo dates a call when it arrives there, somewhere
    between the two, so a place freed 20 s after the answer is free on Marketo's side
    too, however long the call took to get there. A call in flight always counts.

    One thread can be *favoured* (:meth:`favour`): the fetcher of the chain the run is
    emitting, whose pages everything else waits for. Other threads leave it one slot, and
    start a call only if the favoured thread, calling one after another at the calls'
    measured speed, would still find a place in the window for each of its next calls.
    The chains read ahead must not spend the window in a burst and leave the chain being
    emitted waiting for the window to pass.
    """

    def __init__(
        self,
        *,
        max_calls: int,
        window_s: float,
        max_concurrent: int,
        stats: RunStats,
        clock: t.Callable[[], float] = time.monotonic,
        notice: WaitNotice | None = None,
    ) -> None:
        self.max_calls = max_calls
        self.window_s = window_s
        self.max_concurrent = max_concurrent
        #: When each call of the window ended, and which thread made it.
        self._ended: collections.deque[tuple[float, int]] = collections.deque()
        self._in_flight = 0
        self._favoured_flying = False
        self._cond = threading.Condition()
        self._stats = stats
        self._clock = clock
        self._favoured: int | None = None
        #: Mean seconds a call is in flight (moving average); None before the first.
        self.call_s: float | None = None
        self._waiting = 0
        self._waiting_since = 0.0
        #: Says what a long wait is for (none: a limiter built for a test or a benchmark).
        self.notice = notice or WaitNotice(None)

    def favour(self, thread_id: int) -> None:
        """Give this thread (``threading.get_ident()``) first claim on slots and places."""
        with self._cond:
            self._favoured = thread_id
            self._favoured_flying = False
            self._cond.notify_all()

    def unfavour(self, thread_id: int) -> None:
        """End the favour of this thread, if it still has it."""
        with self._cond:
            if self._favoured == thread_id:
                self._favoured = None
                self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one concurrent slot and one place in the rate window for a call."""
        me = threading.get_ident()
        self._admit(me)
        started = self._clock()
        try:
            yield
        finally:
            with self._cond:
                now = self._clock()
                self._in_flight -= 1
                if me == self._favoured:
                    self._favoured_flying = False
                self._ended.append((now, me))
                took = now - started
                self.call_s = (
                    took if self.call_s is None else self.call_s + (took - self.call_s) * 0.2
                )
                self._cond.notify_all()

    def _may_start(self, me: int, now: float) -> bool:
        """Whether a call of this thread may start now (the caller holds the lock)."""
        favoured = self._favoured
        used = len(self._ended) + self._in_flight
        if favoured is None or favoured == me:
            return self._in_flight < self.max_concurrent and used < self.max_calls
        if self._in_flight >= max(1, self.max_concurrent - 1) or used >= self.max_calls:
            return False
        return self._leaves_room(now)

    def _leaves_room(self, now: float) -> bool:
        """Whether one more call now leaves the favoured thread a place for each next call.

        The favoured thread calls about every ``call_s``; its k-th next call finds the
        window holding the calls that ended less than ``window_s`` before it, every call
        in flight now (this one included), and its own k calls before it.
        """
        step = max(self.call_s or 1.0, 0.05)
        ends = [end for end, _ in self._ended]
        in_window = len(ends)
        pending = self._in_flight + 1
        first = now + step if self._favoured_flying else now
        for k in range(math.ceil(self.window_s / step) + 1):
            at = first + k * step
            # Calls that ended at or before ``at - window_s`` no longer count then.
            still = in_window - bisect.bisect_right(ends, at - self.window_s)
            if still + pending + k + 1 > self.max_calls:
                return False
            if still == 0:
                return True
        return True

    def _admit(self, me: int) -> None:
        with self._cond:
            waiting = False
            began = 0.0
            while True:
                now = self._clock()
                while self._ended and now - self._ended[0][0] >= self.window_s:
                    self._ended.popleft()
                if self._may_start(me, now):
                    break
                if not waiting:
                    waiting = True
                    began = now
                    self._waiting += 1
                    if self._waiting == 1:
                        self._waiting_since = now
                # A small margin: the server's window edge and ours are not in sync. Room
                # for a thread that is not favoured can also come with time alone.
                oldest = self._ended[0][0] if self._ended else now
                pause = self.window_s - (now - oldest) + 0.05
                limit = self.window_s if self._favoured is None else 0.25
                if self._favoured in (None, me):  # the wait holds up the records
                    self._tell_wait(now - began, pause)
                    # Wake in time for the next line when a wait lasts that long.
                    limit = min(limit, max(self.notice.until_due(now - began), 0.05))
                self._cond.wait(min(max(pause, 0.01), limit))
            self._in_flight += 1
            if me == self._favoured:
                self._favoured_flying = True
            if waiting:
                self._waiting -= 1
                if not self._waiting:
                    # The time during which some call was held back, not the sum over
                    # threads: the summary's "waited on limits" stays in wall seconds.
                    self._stats.add_wait(now - self._waiting_since)

    def waiting_for(self, fallback: str) -> str:
        """What this thread's wait holds up: what the emitting thread reads, if this thread
        is that one or the fetcher of its chain (favoured); else ``fallback``."""
        me = threading.get_ident()
        if me in (self.notice.reader, self._favoured):
            return self.notice.subject(fallback)
        return fallback

    def _tell_wait(self, waited_s: float, pause_s: float) -> None:
        """One line (see WaitNotice) on a call held back this long: why, and for how long."""
        if not self.notice.due(waited_s):
            return
        if self._in_flight >= self.max_concurrent:
            why = (
                f"{self._in_flight} calls in flight (max_concurrent_calls={self.max_concurrent})"
                "; the next starts when one of them ends"
            )
        else:
            window = f"{self.window_s:g}"
            used = len(self._ended) + self._in_flight
            why = (
                f"{used} call{'' if used == 1 else 's'} in the last {window} s "
                f"(max_calls_per_20s={self.max_calls}); a place frees in about "
                f"{max(pause_s, 0.0):.0f} s"
            )
        self.notice.say(
            "Waiting on the rate limiter to read %s: waited %.0f s so far, %s.",
            self.waiting_for("a page read ahead"),
            waited_s,
            why,
        )


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
        # Re-entrant: the usage read of the first call is itself a call that comes back
        # here. Other threads wait until it is known, so none passes the check unread.
        self._lock = threading.RLock()

    def spend(self) -> None:
        """Count one call; refuse it if it would cross the budget (from any thread)."""
        with self._lock:
            self._spend()

    def _spend(self) -> None:
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
