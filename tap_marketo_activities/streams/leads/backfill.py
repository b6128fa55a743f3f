"""Lead exports by ``createdAt`` windows, resumable exactly as the activities backfill is.

``LeadBackfill`` is the activities' ``BulkBackfill`` (bulk/backfill.py) with lead jobs
(``LeadExportJobs``) and lead rows: the same state (``bulk``: ``done_until``, and ``job``
with its ``exportId``, window and ``rows_done``), checked by the same rules
(bulk/state_check.py: UUID ids, no future dates, windows of at most 31 days, bounded
counters), the same reattachment (a saved job Marketo still has and that is not stale is
polled, downloaded and read from the row after ``rows_done``; a job that is gone, failed,
cancelled or stale is created again), the same checks of the file (SHA-256, row count and
size), the same cancel on Ctrl-C/SIGTERM while a job is awaited.

Two uses (leads/streams.py): the first sync and the reconciliation pass (leads/reconcile.py).
A job's file holds the leads' values when it was taken, so the reconciliation reuses a saved
job only while it is younger than ``stale_after`` whatever its window (``strict``); the first
sync keeps the activities' rule (an old job of a window long committed is reused), because
the change feed re-reads every lead changed since the first sync began.

A STATE is written at once right after a job is created (a killed run reattaches it) and
after each window, and asked for every ``state_every`` rows of a file (default 1,000;
``TAP_MARKETO_LEADS_STATE_EVERY`` sets it): a run killed while it writes rows re-sends at
most that many leads when the writer writes that STATE at once (under 4 KB, or within 5 %
of the record bytes: writer.py, issue 22), else the leads of the window since the last STATE
written (at most the window).
"""

from __future__ import annotations

import os
import signal
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from typing_extensions import override

from tap_marketo_activities.errors import MarketoError
from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.sources.bulk.backfill import BulkBackfill
from tap_marketo_activities.sources.bulk.errors import (
    UNUSABLE,
    ChecksumMismatch,
    DownloadBroken,
    ExportQuotaExceeded,
)
from tap_marketo_activities.sources.bulk.filecheck import FileMismatch
from tap_marketo_activities.sources.bulk.signals import Terminated
from tap_marketo_activities.streams.leads.export import LeadExportJobs, typed_rows

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterator

    from tap_marketo_activities.sources.bulk.job_steps import _JobRef
    from tap_marketo_activities.sources.bulk.jobs import JobStatus
    from tap_marketo_activities.sources.bulk.windows import Window
    from tap_marketo_activities.streams.leads.schema import Field


def state_every() -> int:
    """Rows of a lead file between two STATE messages (1,000; the env var, for tests)."""
    raw = os.environ.get("TAP_MARKETO_LEADS_STATE_EVERY", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1000


@dataclass
class LeadBackfill(BulkBackfill):
    """A ``BulkBackfill`` over lead export jobs; ``records`` yields typed lead rows."""

    fields: list[Field] = field(default_factory=list)
    #: Reuse a saved job only while younger than ``stale_after``, whatever its window.
    strict: bool = False
    #: Writes the tap's STATE; ``True``: at once, whatever its size (writer.py): after a job
    #: is created and after each window; every ``every`` rows as the writer sees fit.
    write_state: Callable[[bool], None] = lambda force: None
    every: int = field(default_factory=state_every)
    #: The earliest snapshot of the files read by this object (None: none read).
    oldest_snapshot: dt.datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [f.name for f in self.fields]
        self.jobs = LeadExportJobs(self.transport, clock=self.server_now, fields=names)
        self.on_job_created = lambda window, export_id: self.write_state(True)

    @override
    def _stale(self, snapshot: dt.datetime | None, window: Window) -> bool:
        if not self.strict:
            return super()._stale(snapshot, window)
        return snapshot is None or self.server_now() - snapshot > self.settings.stale_after

    @override
    def _failed_message(self, job: _JobRef, status: JobStatus) -> str:
        """The leads' own words: no ``backfill_method`` here (a lead export has no REST path)."""
        return (
            f"Lead export {job.export_id} of the {self.label} failed in Marketo for the "
            f"createdAt window {job.window.label()}: "
            f"{status.error_msg or 'Marketo gave no errorMsg'}. The leads of the windows "
            "before it are written and the state keeps where they end: the next run resumes "
            "at this window with a new export job. If it fails again: narrow lead_fields (a "
            "field the export cannot read can fail the job), or give Adobe support the "
            f"export id {job.export_id}."
        )

    @override
    def _window(
        self, window: Window, saved: _JobRef | None
    ) -> Iterator[tuple[dict[str, t.Any], dt.datetime]]:
        """The leads created in ``window``, after the ``rows_done`` an earlier run sent."""
        waited_from = self.stats.wait_s
        with tempfile.TemporaryDirectory(
            prefix="tap-marketo-leads-", dir=self.settings.work_dir
        ) as tmp:
            job, path, size = self._file_for(window, saved, Path(tmp))
            snapshot = job.snapshot
            if snapshot is not None and (
                self.oldest_snapshot is None or snapshot < self.oldest_snapshot
            ):
                self.oldest_snapshot = snapshot
            entry: dict[str, t.Any] = self._bulk_state["job"]
            sent_before, rows = job.rows_done, 0
            for number, row in enumerate(typed_rows(path, self.fields), start=1):
                if number <= sent_before:
                    continue
                job.rows_done = entry["rows_done"] = number
                created = row.get("createdAt")
                if created is None or window.contains(parse_datetime(created)):
                    rows += 1
                    self.stats.rows += 1
                    yield row, window.start
                if number % self.every == 0:
                    self.write_state(False)  # the rows up to this one are written
        self._window_done(window, rows, size, waited_from)
        self.write_state(True)


class BulkPassStopped(MarketoError):
    """A lead export's file kept breaking; the state is saved and the next run resumes."""


#: What stops a lead export pass but not the run's other work (the reconciliation pauses).
PASS_STOPPERS: tuple[type[Exception], ...] = (
    ExportQuotaExceeded,
    BulkPassStopped,
    *(kind for kind in UNUSABLE if issubclass(kind, MarketoError)),
)


def exported_rows(
    backfill: LeadBackfill,
    start: dt.datetime,
    end: dt.datetime,
    *,
    stats: t.Any,
    logger: t.Any,
) -> Iterator[dict[str, t.Any]]:
    """The leads of the windows from ``start`` to ``end``, with the activities' stop rules.

    Ctrl-C or SIGTERM while a job is awaited or downloaded cancels the job this run queued,
    writes the state and exits 130/143; a 1029 quota answer writes the state (its saved job
    is enqueued by the next run) and passes on; a download that keeps breaking, or a file
    that is short or fails its checksum again once its window is exported anew, becomes one
    line saying where the next run resumes. The bulk cost goes into the run summary
    (``stats``: the connection's).
    """
    before = (backfill.stats.jobs, backfill.stats.bytes, backfill.stats.wait_s)
    try:
        for row, _ in backfill.dated_records(start, end):
            yield row
    except (KeyboardInterrupt, Terminated) as exc:
        backfill.write_state(True)
        terminated = isinstance(exc, Terminated)
        code = 128 + (signal.SIGTERM if terminated else signal.SIGINT)
        logger.error(
            "Stopped by %s during the %s; an export job it had queued and Marketo had not "
            "finished was cancelled. The next run resumes at the first unfinished window. "
            "Exiting with %d.",
            "SIGTERM" if terminated else "SIGINT (Ctrl-C)",
            backfill.label,
            code,
        )
        raise SystemExit(code) from None
    except (FileMismatch, ChecksumMismatch) as exc:
        backfill.write_state(True)
        msg = (
            f"{str(exc).rstrip('.')}. The {backfill.label} stopped there, its window exported "
            "anew once already: the leads of the windows before it are written and the next "
            "run resumes at this window."
        )
        raise BulkPassStopped(msg) from None
    except MarketoError:
        backfill.write_state(True)
        raise
    except DownloadBroken as exc:
        backfill.write_state(True)
        msg = (
            f"The {backfill.label} stopped: a bulk export file kept breaking ({exc}); "
            "the next run resumes it."
        )
        raise BulkPassStopped(msg) from None
    finally:
        stats.bulk_jobs += backfill.stats.jobs - before[0]
        stats.bulk_bytes += backfill.stats.bytes - before[1]
        stats.bulk_wait_s += backfill.stats.wait_s - before[2]
