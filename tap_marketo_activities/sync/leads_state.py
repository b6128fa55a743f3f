"""The ``leads`` entry of the state, checked before any call (as state.py checks the others).

Its fields (every one optional):

- ``replication_key_value``: the change feed's bookmark (latest change ``activityDate`` read);
- ``backfill_started``: when a first sync began (its windows end there);
- ``bulk``: the first sync's export progress, the activities' ``bulk`` shape (``done_until``,
  ``job``), checked by ``bulk/state_check.py``; ``created_until`` (an earlier version's
  name for ``bulk.done_until``) is still read;
- ``reconcile``: a reconciliation pass in progress: ``started`` (its windows end there),
  ``bulk`` (as above), and the bytes it exported on Marketo's quota day ``quota_day``
  (``bytes_today``);
- ``reconciled_at``: when the last reconciliation pass (or the first sync) began.
- ``feed_types``: change type id (as text) -> the position up to which the feed read that
  type, for types behind ``replication_key_value`` (``streams/leads/changes.py``).

Dates must parse and not lie in the future; a field that fails stops the run with one line
naming it.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.sources.bulk.state_check import CLOCK_SLACK, check_bulk

WHERE = "stream 'leads'"
#: More bytes than any instance's daily export quota (500 MB by default) many times over.
MAX_BYTES = 10**13
_ADVICE = (
    "Pass the state this tap last emitted, or remove the leads entry to sync the leads from "
    "start_date again."
)
_TIMES = ("replication_key_value", "backfill_started", "created_until", "reconciled_at")
_RECONCILE_KEYS = frozenset({"started", "bulk", "quota_day", "bytes_today"})


def _fail(field: str, problem: str) -> t.NoReturn:
    raise StateError(f"State for {WHERE}: field '{field}' {problem}. {_ADVICE}")


def state_time(state: t.Mapping[str, t.Any], key: str, now: dt.datetime) -> dt.datetime | None:
    """A date-time of the leads state, or None; one that is not a date, or is ahead, fails."""
    value = state.get(key)
    if value is None:
        return None
    try:
        moment = parse_datetime(str(value)[:64])
    except ValueError:
        _fail(key, f"is {str(value)[:60]!r}, not an ISO 8601 date-time")
    if moment > now + CLOCK_SLACK:
        _fail(key, f"is in the future ({str(value)[:40]}); no change was read there yet")
    return moment


def check_leads_state(state: t.Any, now: dt.datetime) -> None:
    """Raise ``StateError`` naming the first field of the leads entry that fails."""
    if not isinstance(state, dict):
        _fail("leads", "must be an object")
    for key in _TIMES:
        state_time(state, key, now)
    _check_positions(state.get("feed_types"), now)
    if state.get("bulk") is not None:
        check_bulk(WHERE, state["bulk"], now)
    reconcile = state.get("reconcile")
    if reconcile is None:
        return
    if not isinstance(reconcile, dict):
        _fail("reconcile", "must be an object")
    unknown = sorted(str(k)[:40] for k in reconcile if k not in _RECONCILE_KEYS)
    if unknown:
        _fail(f"reconcile.{unknown[0]}", "is not part of a reconciliation's state")
    if state_time(reconcile, "started", now) is None:
        _fail("reconcile.started", "is missing: a reconciliation in progress has a start")
    if reconcile.get("bulk") is not None:
        check_bulk(f"{WHERE} reconcile", reconcile["bulk"], now)
    used = reconcile.get("bytes_today", 0)
    if type(used) is not int or not 0 <= used <= MAX_BYTES:
        _fail("reconcile.bytes_today", f"must be a whole number of bytes 0..{MAX_BYTES}")
    day = reconcile.get("quota_day")
    if day is not None:
        try:
            dt.date.fromisoformat(str(day))
        except ValueError:
            _fail("reconcile.quota_day", f"is {str(day)[:40]!r}, not a date (YYYY-MM-DD)")


def _check_positions(positions: t.Any, now: dt.datetime) -> None:
    """``feed_types``: an object of activity type ids to date-times."""
    if positions is None:
        return
    if not isinstance(positions, dict):
        _fail("feed_types", "must be an object of activity type ids to date-times")
    for key, value in positions.items():
        name = f"feed_types.{str(key)[:40]}"
        if not str(key).isdigit():
            _fail(name, "is not an activity type id")
        state_time({name: value}, name, now)


def first_sync_progress(state: dict[str, t.Any]) -> dict[str, t.Any]:
    """The first sync's ``bulk`` entry, seeded from an earlier version's ``created_until``."""
    progress = state.setdefault("bulk", {})
    legacy = state.pop("created_until", None)
    if legacy is not None and progress.get("done_until") is None:
        progress["done_until"] = legacy
    return t.cast("dict[str, t.Any]", progress)
