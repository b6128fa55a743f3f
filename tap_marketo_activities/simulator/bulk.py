"""The Bulk Activity Extract endpoints (``/bulk/v1/activities/export...``), no HTTP here.

A job moves Created -> Queued (enqueue) -> Processing -> Completed on the simulator's VIRTUAL
clock: at most ``max_processing`` (2) jobs process at once, each for ``processing_s`` virtual
seconds, and at most ``max_queued`` (10) are Queued or Processing, counting jobs of "other
integrations" that a test adds with ``occupy``. A job's rows are those committed when it
starts processing and stamped inside its ``createdAt`` range, so a row that commits after that
moment is not in the file (exactly the late-commit hazard the tap's handover must cover).
With the default ``processing_s = 0`` a job completes the moment it starts, which suits a
frozen clock; tests of the queue set a duration and ``sim.clock.advance`` past it.

Files are written by a thread to a temporary directory (never held in memory: a million rows
is hundreds of MB) when a job starts processing; a job completes when its virtual processing
time has passed AND its file is written (a status call waits up to ``write_wait_s`` real
seconds for the writer, so small jobs on a frozen clock complete deterministically). Each
file's SHA-256 is reported as ``fileChecksum`` ("sha256:<hex>"). Their sizes count against
the daily export quota (``quota_bytes``, 500 MB, reset at midnight CST like the call quota);
an enqueue past it answers 1029 "Export daily quota exceeded", a full queue 1029 "Too many
jobs in queue".

Knobs (plain attributes): ``processing_s``, ``attributes_form`` ("object" as in the docs'
sample or "array" as in the SPEC's), ``cancel_spelling`` ("Cancelled" or "Canceled"; the docs
use both), ``corrupt_checksum`` (status reports a wrong checksum), ``file_404_times`` (a
Completed file answers 404 that many times first), ``break_downloads`` (that many file
answers stop half-way and drop the connection), ``fail_jobs`` (that many of the client's jobs
end Failed with an ``errorMsg``), ``quota_bytes``. Per job (sets of ``exportId``):
``vanished`` (every call about the job answers HTTP 404, as once its retention has ended),
``file_404_ids`` (its file always answers 404), ``bad_checksum_ids`` (its status reports a
wrong checksum). File content, for every job of the client while set: ``short_rows`` (the
file lacks its last rows while ``numberOfRecords`` counts them and the checksum matches;
lead exports too),
``invalid_utf8_rows`` (that many rows carry a byte 0xFF in ``primaryAttributeValue``),
``big_field_chars`` (the first row's ``primaryAttributeValue`` is that long).

UNVERIFIED choices: ``createdAt`` is inclusive at both ends; an unknown ``exportId`` answers
1003 "Export not found"; a span over 31 days, type 37, or a missing filter answer 1003; a job
that is not Created answers 1003 on enqueue; cancel works on Created, Queued or Processing.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import catalog as cat
from . import leads as lead_db
from .bulk_files import ExportFiles, FileAnswer, Job
from .clock import parse_datetime, to_epoch
from .limits import quota_day

if TYPE_CHECKING:
    from datetime import date

    from .protocols import Instance

PREFIX = "/bulk/v1/activities/export"
#: Lead exports by createdAt/updatedAt, from the lead database (``leads.py``).
LEADS_CREATE = "/bulk/v1/leads/export/create.json"
MAX_SPAN = timedelta(days=31)
COLUMNS = (
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
)
_JOB_PATH = re.compile(
    rf"^(?:{PREFIX}|/bulk/v1/leads/export)/([0-9a-f-]{{36}})/(enqueue|status|file|cancel)\.json$"
)


class BulkError(Exception):
    """An HTTP-200, ``success: false`` bulk answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class BulkExports(ExportFiles):
    """Every export job of the instance, the queue, the export quota and the files."""

    processing_s: float = 0.0
    max_processing: int = 2
    max_queued: int = 10
    quota_bytes: int = 500 * 1024 * 1024
    attributes_form: str = "object"
    cancel_spelling: str = "Cancelled"
    corrupt_checksum: bool = False
    file_404_times: int = 0
    break_downloads: int = 0
    fail_jobs: int = 0
    vanished: set[str] = field(default_factory=set)
    file_404_ids: set[str] = field(default_factory=set)
    bad_checksum_ids: set[str] = field(default_factory=set)
    short_rows: int = 0
    invalid_utf8_rows: int = 0
    big_field_chars: int = 0
    #: False: the lead export's updatedAt filter answers 1035 (not in every subscription)
    lead_updated_at_filter: bool = False
    write_wait_s: float = 2.0
    jobs: dict[str, Job] = field(default_factory=dict)
    used_bytes: int = 0
    _quota_day: date | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _dir: Path | None = field(default=None, repr=False)

    # ------------------------------------------------------------ test helpers
    def occupy(self, now: datetime, count: int, *, owner: str = "another-integration") -> None:
        """Add ``count`` Queued jobs of another integration (they count toward the limits)."""
        with self._lock:
            for _ in range(count):
                job = self._new_job(
                    owner, now, to_epoch(now), to_epoch(now), types=frozenset(), fields=()
                )
                job.status = "Queued"
                job.queued_at = now

    def set_used_bytes(self, used: int, now: datetime) -> None:
        with self._lock:
            self._roll(now)
            self.used_bytes = used

    def forget(self, export_id: str | None = None) -> None:
        """Drop one job (or all): what Marketo does once a job's retention ends."""
        with self._lock:
            for key in [export_id] if export_id else list(self.jobs):
                self.jobs.pop(key, None)

    def close(self) -> None:
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def statuses(self, owner: str | None = None) -> dict[str, str]:
        with self._lock:
            return {
                j.export_id: j.status
                for j in self.jobs.values()
                if owner is None or j.owner == owner
            }

    # ------------------------------------------------------------ endpoints
    def create(self, sim: Instance, owner: str, raw_body: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw_body or b"{}")
        except ValueError:
            raise BulkError("609", cat.error_message("609")) from None
        if not isinstance(body, dict):
            raise BulkError("609", cat.error_message("609"))
        flt = body.get("filter")
        if not isinstance(flt, dict) or not isinstance(flt.get("createdAt"), dict):
            raise BulkError("1003", "filter.createdAt is required")
        try:
            start = parse_datetime(str(flt["createdAt"]["startAt"]))
            end = parse_datetime(str(flt["createdAt"]["endAt"]))
        except (KeyError, ValueError):
            raise BulkError("1003", "Invalid createdAt: startAt and endAt are required") from None
        if end < start or end - start > MAX_SPAN:
            raise BulkError("1003", "createdAt span must be between 0 and 31 days")
        raw_types = flt.get("activityTypeIds")
        try:
            types = frozenset(int(t) for t in raw_types) if raw_types else frozenset()
        except (TypeError, ValueError):
            raise BulkError("1003", "activityTypeIds must be integers") from None
        if cat.DELETE_LEAD in types:
            raise BulkError("1003", "Activity type 37 (Delete Lead) is not supported")
        fields = body.get("fields") or list(COLUMNS)
        unknown = [f for f in fields if f not in (*COLUMNS, "actionResult")]
        if unknown:
            raise BulkError("1003", f"Invalid field '{unknown[0]}'")
        if body.get("format", "CSV") != "CSV":
            raise BulkError("1003", "The simulator writes CSV only")
        with self._lock:
            job = self._new_job(
                owner,
                sim.clock.now(),
                to_epoch(start),
                to_epoch(end),
                types=types,
                fields=tuple(fields),
            )
            return {"success": True, "result": [job.as_json(self)]}

    def leads_create(self, sim: Instance, owner: str, raw_body: bytes) -> dict[str, Any]:
        """A lead export job by ``createdAt`` or ``updatedAt`` (one filter, at most 31 days).

        ``updatedAt`` answers 1035 unless ``lead_updated_at_filter`` is on, as an instance
        without that filter does (Stitch's tap-marketo probes it and reads 1035 as "no").
        """
        try:
            body = json.loads(raw_body or b"{}")
        except ValueError:
            raise BulkError("609", cat.error_message("609")) from None
        flt = body.get("filter") if isinstance(body, dict) else None
        if not isinstance(flt, dict) or len(flt) != 1:
            raise BulkError("1003", "filter: exactly one filter type is required")
        kind, span = next(iter(flt.items()))
        if kind == "updatedAt" and not self.lead_updated_at_filter:
            raise BulkError("1035", cat.error_message("1035", name="updatedAt"))
        if kind not in ("createdAt", "updatedAt") or not isinstance(span, dict):
            raise BulkError("1003", f"Unsupported filter '{kind}' (simulated: createdAt/updatedAt)")
        try:
            start = parse_datetime(str(span["startAt"]))
            end = parse_datetime(str(span["endAt"]))
        except (KeyError, ValueError):
            raise BulkError("1003", f"Invalid {kind}: startAt and endAt are required") from None
        if end < start or end - start > MAX_SPAN:
            raise BulkError("1003", f"{kind} span must be between 0 and 31 days")
        fields = body.get("fields")
        if not isinstance(fields, list) or not fields:
            raise BulkError("1003", "fields is required")
        unknown = [f for f in fields if f not in lead_db.FIELD_NAMES]
        if unknown:
            raise BulkError("1003", f"Invalid fields {unknown}")
        with self._lock:
            job = self._new_job(
                owner,
                sim.clock.now(),
                to_epoch(start),
                to_epoch(end),
                types=frozenset(),
                fields=tuple(fields),
            )
            job.lead_filter = (kind, to_epoch(start), to_epoch(end))
            return {"success": True, "result": [job.as_json(self)]}

    def enqueue(self, sim: Instance, owner: str, export_id: str) -> dict[str, Any]:
        now = sim.clock.now()
        with self._lock:
            self._settle(sim)
            job = self._job(owner, export_id)
            if job.status != "Created":
                raise BulkError("1003", f"Export '{export_id}' is {job.status}, not Created")
            self._roll(now)
            if self.used_bytes >= self.quota_bytes:
                raise BulkError("1029", "Export daily quota exceeded")
            busy = sum(1 for j in self.jobs.values() if j.status in ("Queued", "Processing"))
            if busy >= self.max_queued:
                raise BulkError("1029", "Too many jobs in queue")
            job.status, job.queued_at = "Queued", now
            self._settle(sim)
            return {"success": True, "result": [job.as_json(self)]}

    def status(self, sim: Instance, owner: str, export_id: str) -> dict[str, Any]:
        with self._lock:
            self._settle(sim)
            return {"success": True, "result": [self._job(owner, export_id).as_json(self)]}

    def cancel(self, sim: Instance, owner: str, export_id: str) -> dict[str, Any]:
        with self._lock:
            self._settle(sim)
            job = self._job(owner, export_id)
            if job.status not in ("Created", "Queued", "Processing"):
                raise BulkError("1003", f"Export '{export_id}' is {job.status}; cannot cancel")
            job.status = self.cancel_spelling
            job.finished_at = sim.clock.now()
            self._settle(sim)
            return {"success": True, "result": [job.as_json(self)]}

    def listing(self, sim: Instance, owner: str, params: dict[str, list[str]]) -> Any:
        with self._lock:
            self._settle(sim)
            wanted = {
                s.strip().lower()
                for raw in params.get("status", ())
                for s in raw.split(",")
                if s.strip()
            }
            horizon = sim.clock.now() - timedelta(days=7)
            jobs = [
                j
                for j in self.jobs.values()
                if j.owner == owner
                and j.created_at >= horizon
                and (not wanted or j.status.lower() in wanted)
            ]
            size = int((params.get("batchSize") or ["300"])[-1] or 300)
            if not 1 <= size <= 300:
                raise BulkError("1003", "batchSize must be between 1 and 300")
            offset = int((params.get("nextPageToken") or ["0"])[-1] or 0)
            page = jobs[offset : offset + size]
            body: dict[str, Any] = {"success": True, "result": [j.as_json(self) for j in page]}
            if offset + size < len(jobs):
                body["nextPageToken"] = str(offset + size)
            return body

    def file(
        self, sim: Instance, owner: str, export_id: str, range_header: str | None
    ) -> FileAnswer:
        with self._lock:
            self._settle(sim)
            job = self.jobs.get(export_id)
            if job is None or job.owner != owner or job.status != "Completed":
                return FileAnswer(404)
            if export_id in self.file_404_ids:
                return FileAnswer(404)
            if self.file_404_times > 0:
                self.file_404_times -= 1
                return FileAnswer(404)
            assert job.path is not None
            assert job.size is not None
            total = job.size
            answer = FileAnswer(200, job.path, 0, total - 1, total)
            span = _parse_range(range_header, total)
            if span is not None:
                answer = FileAnswer(206, job.path, span[0], span[1], total)
            if self.break_downloads > 0 and answer.length > 1:
                self.break_downloads -= 1
                answer.break_after = answer.length // 2
            return answer

    # ------------------------------------------------------------ internals
    def _new_job(
        self,
        owner: str,
        now: datetime,
        start_ts: int,
        end_ts: int,
        *,
        types: frozenset[int],
        fields: tuple[str, ...],
    ) -> Job:
        job = Job(str(uuid.uuid4()), owner, now, start_ts, end_ts, types, fields)
        self.jobs[job.export_id] = job
        return job

    def _job(self, owner: str, export_id: str) -> Job:
        job = self.jobs.get(export_id)
        if job is None or job.owner != owner:
            raise BulkError("1003", f"Export '{export_id}' not found")
        return job

    def _roll(self, now: datetime) -> None:
        day = quota_day(now)
        if day != self._quota_day:
            self._quota_day, self.used_bytes = day, 0

    def _settle(self, sim: Instance) -> None:
        """Advance every job to where the virtual clock says it is (events in time order)."""
        now = sim.clock.now()
        span = timedelta(seconds=self.processing_s)
        while True:
            running = [j for j in self.jobs.values() if j.status == "Processing"]
            queued = sorted(
                (j for j in self.jobs.values() if j.status == "Queued"),
                key=lambda j: j.queued_at or now,
            )
            if queued and len(running) < self.max_processing:
                self._start(sim, queued[0], queued[0].queued_at or now)
                continue
            due = [
                j
                for j in running
                if j.started_at is not None
                and j.started_at + span <= now
                and (j.owner != sim.client_id or j.written.wait(self.write_wait_s))
            ]
            if not due:
                return
            job = min(due, key=lambda j: j.started_at or now)
            assert job.started_at is not None
            finish = job.started_at + span
            self._complete(sim, job, finish)
            if queued:
                self._start(sim, queued[0], max(finish, queued[0].queued_at or finish))

    def _start(self, sim: Instance, job: Job, at: datetime) -> None:
        job.status, job.started_at = "Processing", at
        if job.owner != sim.client_id:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="marketo-sim-bulk-"))
        path = self._dir / f"{job.export_id}.csv"
        # The job's rows: what is committed when processing starts. Written by a thread, as
        # Marketo does it, so that enqueue and status answer at once even for a huge file.
        threading.Thread(target=self._write, args=(sim.world, job, at, path), daemon=True).start()

    def _complete(self, sim: Instance, job: Job, at: datetime) -> None:
        if job.owner == sim.client_id and self.fail_jobs > 0:
            self.fail_jobs -= 1
            job.status, job.finished_at = "Failed", at
            job.error = "Export failed: the simulator was told to fail this job"
            return
        job.status, job.finished_at = "Completed", at
        if job.owner == sim.client_id and job.size is not None:
            self._roll(at)
            self.used_bytes += job.size


def _parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> (start, end inclusive); None: whole file."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or not (match.group(1) or match.group(2)) or total == 0:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), total - 1) if last else total - 1
    else:
        start, end = max(0, total - int(last)), total - 1
    if start > end or start >= total:
        return None
    return start, end


def route(path: str) -> tuple[str, str | None] | None:
    """``(action, exportId)`` for a bulk path, or None when the path is not one."""
    if path == f"{PREFIX}/create.json":
        return "create", None
    if path == LEADS_CREATE:
        return "leads_create", None
    if path == f"{PREFIX}.json":
        return "list", None
    match = _JOB_PATH.match(path)
    if match:
        return match.group(2), match.group(1)
    return None
