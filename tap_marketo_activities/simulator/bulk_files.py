"""The bulk export jobs' records and files: what a job is, how its file is written and served.

``bulk.py`` runs the endpoints (queue, quota, status); this module holds the job record
(``Job``), the answer for ``file.json`` (``FileAnswer``) and ``ExportFiles``, the part of
``bulk.BulkExports`` that writes a job's CSV file (activities or leads) to disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import catalog as cat
from . import leads as lead_db
from .render import render_activity

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from .world import World

_WRITE_BLOCK = 5000


class ChecksumKnobs(Protocol):
    """The knobs that make a status report a wrong checksum (``bulk.BulkExports`` has them)."""

    corrupt_checksum: bool
    bad_checksum_ids: set[str]


@dataclass
class Job:
    export_id: str
    owner: str
    created_at: datetime
    start_ts: int
    end_ts: int
    type_ids: frozenset[int]
    fields: tuple[str, ...]
    status: str = "Created"
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    records: int | None = None
    size: int | None = None
    checksum: str | None = None
    path: Path | None = None
    error: str | None = None
    #: a lead export's filter: ("createdAt" or "updatedAt", start, end) in epoch seconds
    lead_filter: tuple[str, int, int] | None = None
    written: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_json(self, sim_bulk: ChecksumKnobs) -> dict[str, Any]:
        body: dict[str, Any] = {
            "exportId": self.export_id,
            "format": "CSV",
            "status": self.status,
            "createdAt": _iso(self.created_at),
        }
        for name, moment in (
            ("queuedAt", self.queued_at),
            ("startedAt", self.started_at),
            ("finishedAt", self.finished_at),
        ):
            if moment is not None:
                body[name] = _iso(moment)
        if self.status == "Completed":
            body["numberOfRecords"] = self.records
            body["fileSize"] = self.size
            checksum = self.checksum or ""
            if sim_bulk.corrupt_checksum or self.export_id in sim_bulk.bad_checksum_ids:
                checksum = "sha256:" + hashlib.sha256(checksum.encode()).hexdigest()
            body["fileChecksum"] = checksum
        if self.error:
            body["errorMsg"] = self.error
        return body


@dataclass
class FileAnswer:
    """What the server sends for ``file.json``: a byte range of a file on disk, or a 404."""

    status: int
    path: Path | None = None
    start: int = 0
    end: int = 0  # inclusive
    total: int = 0
    break_after: int | None = None  # bytes to send before dropping the connection

    @property
    def length(self) -> int:
        return self.end - self.start + 1 if self.path is not None else 0


class ExportFiles:
    """Writes a job's file (see the module docstring); the knobs are ``BulkExports``'s."""

    attributes_form: str
    short_rows: int
    invalid_utf8_rows: int
    big_field_chars: int

    def _write(self, world: World, job: Job, at: datetime, path: Path) -> None:
        try:
            job.records, job.size, job.checksum = self._write_file(world, job, at, path)
            job.path = path
        except OSError:  # the simulator stopped and removed its directory meanwhile
            return
        finally:
            job.written.set()

    def _write_file(self, world: World, job: Job, at: datetime, path: Path) -> tuple[int, int, str]:
        if job.lead_filter is not None:
            return self._write_leads(world, job, at, path)
        digest = hashlib.sha256()
        count = 0
        types = job.type_ids or frozenset(cat.DEFAULT_ACTIVITY_TYPE_IDS)
        visible = world.visible_end(at)
        first = world.start_position(job.start_ts)  # nothing committed earlier is stamped later
        with path.open("wb") as out:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(job.fields)
            rows = [
                i
                for i in range(first, visible)
                if world.type_id[i] in types and job.start_ts <= world.event[i] <= job.end_ts
            ]
            announced = len(rows)
            if self.short_rows:
                rows = rows[: max(0, len(rows) - self.short_rows)]
            for i in rows:
                cells = self._cells(world, i, job.fields)
                if "primaryAttributeValue" in job.fields:
                    col = job.fields.index("primaryAttributeValue")
                    if count < self.invalid_utf8_rows:
                        cells[col] += "\udcff"  # written as the byte 0xFF
                    if count == 0 and self.big_field_chars:
                        cells[col] = "x" * self.big_field_chars
                writer.writerow(cells)
                count += 1
                if count % _WRITE_BLOCK == 0:
                    data = buffer.getvalue().encode("utf-8", "surrogateescape")
                    out.write(data)
                    digest.update(data)
                    buffer.seek(0)
                    buffer.truncate()
            data = buffer.getvalue().encode("utf-8", "surrogateescape")
            out.write(data)
            digest.update(data)
        return announced, path.stat().st_size, "sha256:" + digest.hexdigest()

    def _write_leads(
        self, world: World, job: Job, at: datetime, path: Path
    ) -> tuple[int, int, str]:
        assert job.lead_filter is not None
        rows = lead_db.export_rows(world, at, job.lead_filter, job.fields)
        announced = len(rows)
        if self.short_rows:  # the file lacks its last rows; numberOfRecords counts them
            rows = rows[: max(0, len(rows) - self.short_rows)]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(job.fields)
        for cells in rows:
            writer.writerow(cells)
        data = buffer.getvalue().encode()
        path.write_bytes(data)
        return announced, len(data), "sha256:" + hashlib.sha256(data).hexdigest()

    def _cells(self, world: World, i: int, fields: tuple[str, ...]) -> list[str]:
        row = render_activity(world, i)
        cells: list[str] = []
        for name in fields:
            if name == "attributes":
                attributes = row.get("attributes") or []
                if not attributes:
                    cells.append("null")
                elif self.attributes_form == "array":
                    cells.append(json.dumps(attributes, ensure_ascii=False))
                else:
                    obj = {a["name"]: a["value"] for a in attributes}
                    cells.append(json.dumps(obj, ensure_ascii=False))
            elif name == "actionResult":
                cells.append("succeeded")
            else:
                value = row.get(name)
                cells.append("null" if value is None else str(value))
        return cells


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
