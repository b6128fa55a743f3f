"""First sync of the leads: bulk lead export by ``createdAt`` windows, through the bulk machinery.

The job calls, the transport, the download (resumed with Range, SHA-256 checked before a row
is read) and the window plan are the activities backfill's (``bulk/``); only the endpoint
prefix and the job body differ. Lead exports share Marketo's queue (10 jobs, 2 running) and
the 500 MB daily quota with the activities backfill: a 1029 stops the run with the same
message, and the next run resumes at the first window not yet written.
"""

from __future__ import annotations

import csv
import tempfile
import time
import typing as t
from pathlib import Path

from typing_extensions import override

from tap_marketo_activities.sources.bulk.download import fetch, verify
from tap_marketo_activities.sources.bulk.errors import FileNotReady, JobFailed
from tap_marketo_activities.sources.bulk.jobs import (
    COMPLETED,
    PENDING,
    ExportJobs,
    JobStatus,
    poll_waits,
)
from tap_marketo_activities.streams.leads.schema import conform

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterator, Sequence

    from tap_marketo_activities.sources.bulk.transport import BulkTransport
    from tap_marketo_activities.sources.bulk.windows import Window
    from tap_marketo_activities.streams.leads.schema import Field

LEAD_EXPORT = "/bulk/v1/leads/export"
MAX_BREAKS = 5
FILE_WAITS = 5


class LeadExportJobs(ExportJobs):
    """The lead export endpoints: the activity jobs' calls, answers and errors, another prefix.

    ``create(window, ...)`` makes a lead job of ``fields`` filtered by ``kind`` (createdAt or
    updatedAt), so the activities' ``BulkBackfill`` runs lead jobs unchanged (``backfill.py``).
    """

    export_path = LEAD_EXPORT
    quota_advice = (
        "The next run resumes the leads export where it stopped (its job is saved in the state)."
    )
    file_advice = (
        "Run the tap again: it resumes at this window. If it persists, give Adobe support the "
        "export id."
    )

    def __init__(
        self,
        transport: BulkTransport,
        *,
        clock: Callable[[], dt.datetime],
        fields: Sequence[str] = ("id",),
        kind: str = "createdAt",
    ) -> None:
        super().__init__(transport, clock=clock)
        self.fields = list(fields)
        self.kind = kind

    @override
    def create(self, window: Window, type_ids: Sequence[int] = ()) -> JobStatus:
        """A job for the leads whose ``kind`` falls in ``window`` (no activity types)."""
        del type_ids
        return self.create_leads(window, self.fields, self.kind)

    def create_leads(self, window: Window, fields: Sequence[str], kind: str) -> JobStatus:
        """A job for leads whose ``kind`` (createdAt or updatedAt) falls in ``window``."""
        body = {
            "format": "CSV",
            "fields": list(fields),
            "filter": {kind: window.created_at_filter()},
        }
        return self.create_job(body, f"lead export create ({kind} {window.label()})")


def export_window(
    jobs: LeadExportJobs,
    transport: BulkTransport,
    window: Window,
    fields: list[Field],
    *,
    kind: str = "createdAt",
    poll_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, t.Any]]:
    """Every lead of one window, typed, after its file has downloaded and passed its checksum."""
    job = jobs.create_leads(window, [field.name for field in fields], kind)
    job = jobs.enqueue(job.export_id)
    waits = poll_waits(poll_s, 1.5, 300)
    while job.status in PENDING:
        sleep(next(waits))
        job = jobs.status(job.export_id)
    if job.status != COMPLETED:
        msg = (
            f"Lead export {job.export_id} ({kind} {window.label()}) ended {job.status}: "
            f"{job.error_msg or 'no reason given'}. The next run tries this window again."
        )
        raise JobFailed(msg)
    with tempfile.TemporaryDirectory(prefix="tap-marketo-leads-") as folder:
        dest = Path(folder) / f"{job.export_id}.csv"
        for attempt in range(FILE_WAITS):
            try:
                fetch(transport, jobs.file_path(job.export_id), dest, max_breaks=MAX_BREAKS)
                break
            except FileNotReady:
                if attempt == FILE_WAITS - 1:
                    raise
                sleep(poll_s)
        verify(dest, job.checksum, what=f"lead export {job.export_id}", advice=jobs.file_advice)
        yield from typed_rows(dest, fields)


def typed_rows(path: Path, fields: list[Field]) -> Iterator[dict[str, t.Any]]:
    """The CSV's rows as typed records (``null`` and empty cells are None, NULs dropped)."""
    types = {field.name: field.data_type for field in fields}
    # Bytes that are not UTF-8 read as U+FFFD: filecheck has counted and reported them.
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        lines = (line.replace("\0", "") for line in handle)
        for row in csv.DictReader(lines):
            yield {
                name: conform(None if row.get(name) == "null" else row.get(name), kind)
                for name, kind in types.items()
            }
