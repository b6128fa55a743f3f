"""One partition's bulk backfill: window after window, job after job, rows out.

For each window (windows.py) the backfill creates an export job for every activity type of
the partition, enqueues it (waiting while the instance's queue is full), polls it on a growing
interval, downloads the file (Range resume), verifies it (SHA-256) and only then reads it,
yielding records in exactly the REST path's shape.

State, under ``"bulk"`` in the partition's state dict (updated in place, so the caller's next
STATE message carries it):

- ``done_until``: the end of the last finished window; a resumed backfill starts there and
  never reads a finished window again;
- ``job``: the window in progress: its ``exportId``, window edges and ``rows_done`` (rows of
  its file already yielded). A run killed inside a window reuses the job if Marketo still
  has it (jobs and files live for days) and skips the rows it already yielded; if Marketo no
  longer has it, a new job is created and the window is read again from its first row.

A file holds what Marketo had committed when its job took its snapshot, which is no earlier
than the earliest of the job's ``createdAt``/``queuedAt``/``startedAt``/``finishedAt`` (which
of them bounds the snapshot is UNVERIFIED, so the earliest is taken). Rows stamped inside a
window but committed after that moment are missing from the file, so the REST walk after the
backfill starts no later than ``lookback`` before it (``rest_from``): late rows arrive within
the lookback, the same promise the REST path rests on. A saved job whose snapshot is older than
``stale_after`` (6 h) is created again instead of reused when its window reaches into that
lookback, so a run resumed days later re-exports its last window rather than re-reading days
of REST; a saved job with no readable timestamp is created again too.

A job queued by this run is cancelled when the run is interrupted (Ctrl-C, or SIGTERM, which
raises ``signals.Terminated`` while a job is awaited or downloaded): it would otherwise hold
one of the instance's 10 queue places and spend export quota on a file nobody reads.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.records import dated_activity_record, format_datetime, parse_datetime
from tap_marketo_activities.sources.bulk.csvfile import numbered_rows
from tap_marketo_activities.sources.bulk.download import verify
from tap_marketo_activities.sources.bulk.errors import (
    UNUSABLE,
    QueueTimeout,
)
from tap_marketo_activities.sources.bulk.filecheck import FileFacts
from tap_marketo_activities.sources.bulk.filecheck import check as check_file
from tap_marketo_activities.sources.bulk.filecheck import inspect as inspect_file
from tap_marketo_activities.sources.bulk.job_steps import (
    _MB,
    BackfillSettings,
    BulkStats,
    ExportJobSteps,
    _JobRef,
)
from tap_marketo_activities.sources.bulk.jobs import (
    ExportJobs,
)
from tap_marketo_activities.sources.bulk.progress import WaitProgress
from tap_marketo_activities.sources.bulk.signals import Terminated, terminate_as_exception
from tap_marketo_activities.sources.bulk.state_check import check_bulk
from tap_marketo_activities.sources.bulk.windows import Window, backfill_end, plan_windows

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from tap_marketo_activities.sources.bulk.cache import ExportCache
    from tap_marketo_activities.sources.bulk.transport import BulkTransport

STATE_KEY = "bulk"


@dataclass
class BulkBackfill(ExportJobSteps):
    """Runs one partition's backfill; ``records()`` yields what the REST path would."""

    transport: BulkTransport
    type_ids: Sequence[int]
    type_names: Mapping[int, str]
    state: dict[str, t.Any]
    settings: BackfillSettings = field(default_factory=BackfillSettings)
    stats: BulkStats = field(default_factory=BulkStats)
    logger: logging.Logger = field(
        default_factory=lambda: logging.getLogger("tap_marketo_activities.sources.bulk")
    )
    sleep: Callable[[float], None] = time.sleep
    #: The clock progress lines are timed by (seconds; tests pass one that follows ``sleep``).
    clock: Callable[[], float] = time.monotonic
    server_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    label: str = "activities"
    #: Types the export jobs ask for (default: ``type_ids``); rows of other types are skipped.
    job_type_ids: Sequence[int] | None = None
    cache: ExportCache | None = None
    #: Called right after a job is created and saved in ``state`` (the tap writes its state).
    on_job_created: Callable[[Window, str], None] = lambda window, export_id: None
    #: How late a row may commit after its ``activityDate`` (the REST path's lookback).
    lookback: dt.timedelta = dt.timedelta(minutes=60)
    #: Called for rows an earlier run already sent (skipped by ``rows_done``) that a REST
    #: re-read could meet again: the handover marks them delivered.
    on_replayed: Callable[[str, dt.datetime], object] = lambda key, when: None
    #: Where the REST walk after this backfill must start at the latest (None: anywhere).
    rest_from: dt.datetime | None = field(default=None, init=False)
    _active: _JobRef | None = field(default=None, init=False)
    _fetching: _JobRef | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.jobs = ExportJobs(self.transport, clock=self.server_now)
        # Late-bound: a test may set ``clock`` after construction.
        self.progress = WaitProgress(
            self.logger,
            self.label,
            self.settings.progress_every_s,
            lambda: self.clock(),  # noqa: PLW0108
        )
        self.job_types = sorted(set(self.job_type_ids or ()) | set(self.type_ids))

    # ------------------------------------------------------------------ state
    @property
    def _bulk_state(self) -> dict[str, t.Any]:
        value = self.state.setdefault(STATE_KEY, {})
        if not isinstance(value, dict):
            self._bad_state("bulk", "is not an object")
        return value

    def _bad_state(self, name: str, problem: str) -> t.NoReturn:
        msg = (
            f"State for {self.label}: '{name}' {problem}. Remove the 'bulk' entry of this "
            "partition from the state to restart its backfill."
        )
        raise StateError(msg)

    def done_until(self) -> dt.datetime | None:
        """The end of the last finished window, if any."""
        raw = self._bulk_state.get("done_until")
        if raw is None:
            return None
        try:
            return parse_datetime(str(raw))
        except ValueError:
            self._bad_state("bulk.done_until", f"is not a date-time ({raw!r})")

    def _saved_job(self) -> _JobRef | None:
        raw = self._bulk_state.get("job")
        if raw is None:
            return None
        try:
            return _JobRef(
                export_id=str(raw["exportId"]),
                window=Window(parse_datetime(raw["startAt"]), parse_datetime(raw["endAt"])),
                rows_done=int(raw.get("rows_done", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            self._bad_state("bulk.job", f"is not a saved export job ({raw!r})")

    def _reusable(self, start: dt.datetime, end: dt.datetime) -> _JobRef | None:
        """A job for the window starting at ``start``: this partition's, or one shared with it.

        Partitions that backfill together share each window's job; its id is written into
        every such partition's state when it is created (``shared``), so a partition that
        had not reached the window when a run stopped reuses it instead of creating another.
        """
        saved = self._saved_job()
        if saved is not None and saved.window.start == start and saved.window.end <= end:
            return saved
        shared = self._bulk_state.get("shared") or {}
        entry = shared.get(format_datetime(start)) if isinstance(shared, dict) else None
        if not isinstance(entry, dict):
            return None
        try:
            stop = parse_datetime(str(entry["endAt"]))
            export_id = str(entry["exportId"])
        except (KeyError, ValueError):
            self._bad_state("bulk.shared", f"holds an unreadable job ({entry!r})")
        return _JobRef(export_id, Window(start, stop)) if stop <= end else None

    def _save_job(self, job: _JobRef | None) -> None:
        self._bulk_state["job"] = job.to_state() if job is not None else None

    # ------------------------------------------------------------------ the run
    def end_for(self, run_started: dt.datetime) -> dt.datetime:
        return backfill_end(run_started, self.settings.settle)

    def records(self, start: dt.datetime, end: dt.datetime) -> Iterator[dict[str, t.Any]]:
        """Every row stamped ``start <= activityDate < end`` (see :meth:`dated_records`)."""
        for record, _ in self.dated_records(start, end):
            yield record

    def dated_records(
        self, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[dict[str, t.Any], dt.datetime]]:
        """Every row stamped ``start <= activityDate < end``, window by window, with its date.

        The parsed ``activityDate`` comes along so the handover need not parse it again.
        Resumes after ``done_until`` and inside a saved window's job. Interrupted by Ctrl-C
        or ``Terminated``, it cancels the job it has queued and forgets it.
        """
        check_bulk(self.label, self._bulk_state, self.server_now())
        done = self.done_until()
        if done is not None and done > self.server_now():
            self._bad_state(
                "bulk.done_until", f"is after Marketo's clock ({format_datetime(done)})"
            )
        if done is not None:
            start = max(start, done)
        try:
            while start < end.replace(microsecond=0):
                reusable = self._reusable(start, end)
                if reusable is None:
                    window = plan_windows(start, end, self.settings.max_span)[0]
                    yield from self._window(window, None)
                else:
                    window = reusable.window
                    yield from self._window(window, reusable)
                start = window.end
        except (KeyboardInterrupt, Terminated):
            self._cancel_active()
            raise

    def _window(
        self, window: Window, saved: _JobRef | None
    ) -> Iterator[tuple[dict[str, t.Any], dt.datetime]]:
        waited_from = self.stats.wait_s
        with tempfile.TemporaryDirectory(
            prefix="tap-marketo-bulk-", dir=self.settings.work_dir
        ) as tmp:
            job, path, size = self._file_for(window, saved, Path(tmp))
            what = f"bulk export {job.export_id} ({self.label}, {window.label()})"
            floor = self._late_floor(job, window)
            replay = job.rows_done if floor is not None else 0
            wanted = frozenset(self.type_ids)
            rows = 0
            entry: dict[str, t.Any] = self._bulk_state["job"]  # one key per row: cheap
            read = numbered_rows if self.cache is None else self.cache.rows
            after = job.rows_done - replay
            for number, row in read(path, what=what, type_ids=wanted, after=after):
                record, when = dated_activity_record(
                    row, type_names=self.type_names, request_id=what
                )
                if number <= replay:  # sent by an earlier run; REST may meet it again
                    if floor is not None and when >= floor and record["activityTypeId"] in wanted:
                        self.on_replayed(record["marketoGUID"], when)
                    continue
                job.rows_done = entry["rows_done"] = number
                if record["activityTypeId"] in wanted and window.contains(when):
                    rows += 1
                    self.stats.rows += 1
                    yield record, when
        self._window_done(window, rows, size, waited_from)

    def _window_done(self, window: Window, rows: int, size: int, waited_from: float) -> None:
        """The window is read: forget its job, move ``done_until`` past it, say so."""
        self._active = None
        self._save_job(None)
        self._bulk_state["done_until"] = format_datetime(window.end)
        shared = self._bulk_state.get("shared")
        if isinstance(shared, dict):
            shared.pop(format_datetime(window.start), None)
            if not shared:
                del self._bulk_state["shared"]
        self.stats.windows += 1
        self.logger.info(
            "Bulk backfill of %s: window %s done: %d rows, %.1f MB, waited %.0f s on the job.",
            self.label,
            window.label(),
            rows,
            size / _MB,
            self.stats.wait_s - waited_from,
        )

    def _late_floor(self, job: _JobRef, window: Window) -> dt.datetime | None:
        """Where REST must re-read this window from, if its file can miss late rows.

        Rows stamped before ``snapshot - lookback`` had committed when the snapshot was
        taken; later ones may not have. None when the whole window is safely in the file.
        """
        floor = window.start if job.snapshot is None else job.snapshot - self.lookback
        if floor >= window.end:
            return None
        floor = max(floor, window.start)
        if self.rest_from is None or floor < self.rest_from:
            self.rest_from = floor
        return floor

    def _file_for(
        self, window: Window, saved: _JobRef | None, tmp: Path
    ) -> tuple[_JobRef, Path, int]:
        """The window's verified file: from this run's cache, or from a (reused) job."""
        types = self.job_types
        cached = self.cache.get(window, types) if self.cache is not None else None
        if cached is not None and (saved is None or saved.export_id == cached.export_id):
            job = saved or _JobRef(cached.export_id, window)
            job.snapshot = cached.snapshot
            self._save_job(job)
            self.logger.info(
                "%s: reading bulk export %s, downloaded earlier in this run.",
                self.label,
                cached.export_id,
            )
            return job, cached.path, cached.size
        try:
            return self._fetch(window, saved, tmp)
        except UNUSABLE as exc:
            broken = self._fetching
            if broken is None or isinstance(exc, QueueTimeout):
                raise  # a second job would wait as long again
            self.logger.warning(
                "Bulk export %s cannot be used (%s); creating it again for %s.",
                broken.export_id,
                exc,
                window.label(),
            )
            self._save_job(None)
            for partial in tmp.iterdir():
                partial.unlink()
            return self._fetch(window, None, tmp)

    def _fetch(self, window: Window, saved: _JobRef | None, tmp: Path) -> tuple[_JobRef, Path, int]:
        """Download and verify the file of the saved job (if still there) or of a new one."""
        types = self.job_types
        self._fetching = saved
        with terminate_as_exception():  # waiting on Marketo: SIGTERM cancels the job
            job, status = self._ready_job(window, saved)
        self._fetching = job
        self._save_job(job)  # a shared job becomes this partition's own
        self._active = None  # Completed: nothing left to cancel
        what = f"bulk export {job.export_id} ({self.label}, {window.label()})"
        path = tmp / "export.csv"
        with terminate_as_exception():
            size = self._download(job, status, path, what)
        verify(path, status.checksum, what=what, advice=self.jobs.file_advice)
        facts = inspect_file(path)
        check_file(facts, records=status.records, file_size=status.file_size, what=what)
        if facts.bad_bytes:
            self._keep_undecodable(path, job, facts, what)
        self.stats.bytes += size
        if self.cache is not None:
            path = self.cache.put(window, types, job.export_id, path, job.snapshot).path
        return job, path, size

    def _keep_undecodable(self, path: Path, job: _JobRef, facts: FileFacts, what: str) -> None:
        """Report bytes that are not UTF-8 and keep the file: the rows carry U+FFFD for them."""
        kept_dir = Path(self.settings.work_dir or tempfile.gettempdir()) / "tap-marketo-kept"
        kept = kept_dir / f"{job.export_id}.csv"
        try:
            kept_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, kept)
        except OSError as exc:
            where = f"could not be kept ({exc})"
        else:
            where = f"is kept at {kept}"
        self.logger.warning(
            "%s: %d bytes in %d rows are not UTF-8; those rows are sent with U+FFFD in their "
            "place. The original file %s, to recover them from.",
            what,
            facts.bad_bytes,
            facts.bad_rows,
            where,
        )
