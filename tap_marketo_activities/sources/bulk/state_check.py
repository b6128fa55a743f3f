"""The ``bulk`` part of a partition's state, checked as strictly as its REST bookmark.

Every field steers what the tap asks Marketo for: an ``exportId`` becomes part of a request
path (sent with the bearer token), ``done_until`` decides which windows are never read again,
``rows_done`` how many rows of a file are skipped. So each is checked before any call: ids
must be Marketo's export ids (UUIDs, the only shape a path is built from), dates must parse,
lie no later than now and bound windows of at most 31 days (Marketo's limit), counts must be
plain integers in a sane range. A state that fails stops the run with one line naming the
field; nothing is skipped and the bookmark does not move.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.sources.bulk.windows import MAX_SPAN

#: Marketo's exportId: a UUID (lowercase in every sample; either case accepted).
EXPORT_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
#: More rows than a file of the 500 MB daily export quota can hold several times over.
MAX_ROWS_DONE = 10**9
#: How far a saved date may run ahead of this machine's clock (Marketo's may differ a bit).
CLOCK_SLACK = dt.timedelta(hours=1)

_KEYS = frozenset({"done_until", "job", "shared"})
_JOB_KEYS = frozenset({"exportId", "startAt", "endAt", "rows_done"})
_SHARED_KEYS = frozenset({"exportId", "endAt"})
_ADVICE = (
    "Pass the state this tap last emitted, or remove this partition's 'bulk' entry to plan "
    "its backfill again from its bookmark (or start_date)."
)


def valid_export_id(value: t.Any) -> bool:
    return isinstance(value, str) and EXPORT_ID.fullmatch(value) is not None


def _fail(where: str, field: str, problem: str) -> t.NoReturn:
    raise StateError(f"State for {where}: field '{field}' {problem}. {_ADVICE}")


def _date(where: str, field: str, value: t.Any, now: dt.datetime) -> dt.datetime:
    if not isinstance(value, str):
        _fail(where, field, "must be a date-time string")
    try:
        moment = parse_datetime(value[:64])
    except ValueError:
        _fail(where, field, f"is not a date-time ({value[:40]!r})")
    if moment > now + CLOCK_SLACK:
        _fail(where, field, f"is in the future ({value[:40]}); a backfill never gets there")
    return moment


def _window(where: str, field: str, start: dt.datetime, end: dt.datetime, export_id: t.Any) -> None:
    if not valid_export_id(export_id):
        _fail(where, f"{field}.exportId", "is not a Marketo export id (a UUID)")
    if end <= start:
        _fail(where, f"{field}.endAt", "must be after its startAt")
    if end - start > MAX_SPAN:
        _fail(where, f"{field}.endAt", "makes a window longer than Marketo's 31 days")


def check_bulk(where: str, value: t.Any, now: dt.datetime) -> None:
    """Raise ``StateError`` naming the first field of ``value`` (a ``bulk`` entry) that fails."""
    if not isinstance(value, dict):
        _fail(where, "bulk", "must be an object")
    unknown = sorted(str(k)[:40] for k in value if k not in _KEYS)
    if unknown:
        _fail(where, f"bulk.{unknown[0]}", "is not part of a bulk backfill's state")
    if value.get("done_until") is not None:
        _date(where, "bulk.done_until", value["done_until"], now)
    job = value.get("job")
    if job is not None:
        if not isinstance(job, dict) or set(job) - _JOB_KEYS or "exportId" not in job:
            _fail(where, "bulk.job", "is not a saved export job (exportId, startAt, endAt)")
        start = _date(where, "bulk.job.startAt", job.get("startAt"), now)
        end = _date(where, "bulk.job.endAt", job.get("endAt"), now)
        _window(where, "bulk.job", start, end, job["exportId"])
        rows = job.get("rows_done", 0)
        if type(rows) is not int or not 0 <= rows <= MAX_ROWS_DONE:
            _fail(where, "bulk.job.rows_done", f"must be a whole number of rows 0..{MAX_ROWS_DONE}")
    shared = value.get("shared")
    if shared is not None:
        if not isinstance(shared, dict):
            _fail(where, "bulk.shared", "must be an object of jobs by window start")
        for key, entry in shared.items():
            field = f"bulk.shared[{str(key)[:40]}]"
            start = _date(where, field, key, now)
            if not isinstance(entry, dict) or set(entry) != _SHARED_KEYS:
                _fail(where, field, "is not a shared export job (exportId, endAt)")
            end = _date(where, f"{field}.endAt", entry["endAt"], now)
            _window(where, field, start, end, entry["exportId"])
