"""The periodic reconciliation pass: every lead again, by bulk ``createdAt`` windows.

The change feed sees what Marketo logs as an activity; it cannot see changes to fields
Marketo does not log (system-managed ``inferred*`` fields, formula fields), changes older
than the activities' retention (90 days for Change Data Value and Change Score), or a lead
whose change the feed missed while the tap did not run. So when the last reconciliation (or
the first sync) began more than ``leads_reconcile_days`` ago (0: never), the ``leads`` pass
first re-exports every lead created from ``start_date`` to the pass's start, 31-day
``createdAt`` windows (``endAt`` inclusive), through the first sync's resumable machinery
(``LeadBackfill``, strict about stale jobs: a file holds the values of when it was taken).

Every lead read is emitted, not only those whose values differ: the tap keeps no copy of the
leads to compare with (a fingerprint per lead in the state would make the STATE megabytes on
a big instance, against issue 22's budget), and a target that upserts on ``id`` (every
loader of a stream with a key) ends with the same table either way; the cost is load on the
target, not calls.

Bytes: Marketo's bulk exports share a daily quota (500 MB by default, "500 MB or more",
reset at midnight US Central; ``bulk_daily_quota_mb``). The pass may spend
``leads_reconcile_quota_percent`` of it per quota day (counted in the state, so several runs
a day share it): before each window it stops when what it spent today plus the largest window
of this run would pass the budget, writes where it got to, and a later run (on a later quota
day once today's share is spent) continues at the next window. Only a saved job's window
goes on regardless (its file is paid for).
"""

from __future__ import annotations

import datetime as dt
import typing as t

from tap_marketo_activities.records import format_datetime, parse_datetime
from tap_marketo_activities.sources.bulk.windows import plan_windows
from tap_marketo_activities.wire.limits import CENTRAL

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from tap_marketo_activities.streams.leads.backfill import LeadBackfill

_MB = 1024 * 1024


def quota_day(now: dt.datetime) -> str:
    """Marketo's quota day of ``now`` (the export quota resets at midnight US Central)."""
    return now.astimezone(CENTRAL).date().isoformat()


def budget_bytes(config: Mapping[str, t.Any]) -> int:
    """The bytes a reconciliation may export per quota day."""
    quota = float(config.get("bulk_daily_quota_mb", 500)) * _MB
    return int(quota * float(config.get("leads_reconcile_quota_percent", 20)) / 100)


def assume_read_at_bookmark(
    state: dict[str, t.Any], bookmark: dt.datetime, days: int, logger: t.Any
) -> dt.datetime:
    """For a state of a version without this pass (a bookmark, no ``reconciled_at``): the
    leads count as read in full at the bookmark, written to the state, so that the first
    pass comes ``days`` after it rather than in the first run after the upgrade (a surprise
    spend of export quota); a bookmark that old already makes it due at once."""
    state["reconciled_at"] = format_datetime(bookmark)
    logger.info(
        "leads: the state has no reconciled_at (written before the reconciliation pass "
        "existed); counting the leads as read in full at the bookmark, %s: the first "
        "reconciliation comes %d days after it (leads_reconcile_days)",
        state["reconciled_at"],
        days,
    )
    return bookmark


def begin(
    state: dict[str, t.Any], now: dt.datetime, days: int, last: dt.datetime | None
) -> dict[str, t.Any] | None:
    """The reconciliation to run now (in progress, or due), or None; ``days`` 0 turns it off."""
    if days <= 0:
        state.pop("reconcile", None)
        return None
    progress = state.get("reconcile")
    if isinstance(progress, dict):
        return progress
    if last is not None and now - last < dt.timedelta(days=days):
        return None
    progress = state["reconcile"] = {"started": format_datetime(now)}
    return progress


def run(
    state: dict[str, t.Any],
    progress: dict[str, t.Any],
    backfill: LeadBackfill,
    *,
    start_date: dt.datetime,
    now: dt.datetime,
    budget: int,
    rows: Callable[[dt.datetime, dt.datetime], Iterator[dict[str, t.Any]]],
    logger: t.Any,
) -> Iterator[dict[str, t.Any]]:
    """Every lead of the windows the budget allows; ``reconciled_at`` once all are read."""
    started = parse_datetime(str(progress["started"]))
    today = quota_day(now)
    if progress.get("quota_day") != today:
        progress["quota_day"], progress["bytes_today"] = today, 0
    bulk = progress.setdefault("bulk", {})
    done = bulk.get("done_until")
    windows = plan_windows(max(start_date, parse_datetime(done) if done else start_date), started)
    saved = bulk.get("job") or {}
    logger.info(
        "leads: reconciliation pass (begun %s): %d createdAt windows left; %.1f of %.1f MB "
        "of today's budget spent",
        progress["started"],
        len(windows),
        progress["bytes_today"] / _MB,
        budget / _MB,
    )
    largest = 0
    for window in windows:
        spent = int(progress["bytes_today"])
        paid = saved.get("startAt") == format_datetime(window.start)
        if not paid and (spent >= budget or spent + largest > budget):
            logger.info(
                "leads: reconciliation paused at %s: %.1f MB of today's %.1f MB budget "
                "(leads_reconcile_quota_percent of bulk_daily_quota_mb) spent; a later run "
                "continues there",
                format_datetime(window.start),
                spent / _MB,
                budget / _MB,
            )
            backfill.write_state(True)
            return
        before = backfill.stats.bytes
        yield from rows(window.start, window.end)
        size = backfill.stats.bytes - before
        largest = max(largest, size)
        progress["bytes_today"] = spent + size
        backfill.write_state(True)
    state.pop("reconcile", None)
    state["reconciled_at"] = format_datetime(started)
    logger.info("leads: reconciliation pass begun %s is complete", format_datetime(started))
