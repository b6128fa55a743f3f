"""What a downloaded export file holds, checked against its job's status before any row is sent.

A checksum proves the bytes are the bytes Marketo hashed, not that Marketo wrote the whole
export: a file that ends early with a matching checksum would lose rows silently. So once the
checksum matches, one pass over the file (the csv module's C parser, no records built) counts
its data rows and compares them with the status's ``numberOfRecords`` (and its size with
``fileSize``); a mismatch is ``FileMismatch`` and the window is exported again. The same pass
finds a field longer than the csv module's default limit (128 KB: the limit is raised to the
file's size, so any field the file can hold is read) and counts bytes that are not UTF-8, so
they can be reported with the window and the file kept, never silently replaced.
"""

from __future__ import annotations

import csv
import sys
import typing as t
from dataclasses import dataclass

from tap_marketo_activities.errors import MarketoError

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class FileMismatch(MarketoError):
    """The file's row count or size differs from what the job's status announced."""


@dataclass(frozen=True)
class FileFacts:
    rows: int
    size: int
    #: Bytes that are not UTF-8 (each read as U+FFFD) and the data rows holding them.
    bad_bytes: int = 0
    bad_rows: int = 0


def allow_fields_up_to(size: int) -> None:
    """Let the csv module read a field as long as the whole file (its default is 128 KB)."""
    wanted = min(max(size, 1) + 1, sys.maxsize)
    if csv.field_size_limit() < wanted:
        csv.field_size_limit(wanted)


class _Decoded:
    """Text lines of a binary file, counting the bytes that are not UTF-8."""

    def __init__(self, source: t.BinaryIO) -> None:
        self.source = source
        self.bad_bytes = 0
        self.line_bad = False

    def __iter__(self) -> Iterator[str]:
        for raw in self.source:  # UTF-8 never holds byte 0x0A inside a character
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="replace")
                kept = raw.decode("utf-8", errors="ignore").encode("utf-8")
                self.bad_bytes += len(raw) - len(kept)
                self.line_bad = True
            yield text.replace("\x00", "") if "\x00" in text else text


def inspect(path: Path) -> FileFacts:
    """Count the data rows of the export at ``path`` (as ``csvfile`` numbers them)."""
    size = path.stat().st_size
    allow_fields_up_to(size)
    rows = bad_rows = 0
    with path.open("rb") as source:
        lines = _Decoded(source)
        reader = csv.reader(lines)
        if next(reader, None) is None:
            return FileFacts(0, size)
        lines.line_bad = False  # the header's bytes count, its row does not
        for cells in reader:
            if cells:
                rows += 1
                bad_rows += lines.line_bad
            lines.line_bad = False
    return FileFacts(rows, size, lines.bad_bytes, bad_rows)


def check(facts: FileFacts, *, records: int | None, file_size: int | None, what: str) -> None:
    """Raise ``FileMismatch`` when the file is not what the job's status announced."""
    if file_size is not None and facts.size != file_size:
        msg = (
            f"{what}: the file has {facts.size} bytes, the job's status announced {file_size}; "
            "nothing from it was emitted"
        )
        raise FileMismatch(msg)
    if records is not None and facts.rows != records:
        msg = (
            f"{what}: the file holds {facts.rows} rows, the job's status announced {records}; "
            "nothing from it was emitted"
        )
        raise FileMismatch(msg)
