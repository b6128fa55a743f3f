"""INFO lines while a bulk job is awaited or downloaded, so a long wait never looks like a hang.

A backfill spends most of its time waiting: for a place in Marketo's queue, for the job to
be processed (minutes to hours), for a file of hundreds of MB. During every such wait the
operator gets at least one line per ``every_s`` (a minute by default) naming the job, the
window, the status, the rows delivered so far and an estimate where one can be made: the
share of the file downloaded (and the time left at the rate so far), or for a job still
processing the time left if it takes as long as this run's earlier jobs took.

The clock is injectable (tests pass one that jumps), and sleeps are sliced into pieces no
longer than the cadence so that a 5-minute poll interval still reports every minute.
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable

_MB = 1024 * 1024


@dataclass
class WaitProgress:
    """Throttled progress lines for one backfill (see the module doc)."""

    logger: logging.Logger
    label: str
    every_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    #: How long each earlier job of this run waited, for the estimate of the next.
    job_waits: list[float] = field(default_factory=list)
    _last: float | None = field(default=None, init=False)
    _what: str = field(default="", init=False)
    _began: float = field(default=0.0, init=False)

    def begin(self, what: str) -> None:
        """A wait starts: ``what`` names the job and window (used in every line)."""
        self._what = what
        self._began = self._last = self.clock()

    def due(self) -> bool:
        now = self.clock()
        if self._last is None:
            self._last = now
        return now - self._last >= self.every_s

    def until_due(self) -> float:
        """Seconds until the next line is due (a sleep is cut there)."""
        if self._last is None:
            return self.every_s
        return max(0.0, self.every_s - (self.clock() - self._last))

    def waited(self) -> float:
        return max(0.0, self.clock() - self._began)

    def job_wait(self, status: str, rows: int) -> None:
        """Called during a queue or processing wait; writes a line when one is due."""
        if not self.due():
            return
        waited = self.waited()
        estimate = ""
        if self.job_waits:
            typical = sum(self.job_waits) / len(self.job_waits)
            left = typical - waited
            estimate = (
                f"; about {left / 60:.0f} min left if it takes as long as this run's earlier jobs"
                if left > 0
                else "; taking longer than this run's earlier jobs"
            )
        self._line(f"{status}, waited {waited / 60:.1f} min, {rows} rows so far{estimate}")

    def downloaded(self, have: int, total: int | None, rows: int) -> None:
        """Called as bytes arrive; writes a line when one is due."""
        if not self.due():
            return
        waited = self.waited()
        if total:
            share = min(1.0, have / total)
            estimate = f" of {total / _MB:.1f} MB ({share:.0%})"
            if 0 < share < 1 and waited > 0:
                estimate += f", about {waited * (1 - share) / share / 60:.0f} min left"
        else:
            estimate = " (size unknown)"
        self._line(f"downloading, {have / _MB:.1f} MB{estimate}, {rows} rows so far")

    def _line(self, text: str) -> None:
        self._last = self.clock()
        self.logger.info("Bulk backfill of %s: %s: %s.", self.label, self._what, text)


class CountingFile:
    """A binary file that reports each write's new size to ``on_size`` (download progress)."""

    def __init__(self, raw: t.BinaryIO, on_size: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_size = on_size

    def write(self, data: bytes) -> int:
        written = self._raw.write(data)
        self._on_size(self._raw.tell())
        return written

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._raw, name)
