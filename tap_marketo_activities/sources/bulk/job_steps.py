"""Getting one window's export job to Completed and its file onto disk; the backfill's settings.

:class:`ExportJobSteps` is the part of :class:`~.backfill.BulkBackfill` that talks to
Marketo's job endpoints: reuse the saved job or create one, enqueue it (waiting while the
instance's queue is full), poll it on a growing interval, download its file (Range resume),
and cancel it when the run stops. The backfill (``backfill.py``) plans windows, keeps the
state and turns files into records.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

from tap_marketo_activities.records import format_datetime
from tap_marketo_activities.sources.bulk.download import fetch
from tap_marketo_activities.sources.bulk.errors import (
    BulkApiError,
    FileNotReady,
    JobFailed,
    JobGone,
    QueueFull,
    QueueTimeout,
)
from tap_marketo_activities.sources.bulk.jobs import (
    CANCELLED,
    CREATED,
    FAILED,
    PENDING,
    ExportJobs,
    JobStatus,
    poll_waits,
)

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from pathlib import Path

    from tap_marketo_activities.sources.bulk.progress import WaitProgress
    from tap_marketo_activities.sources.bulk.transport import BulkTransport
    from tap_marketo_activities.sources.bulk.windows import Window

_MB = 1024 * 1024


@dataclass(frozen=True)
class BackfillSettings:
    """How a backfill behaves; the defaults follow Adobe's advice for real instances."""

    settle: dt.timedelta = dt.timedelta(minutes=15)
    max_span: dt.timedelta = dt.timedelta(days=31)
    poll_initial_s: float = 30.0
    poll_factor: float = 1.5
    poll_max_s: float = 300.0
    max_job_wait_s: float = 12 * 3600.0
    max_queue_wait_s: float = 6 * 3600.0
    file_not_ready_retries: int = 10
    max_download_breaks: int = 10
    work_dir: Path | None = None
    #: A saved job whose snapshot is older than this is created again (see the module doc).
    stale_after: dt.timedelta = dt.timedelta(hours=6)
    #: During a wait on a job or its download, an INFO line at least this often (progress.py).
    progress_every_s: float = 60.0


@dataclass
class BulkStats:
    """What bulk cost this run (added to the run summary)."""

    jobs: int = 0
    bytes: int = 0
    rows: int = 0
    wait_s: float = 0.0
    windows: int = 0

    def summary(self) -> str:
        return (
            f"bulk jobs {self.jobs}, {self.bytes / _MB:.1f} MB, {self.rows} rows, "
            f"waited on jobs {self.wait_s:.1f} s"
        )


@dataclass
class _JobRef:
    export_id: str
    window: Window
    rows_done: int = 0
    queued_here: bool = False
    created_here: bool = False
    #: Earliest moment its file's snapshot can have been taken; None: unknown.
    snapshot: dt.datetime | None = None

    def to_state(self) -> dict[str, t.Any]:
        return {
            "exportId": self.export_id,
            "startAt": format_datetime(self.window.start),
            "endAt": format_datetime(self.window.end),
            "rows_done": self.rows_done,
        }


class ExportJobSteps:
    """A window's export job from creation (or reuse) to a downloaded file (module docstring).

    The attributes below are :class:`~.backfill.BulkBackfill`'s, which this class is a
    part of; ``_save_job`` is its, too (the job's place in the partition's state).
    """

    transport: BulkTransport
    jobs: ExportJobs
    settings: BackfillSettings
    stats: BulkStats
    progress: WaitProgress
    logger: logging.Logger
    label: str
    job_types: list[int]
    lookback: dt.timedelta
    sleep: Callable[[float], None]
    server_now: Callable[[], dt.datetime]
    on_job_created: Callable[[Window, str], None]
    _active: _JobRef | None

    def _save_job(self, job: _JobRef | None) -> None:
        raise NotImplementedError

    def _stale(self, snapshot: dt.datetime | None, window: Window) -> bool:
        """Whether a saved job's file is too old to reuse (see the module doc)."""
        if snapshot is None:
            return True
        if window.end <= snapshot - self.lookback:
            return False  # the whole window had committed when the file was taken
        return self.server_now() - snapshot > self.settings.stale_after

    # ------------------------------------------------------------------ jobs

    def _ready_job(self, window: Window, saved: _JobRef | None) -> tuple[_JobRef, JobStatus]:
        """A Completed job for ``window``: the saved one if Marketo still has it, else new."""
        if saved is not None:
            try:
                status = self.jobs.status(saved.export_id)
            except BulkApiError as exc:
                self.logger.info(
                    "Bulk export %s saved in the state is gone (%s); creating it again.",
                    saved.export_id,
                    exc,
                )
            else:
                if status.status in (FAILED, CANCELLED):
                    self.logger.info(
                        "Bulk export %s saved in the state is %s; creating it again.",
                        saved.export_id,
                        status.status,
                    )
                elif self._stale(status.snapshot_floor, window):
                    self.logger.info(
                        "Bulk export %s saved in the state was taken at %s, more than %s "
                        "ago (or at an unknown time): rows committed since may be missing "
                        "from its file; creating it again for %s.",
                        saved.export_id,
                        status.snapshot_floor.isoformat() if status.snapshot_floor else "?",
                        self.settings.stale_after,
                        window.label(),
                    )
                else:
                    saved.snapshot = status.snapshot_floor
                    self.logger.info(
                        "Resuming bulk export %s (%s) for %s, %d rows already sent.",
                        saved.export_id,
                        status.status,
                        window.label(),
                        saved.rows_done,
                    )
                    return saved, self._until_completed(saved, status)
        before = self.server_now()  # no snapshot can predate the job's creation
        status = self.jobs.create(window, self.job_types)
        self.stats.jobs += 1
        stamps = [m for m in (before, status.snapshot_floor) if m is not None]
        job = _JobRef(status.export_id, window, created_here=True, snapshot=min(stamps))
        self._save_job(job)
        self.on_job_created(window, job.export_id)  # persisted now: a killed run reuses it
        self.logger.info(
            "Created bulk export %s for %s (%s).", job.export_id, self.label, window.label()
        )
        return job, self._until_completed(job, status)

    def _until_completed(self, job: _JobRef, status: JobStatus) -> JobStatus:
        self._active = job
        self.progress.begin(f"export {job.export_id} ({job.window.label()})")
        if status.status == CREATED:
            status = self._enqueue(job)
        waits = poll_waits(
            self.settings.poll_initial_s, self.settings.poll_factor, self.settings.poll_max_s
        )
        waited = 0.0
        while status.status in PENDING:
            if waited >= self.settings.max_job_wait_s:
                msg = (
                    f"Bulk export {job.export_id} for {self.label} is still {status.status} "
                    f"after {waited / 60:.0f} min; the next run picks it up again."
                )
                raise JobGone(msg)
            pause = next(waits)
            self._wait(pause, status.status)
            waited += pause
            status = self.jobs.status(job.export_id)
        self.progress.job_waits.append(self.progress.waited())
        if status.status == FAILED:
            self._save_job(None)
            raise JobFailed(self._failed_message(job, status))
        if status.status == CANCELLED:
            self._save_job(None)
            msg = (
                f"Bulk export {job.export_id} for {self.label} ({job.window.label()}) was "
                "cancelled outside this run; the next run creates it again."
            )
            raise JobGone(msg)
        return status

    def _failed_message(self, job: _JobRef, status: JobStatus) -> str:
        """What a person reads when Marketo ends a job Failed (another export kind words
        its own advice: leads have no REST path to fall back to)."""
        return (
            f"Bulk export {job.export_id} for {self.label} ({job.window.label()}) failed: "
            f"{status.error_msg or 'Marketo gave no errorMsg'}. The next run creates it "
            "again; set backfill_method to rest if it keeps failing."
        )

    def _enqueue(self, job: _JobRef) -> JobStatus:
        waits = poll_waits(
            self.settings.poll_initial_s, self.settings.poll_factor, self.settings.poll_max_s
        )
        waited = 0.0
        while True:
            try:
                status = self.jobs.enqueue(job.export_id)
            except QueueFull as exc:
                if waited >= self.settings.max_queue_wait_s:
                    msg = (
                        f"Marketo's bulk queue stayed full for {waited / 60:.0f} min ({exc}); "
                        "other integrations hold its 10 places. The next run tries again."
                    )
                    raise QueueTimeout(msg) from None
                pause = next(waits)
                self.logger.info(
                    "Marketo's bulk export queue is full (%s); waiting %.0f s for a place.",
                    exc,
                    pause,
                )
                self._wait(pause, "queue full, waiting for a place")
                waited += pause
                continue
            job.queued_here = True
            return status

    def _download(self, job: _JobRef, status: JobStatus, path: Path, what: str) -> int:
        tries = 0
        self.progress.begin(f"export {job.export_id} ({job.window.label()})")
        rows = self.stats.rows
        while True:
            try:
                return fetch(
                    self.transport,
                    self.jobs.file_path(job.export_id),
                    path,
                    max_breaks=self.settings.max_download_breaks,
                    on_size=lambda have: self.progress.downloaded(have, status.file_size, rows),
                    on_break=lambda at, why: self.logger.info(
                        "%s: download broke at byte %d (%s); resuming from there.", what, at, why
                    ),
                )
            except FileNotReady:
                tries += 1
                if tries > self.settings.file_not_ready_retries:
                    msg = (
                        f"{what}: Marketo reports it {status.status} but its file still "
                        f"answers 404 after {tries} tries; the next run tries again."
                    )
                    raise JobGone(msg) from None
                self.logger.info("%s: the file is not served yet (404); waiting.", what)
                self._wait(self.settings.poll_initial_s, "Completed, file not served yet")

    def _wait(self, seconds: float, status: str = "waiting") -> None:
        """Sleep ``seconds`` in slices no longer than the progress cadence, reporting."""
        left = seconds
        while left > 0:
            piece = min(left, max(self.progress.until_due(), 1.0))
            self.sleep(piece)
            self.stats.wait_s += piece
            left -= piece
            self.progress.job_wait(status, self.stats.rows)

    def _cancel_active(self) -> None:
        job = self._active
        if job is None or not job.queued_here:
            return
        try:
            status = self.jobs.cancel(job.export_id)
        except Exception as exc:
            self.logger.warning("Could not cancel bulk export %s: %s", job.export_id, exc)
            return
        self._save_job(None)
        self._active = None
        self.logger.info(
            "Cancelled bulk export %s (%s) because the tap is stopping.",
            job.export_id,
            status.status,
        )
