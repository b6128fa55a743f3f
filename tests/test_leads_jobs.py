"""Lead export jobs go through bulk/jobs.py's public calls (no private method of ExportJobs).

Paths are built under the lead prefix only from UUIDs, and Marketo's answers (quota 1029,
other refusals) read exactly as the activities' jobs read them.
"""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid

import pytest

from tap_marketo_activities.sources.bulk.errors import BulkApiError, ExportQuotaExceeded
from tap_marketo_activities.sources.bulk.windows import Window
from tap_marketo_activities.streams.leads.export import LeadExportJobs

NOW = dt.datetime(2024, 4, 12, 14, tzinfo=dt.timezone.utc)


class Recorder:
    """A BulkTransport that records each call and answers from a list."""

    def __init__(self, *answers: dict[str, t.Any]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, t.Any]] = []

    def post_json(self, path: str, body: t.Any = None) -> dict[str, t.Any]:
        self.calls.append(("POST", path, body))
        return self.answers.pop(0)

    def get_json(self, path: str) -> dict[str, t.Any]:
        self.calls.append(("GET", path, None))
        return self.answers.pop(0)

    def download(self, path: str, out: t.BinaryIO, have: int) -> int:
        raise NotImplementedError


def answer(export_id: str, status: str) -> dict[str, t.Any]:
    return {
        "requestId": "r1",
        "success": True,
        "result": [{"exportId": export_id, "status": status}],
    }


def test_lead_jobs_use_the_lead_prefix_and_the_public_create():
    export_id = str(uuid.uuid4())
    transport = Recorder(answer(export_id, "Created"), answer(export_id, "Queued"))
    jobs = LeadExportJobs(transport, clock=lambda: NOW, fields=["id", "email"])
    window = Window(NOW - dt.timedelta(days=31), NOW)
    created = jobs.create(window, ())
    assert created.export_id == export_id
    assert created.status == "created"
    assert jobs.status(export_id).status == "queued"
    (_, create_path, body), (_, status_path, _) = transport.calls
    assert create_path == "/bulk/v1/leads/export/create.json"
    assert body == {
        "format": "CSV",
        "fields": ["id", "email"],
        "filter": {
            "createdAt": {"startAt": "2024-03-12T14:00:00Z", "endAt": "2024-04-12T14:00:00Z"}
        },
    }
    assert status_path == f"/bulk/v1/leads/export/{export_id}/status.json"
    assert jobs.file_path(export_id) == f"/bulk/v1/leads/export/{export_id}/file.json"


def test_a_lead_job_path_is_built_only_from_a_uuid():
    transport = Recorder()
    jobs = LeadExportJobs(transport, clock=lambda: NOW)
    with pytest.raises(BulkApiError, match="not a Marketo export id"):
        jobs.status("../../rest/v1/leads")
    assert transport.calls == []


def test_a_quota_1029_on_a_lead_job_says_when_it_resets_and_that_the_job_is_kept():
    refused = {
        "requestId": "r9",
        "success": False,
        "errors": [{"code": "1029", "message": "Export daily quota 500MB exceeded"}],
    }
    jobs = LeadExportJobs(Recorder(refused), clock=lambda: NOW)
    with pytest.raises(ExportQuotaExceeded) as caught:
        jobs.create(Window(NOW - dt.timedelta(days=1), NOW), ())
    text = str(caught.value)
    assert "lead export create (createdAt" in text
    assert "requestId r9" in text
    assert "resumes the leads export where it stopped" in text
    assert "backfill_method" not in text
