"""Faults on purpose: random (seeded, reproducible) and scripted (``sim.inject``).

A fault *kind* is one of:
- a Marketo error code as a string ("601", "602", "604", "606", "607", "608", "611", "615",
  "713", "1003", ...): HTTP 200, ``success: false``, that code;
- an HTTP status ("500", "502", "503", "504", "414"): that status with a non-JSON body (what a
  gateway in front of Marketo sends);
- "reset": drop the connection without answering;
- "slow": sleep ``Faults.latency_s`` (1 s when unset), then answer normally;
- "malformed": HTTP 200 with a truncated, invalid JSON body;
- "no_result": ``success: true`` but no ``result`` (nor paging fields);
- "bad_record": a normal page whose first row lacks ``marketoGUID`` and ``activityDate``.

Random faults hit REST calls only (never identity), drawn from ``random.Random(seed)`` in
arrival order, so a sequential client sees the same faults on every run with the same seed.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

HTTP_STATUS_KINDS = frozenset({"500", "502", "503", "504", "414"})
SPECIAL_KINDS = frozenset({"reset", "slow", "malformed", "no_result", "bad_record"})
#: Transient faults a robust client must ride out; the default for random injection.
DEFAULT_KINDS: tuple[str, ...] = ("500", "502", "503", "604", "608", "611", "713", "reset", "slow")


def check_kind(kind: str) -> str:
    if kind in HTTP_STATUS_KINDS or kind in SPECIAL_KINDS or kind.isdigit():
        return kind
    raise ValueError(
        f"unknown fault kind {kind!r}: use a Marketo code such as '602', an HTTP status "
        f"({', '.join(sorted(HTTP_STATUS_KINDS))}) or one of {', '.join(sorted(SPECIAL_KINDS))}"
    )


@dataclass
class Faults:
    """Random fault injection: ``rate`` is the fraction of REST calls that get a fault."""

    seed: int = 1
    rate: float = 0.0
    kinds: tuple[str, ...] = DEFAULT_KINDS
    latency_s: float = 0.0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.kinds = tuple(check_kind(k) for k in self.kinds)
        self._rng = random.Random(self.seed)

    def draw(self) -> str | None:
        """The fault for the next REST call, or None."""
        if self.rate <= 0 or not self.kinds:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)

    @property
    def slow_s(self) -> float:
        return self.latency_s if self.latency_s > 0 else 1.0


class FaultScript:
    """Scripted faults: the next ``times`` calls whose path ends with ``suffix`` get ``kind``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[list[object]] = []

    def add(self, suffix: str, kind: str, times: int = 1, after: int = 0) -> None:
        """``times`` faults, once ``after`` matching calls have been answered normally."""
        with self._lock:
            self._entries.append([suffix, check_kind(kind), times, after])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def take(self, path: str) -> str | None:
        with self._lock:
            for entry in self._entries:
                suffix, kind, left, skip = entry
                if not (isinstance(left, int) and left > 0 and path.endswith(str(suffix))):
                    continue
                if isinstance(skip, int) and skip > 0:
                    entry[3] = skip - 1
                    continue
                entry[2] = left - 1
                return str(kind)
            self._entries = [e for e in self._entries if isinstance(e[2], int) and e[2] > 0]
            return None

    def pending(self) -> int:
        with self._lock:
            return sum(int(e[2]) for e in self._entries if isinstance(e[2], int))
