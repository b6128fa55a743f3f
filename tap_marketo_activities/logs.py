"""What a run's log says, in one voice: SDK lines that repeat ours are dropped, and our
metric is written the way the SDK writes its own.

A run's log should tell a person what was read, what was new and where the bookmark is. The
SDK adds lines that, next to ours, say less or contradict: "Starting incremental sync ... with
bookmark value" before our "Reading ... from" (which names the window start, bookmark minus
lookback, and why), and "Skipping parse of env var settings" on every run that did not ask
for ``--config ENV``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import typing as t

from singer_sdk import metrics
from typing_extensions import override

#: How the SDK's redundant lines begin (its own wording, SDK 0.54).
SDK_NOTICES = (
    "Skipping parse of env var settings",
    "Starting incremental sync of ",
    # One line per per-type table on every run: how the tables hang off `activities` is
    # the tap's design (README, typed tables), not news for the person reading the log.
    "Added '%s' as child stream to '%s'",
    # One line per per-type table nobody selected (31 on the simulator's instance).
    "Skipping deselected stream ",
    # backoff's own line before each retry wait, on the stream's logger: our "Retrying ...
    # in N s after <cause> (attempt i of n)" says it with the cause, and a 606 window is
    # waited out by our handler (client.py), so backoff's figure for it would read 0.0 s.
    "Backing off ",
)


class QuietSdkNotices(logging.Filter):
    """Drops the SDK's lines that repeat (or muddle) what the tap's own lines say."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(SDK_NOTICES)


def quiet_sdk_notices(logger: logging.Logger) -> None:
    """Attach the filter to a logger once (filters act on the logger a line is logged on)."""
    if not any(isinstance(f, QuietSdkNotices) for f in logger.filters):
        logger.addFilter(QuietSdkNotices())


def quiet_metrics(metrics_logger: logging.Logger, level: str) -> None:
    """METRIC lines only when asked for: ``metrics_log_level`` INFO, or LOGLEVEL=DEBUG.

    The SDK writes a metric point at INFO for every stream, every partition and every
    request timer: 33 of a plain simulator run's 83 lines. They are for collectors, not for
    the person reading the log, so by default they are shown only when the process logs
    at DEBUG (the SDK sets the metrics logger to LOGLEVEL, INFO unless said otherwise).
    """
    if level.upper() == "INFO":
        return
    if metrics_logger.getEffectiveLevel() > logging.DEBUG:
        metrics_logger.setLevel(logging.WARNING)


def log_gauge(name: str, value: int) -> None:
    """A gauge in the SDK's own metric-line format, so a run's metrics read as one list.

    The SDK's metrics module has no gauge meter and its ``Point`` takes only the SDK's own
    metric names, so the point is written here the way the SDK writes its points: on its
    metrics logger, as compact JSON, tagged with the process id.
    """
    point = {"type": "gauge", "metric": name, "value": value, "tags": {"pid": os.getpid()}}
    metrics.get_metrics_logger().info("METRIC: %s", json.dumps(point, separators=(",", ":")))


#: Seconds between progress lines of a long walk; the environment variable lets a test
#: (or an impatient operator) see them without waiting a minute.
PROGRESS_ENV = "TAP_MARKETO_PROGRESS_SECONDS"
PROGRESS_SECONDS = 60.0


def progress_seconds() -> float:
    """The progress period: ``TAP_MARKETO_PROGRESS_SECONDS`` if set to a number, else 60 s."""
    try:
        return float(os.environ.get(PROGRESS_ENV, PROGRESS_SECONDS))
    except ValueError:
        return PROGRESS_SECONDS


class Progress:
    """Says when a long walk is due its next progress line: at most one per period.

    A REST walk of a large window takes minutes to hours with nothing in the log between its
    "Reading" and "Finished" lines; one line a minute tells the operator it is moving.
    """

    def __init__(
        self, every: float | None = None, clock: t.Callable[[], float] = time.monotonic
    ) -> None:
        self.every = progress_seconds() if every is None else every
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        """True (and the period restarts) when a period has passed since the last line."""
        now = self.clock()
        if now - self.last < self.every:
            return False
        self.last = now
        return True
