"""What can stop a bulk backfill, each with the message a person sees."""

from __future__ import annotations

from tap_marketo_activities.errors import MarketoError, QuotaExhausted
from tap_marketo_activities.sources.bulk.filecheck import FileMismatch


class BulkApiError(MarketoError):
    """A bulk call answered ``success: false`` with a code we do not handle."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class QueueFull(BulkApiError):
    """1029 "Too many jobs in queue": wait for a slot (shared with other integrations)."""


class ExportQuotaExceeded(QuotaExhausted):
    """1029 "Export daily quota exceeded": stop cleanly, resume after midnight Central."""


class JobFailed(MarketoError):
    """Marketo reports the export job Failed (its ``errorMsg`` is in the message)."""


class JobGone(MarketoError):
    """A job saved in the state is unknown to Marketo, or was cancelled elsewhere."""


class QueueTimeout(JobGone):
    """Marketo's export queue stayed full longer than the backfill waits for a place."""


class ChecksumMismatch(MarketoError):
    """The downloaded file's SHA-256 differs from ``fileChecksum``; nothing was emitted."""


class DownloadBroken(Exception):
    """The connection broke mid-file; the bytes already written are kept for a Range resume."""


class FileNotReady(Exception):
    """``file.json`` answered 404: not Completed yet, or Completed but not yet served."""


#: A job or its file cannot be used: a saved job is created again; a job created in this run
#: gives its partition's backfill up to REST (the other streams never stop for it).
UNUSABLE: tuple[type[Exception], ...] = (
    FileMismatch,
    JobFailed,
    JobGone,
    ChecksumMismatch,
    BulkApiError,
    DownloadBroken,
)
