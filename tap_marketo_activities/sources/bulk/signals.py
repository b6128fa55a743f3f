"""SIGTERM and Ctrl-C as exceptions, so a stopping tap can cancel the export jobs it queued.

Python's default SIGTERM handling ends the process without running ``finally`` blocks, and
the tap's own handlers (tap.py) exit at once for both signals; inside a bulk backfill
SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt`` instead. Jobs left queued
would hold one of the instance's 10 queue places (shared with every integration) until they
finish and draw on the 500 MB daily export quota for a file nobody reads.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType


class Terminated(BaseException):
    """The process received SIGTERM."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise Terminated


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt``.

    Main thread only; a no-op elsewhere.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
