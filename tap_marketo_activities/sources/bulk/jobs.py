"""Export jobs: create, enqueue, status, cancel, and what their answers mean.

Marketo writes a job's status in several spellings ("Cancelled" in one sample, "Canceled" in
the status list, lowercase in the SPEC's list filter), so statuses are compared
case-insensitively and both cancel spellings are one status here.

Both queue limits answer code 1029 and differ only by their message: "Too many jobs in queue"
(wait for a place; the 10 places are shared with every integration of the instance) and
"Export daily quota exceeded" (500 MB a day; stop until midnight Central).
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

from tap_marketo_activities.sources.bulk.download import RETRY_ADVICE
from tap_marketo_activities.sources.bulk.errors import BulkApiError, ExportQuotaExceeded, QueueFull
from tap_marketo_activities.sources.bulk.state_check import valid_export_id
from tap_marketo_activities.wire.limits import quota_reset_text

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from tap_marketo_activities.sources.bulk.transport import BulkTransport
    from tap_marketo_activities.sources.bulk.windows import Window

EXPORT = "/bulk/v1/activities/export"
FIELDS = (
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
)
CREATED, QUEUED, PROCESSING = "created", "queued", "processing"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
PENDING = frozenset({CREATED, QUEUED, PROCESSING})
KNOWN = PENDING | {COMPLETED, FAILED, CANCELLED}


def normal_status(text: t.Any) -> str:
    """Marketo's status in lowercase, with "canceled" spelled "cancelled"."""
    status = str(text or "").strip().lower()
    return CANCELLED if status == "canceled" else status


@dataclass(frozen=True)
class JobStatus:
    export_id: str
    status: str
    records: int | None = None
    file_size: int | None = None
    checksum: str | None = None
    error_msg: str | None = None
    #: The earliest of the job's ``createdAt``, ``queuedAt``, ``startedAt`` and
    #: ``finishedAt`` that parse. Which moment fixes the file's snapshot is UNVERIFIED, but
    #: no snapshot can be taken before the job exists, so every row committed before this
    #: moment is in the file; rows committed after it may not be.
    snapshot_floor: dt.datetime | None = None


STAMPS = ("createdAt", "queuedAt", "startedAt", "finishedAt")


def snapshot_floor(item: t.Mapping[str, t.Any]) -> dt.datetime | None:
    """The earliest readable job timestamp of a status item (see ``JobStatus``)."""
    moments = []
    for name in STAMPS:
        raw = item.get(name)
        if not isinstance(raw, str):
            continue
        try:
            moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        moments.append(moment)
    return min(moments) if moments else None


def _int_or_none(value: t.Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class ExportJobs:
    """The activity export endpoints, through a ``BulkTransport``.

    Another export kind (leads) shares every call but ``create`` by setting ``export_path``
    and building its own body for :meth:`create_job`.
    """

    #: The endpoints' prefix: ``{export_path}/create.json``, ``{export_path}/{id}/status.json``.
    export_path: t.ClassVar[str] = EXPORT
    #: What the 1029 quota message tells a person to do besides waiting.
    quota_advice: t.ClassVar[str] = (
        "The next run resumes this backfill where it stopped; set backfill_method to rest to "
        "read through REST instead."
    )

    #: What a file without a usable checksum tells a person to do.
    file_advice: t.ClassVar[str] = RETRY_ADVICE

    def __init__(self, transport: BulkTransport, *, clock: t.Callable[[], dt.datetime]) -> None:
        self.transport = transport
        self._clock = clock  # Marketo's clock, for when the export quota resets

    def create(self, window: Window, type_ids: Sequence[int]) -> JobStatus:
        body = {
            "format": "CSV",
            "fields": list(FIELDS),
            "filter": {
                "createdAt": window.created_at_filter(),
                "activityTypeIds": sorted(type_ids),
            },
        }
        return self.create_job(body, "create")

    def create_job(self, body: dict[str, t.Any], what: str) -> JobStatus:
        """``POST {export_path}/create.json`` with ``body``; the new job, or the error.

        ``what`` names the call in error messages (a quota 1029 raises
        ``ExportQuotaExceeded``, a full queue ``QueueFull``, other codes ``BulkApiError``).
        """
        return self._status(self.transport.post_json(f"{self.export_path}/create.json", body), what)

    def enqueue(self, export_id: str) -> JobStatus:
        answer = self.transport.post_json(job_path(export_id, "enqueue", self.export_path))
        return self._status(answer, f"enqueue of export {export_id}")

    def status(self, export_id: str) -> JobStatus:
        answer = self.transport.get_json(job_path(export_id, "status", self.export_path))
        return self._status(answer, f"status of export {export_id}")

    def cancel(self, export_id: str) -> JobStatus:
        answer = self.transport.post_json(job_path(export_id, "cancel", self.export_path))
        return self._status(answer, f"cancel of export {export_id}")

    def file_path(self, export_id: str) -> str:
        return job_path(export_id, "file", self.export_path)

    def _status(self, envelope: dict[str, t.Any], what: str) -> JobStatus:
        request_id = envelope.get("requestId", "none")
        if not envelope.get("success"):
            errors = envelope.get("errors") or [{}]
            code = str(errors[0].get("code", "unknown"))
            message = str(errors[0].get("message", "no message"))
            if code == "1029" and "quota" in message.lower():
                text = (
                    f"Marketo refused the bulk {what}: 1029 {message} (requestId {request_id}). "
                    f"Bulk exports may total 500 MB a day per instance. "
                    f"{quota_reset_text(self._clock())} {self.quota_advice}"
                )
                raise ExportQuotaExceeded(text)
            if code == "1029":
                raise QueueFull(f"1029 {message} (requestId {request_id})", code)
            text = f"Marketo refused the bulk {what}: {code} {message} (requestId {request_id})."
            raise BulkApiError(text, code)
        result = envelope.get("result") or []
        item = result[0] if result and isinstance(result[0], dict) else {}
        export_id = item.get("exportId")
        status = normal_status(item.get("status"))
        if not valid_export_id(export_id) or status not in KNOWN:
            text = (
                f"Marketo answered the bulk {what} without a usable exportId or status "
                f"({item.get('status')!r}) (requestId {request_id})."
            )
            raise BulkApiError(text, "malformed")
        return JobStatus(
            export_id=str(export_id),
            status=status,
            records=_int_or_none(item.get("numberOfRecords")),
            file_size=_int_or_none(item.get("fileSize")),
            checksum=item.get("fileChecksum"),
            error_msg=item.get("errorMsg"),
            snapshot_floor=snapshot_floor(item),
        )


def job_path(export_id: str, action: str, prefix: str = EXPORT) -> str:
    """The path of one job's endpoint, built only from an id that is a UUID.

    The id comes from the state (input a person can edit) or from Marketo; one holding
    ``../``, ``%2F`` or ``?`` must never steer a request (and its bearer token) elsewhere.
    """
    if not valid_export_id(export_id):
        msg = f"{str(export_id)[:60]!r} is not a Marketo export id (a UUID); no call was made."
        raise BulkApiError(msg, "bad-export-id")
    return f"{prefix}/{export_id}/{action}.json"


def poll_waits(initial_s: float, factor: float, max_s: float) -> t.Iterator[float]:
    """Seconds between status polls: ``initial_s``, growing by ``factor``, capped at ``max_s``.

    Marketo updates a job's status at most once a minute and suggests polling every 5
    minutes; starting shorter keeps small jobs quick without hammering the API on big ones.
    """
    wait = initial_s
    while True:
        yield wait
        wait = min(max_s, wait * factor)
