"""What the simulator saw, for tests to assert on (e.g. "the tap never used ?access_token=").

``MarketoSimulator.counters`` returns a frozen ``Counters`` snapshot (a dataclass of plain dicts
and ints); the live ``CounterBook`` behind it is only touched under its lock.

Keys of ``errors_by_code`` (every error answered, injected or not):
- Marketo codes as strings: ``"601"``, ``"606"``, ``"1003"``...
- HTTP-level failures as ``"HTTP<status>"``: ``"HTTP401"``, ``"HTTP414"``, ``"HTTP500"``...
- ``"reset"`` (connection dropped), ``"malformed"`` (invalid JSON body), ``"no_result"`` and
  ``"bad_record"`` (success:true answers that are broken on purpose).
``injected_by_code`` is keyed by the fault kind as injected (``"602"``, ``"500"``, ``"reset"``,
``"slow"``...); ``enforced_by_code`` holds the limits the client actually provoked (606, 615,
607) and real token failures (601, 602). ``bulk_bytes_served`` counts export file bytes
written (broken answers included), ``bulk_range_answers`` the 206 answers.
``activity_calls_by_types`` counts ``/activities.json`` calls by their type ids ("21,22,32").
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Counters:
    calls_by_path: dict[str, int]
    errors_by_code: dict[str, int]
    injected_by_code: dict[str, int]
    enforced_by_code: dict[str, int]
    access_token_query_uses: int
    peak_concurrency: int
    tokens_issued: int
    identity_calls: int
    method_override_posts: int
    rows_served: int
    pages_served: int
    bulk_bytes_served: int
    bulk_range_answers: int
    #: ``/activities.json`` calls by their ``activityTypeIds`` (sorted, comma-joined)
    activity_calls_by_types: dict[str, int] = field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        return sum(self.calls_by_path.values())

    @property
    def rest_calls(self) -> int:
        return sum(n for path, n in self.calls_by_path.items() if path.startswith("/rest/"))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class CounterBook:
    """The mutable, thread-safe tally behind ``Counters``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self, in_flight: int = 0) -> None:
        with self._lock:
            self.calls_by_path: Counter[str] = Counter()
            self.activity_calls_by_types: Counter[str] = Counter()
            self.errors_by_code: Counter[str] = Counter()
            self.injected_by_code: Counter[str] = Counter()
            self.enforced_by_code: Counter[str] = Counter()
            self.access_token_query_uses = 0
            self.peak_concurrency = in_flight
            self.tokens_issued = 0
            self.identity_calls = 0
            self.method_override_posts = 0
            self.rows_served = 0
            self.pages_served = 0
            self.bulk_bytes_served = 0
            self.bulk_range_answers = 0

    def call(self, path: str) -> None:
        with self._lock:
            self.calls_by_path[path] += 1

    def activity_call(self, type_ids: list[int]) -> None:
        with self._lock:
            self.activity_calls_by_types[",".join(map(str, sorted(set(type_ids))))] += 1

    def error(self, key: str, *, injected: str | None = None, enforced: bool = False) -> None:
        with self._lock:
            self.errors_by_code[key] += 1
            if injected is not None:
                self.injected_by_code[injected] += 1
            if enforced:
                self.enforced_by_code[key] += 1

    def injected_only(self, kind: str) -> None:
        """A fault that is not an error answer (``slow``)."""
        with self._lock:
            self.injected_by_code[kind] += 1

    def concurrency(self, in_flight: int) -> None:
        with self._lock:
            self.peak_concurrency = max(self.peak_concurrency, in_flight)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(
                calls_by_path=dict(self.calls_by_path),
                errors_by_code=dict(self.errors_by_code),
                injected_by_code=dict(self.injected_by_code),
                enforced_by_code=dict(self.enforced_by_code),
                access_token_query_uses=self.access_token_query_uses,
                peak_concurrency=self.peak_concurrency,
                tokens_issued=self.tokens_issued,
                identity_calls=self.identity_calls,
                method_override_posts=self.method_override_posts,
                rows_served=self.rows_served,
                pages_served=self.pages_served,
                bulk_bytes_served=self.bulk_bytes_served,
                bulk_range_answers=self.bulk_range_answers,
                activity_calls_by_types=dict(self.activity_calls_by_types),
            )
