"""The simulator's bulk activity export endpoints through real HTTP: job lifecycle on the
virtual clock, queue limits, export quota, files with Range and checksums, faults."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
import requests

from tap_marketo_activities.simulator import MarketoSimulator, World

EXPORT = "/bulk/v1/activities/export"
HEADER = [
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
]
WINDOW = {"startAt": "2024-04-12T12:00:00Z", "endAt": "2024-04-12T14:00:00Z"}


class Bulk:
    """A minimal bulk client: bearer token, JSON bodies, envelopes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.token = self.session.get(
            base_url + "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": "simulator",
                "client_secret": "simulator",
            },
            timeout=5,
        ).json()["access_token"]

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.session.request(
            method, self.base_url + path, headers=headers, timeout=10, **kwargs
        )

    def call(self, method: str, path: str, **kwargs) -> dict:
        answer = self.request(method, path, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def create(self, created_at=None, types=(1, 6, 7), **extra) -> str:
        body = {
            "fields": HEADER,
            "format": "CSV",
            "filter": {"createdAt": created_at or WINDOW, "activityTypeIds": list(types)},
            **extra,
        }
        answer = self.call("POST", f"{EXPORT}/create.json", json=body)
        assert answer["success"], answer
        (job,) = answer["result"]
        assert job["status"] == "Created"
        assert job["format"] == "CSV"
        return job["exportId"]

    def enqueue(self, export_id: str) -> dict:
        return self.call("POST", f"{EXPORT}/{export_id}/enqueue.json")

    def status(self, export_id: str) -> dict:
        answer = self.call("GET", f"{EXPORT}/{export_id}/status.json")
        assert answer["success"], answer
        return answer["result"][0]

    def file(self, export_id: str, **headers) -> requests.Response:
        return self.request("GET", f"{EXPORT}/{export_id}/file.json", headers=headers)


@pytest.fixture
def sim():
    with MarketoSimulator(World.seed_afternoon(rows=1000, seed=7)) as simulator:
        yield simulator


@pytest.fixture
def bulk(sim):
    client = Bulk(sim.base_url)
    yield client
    client.session.close()


def error_of(answer: dict) -> tuple[str, str]:
    assert answer["success"] is False, answer
    return answer["errors"][0]["code"], answer["errors"][0]["message"]


def ground_truth(sim, types, start, end, committed_by):
    """GUIDs of rows of ``types`` stamped in [start, end] and committed by ``committed_by``."""
    lo, hi = (
        datetime.fromisoformat(start[:-1] + "+00:00"),
        datetime.fromisoformat(end[:-1] + "+00:00"),
    )
    return sorted(
        r.marketo_guid
        for r in sim.world.rows()
        if r.activity_type_id in types
        and lo <= r.activity_date <= hi
        and r.committed_at <= committed_by
    )


def test_a_job_goes_created_queued_completed_and_serves_the_committed_rows(sim, bulk):
    export_id = bulk.create()
    assert bulk.status(export_id)["status"] == "Created"
    assert bulk.file(export_id).status_code == 404
    queued = bulk.enqueue(export_id)
    assert queued["success"], queued
    status = bulk.status(export_id)
    assert status["status"] == "Completed"
    answer = bulk.file(export_id)
    assert answer.status_code == 200
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert int(answer.headers["Content-Length"]) == status["fileSize"] == len(answer.content)
    assert status["fileChecksum"] == "sha256:" + hashlib.sha256(answer.content).hexdigest()
    rows = list(csv.reader(io.StringIO(answer.content.decode())))
    assert rows[0] == HEADER
    guids = sorted(row[0] for row in rows[1:])
    assert status["numberOfRecords"] == len(guids) > 0
    assert guids == ground_truth(
        sim, {1, 6, 7}, WINDOW["startAt"], WINDOW["endAt"], sim.clock.now()
    )


def test_a_job_holds_what_is_committed_when_it_starts_processing(sim, bulk):
    sim.bulk.processing_s = 120
    export_id = bulk.create(types=(6,))
    bulk.enqueue(export_id)
    started = sim.clock.now()
    sim.clock.advance(minutes=30)  # more of the 13:45 send commits meanwhile
    status = bulk.status(export_id)
    assert status["status"] == "Completed"
    assert status["startedAt"] == started.strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = list(csv.DictReader(io.StringIO(bulk.file(export_id).text)))
    got = sorted(r["marketoGUID"] for r in rows)
    assert got == ground_truth(sim, {6}, WINDOW["startAt"], WINDOW["endAt"], started)
    later = ground_truth(sim, {6}, WINDOW["startAt"], WINDOW["endAt"], sim.clock.now())
    assert len(later) > len(got)  # the late rows are not in this job's file


def test_processing_is_on_the_virtual_clock_with_two_at_once(sim, bulk):
    sim.bulk.processing_s = 600
    ids = [bulk.create() for _ in range(3)]
    for export_id in ids:
        assert bulk.enqueue(export_id)["success"]
    assert [bulk.status(i)["status"] for i in ids] == ["Processing", "Processing", "Queued"]
    sim.clock.advance(seconds=600)
    first, _, third = (bulk.status(i) for i in ids)
    assert first["status"] == "Completed"
    assert third["status"] == "Processing"
    assert third["startedAt"] == first["finishedAt"]
    sim.clock.advance(seconds=600)
    assert bulk.status(ids[2])["status"] == "Completed"


def test_a_full_queue_answers_1029_too_many_jobs_and_the_job_stays_created(sim, bulk):
    sim.bulk.processing_s = 600
    sim.bulk.occupy(sim.clock.now(), 10)
    export_id = bulk.create()
    assert error_of(bulk.enqueue(export_id)) == ("1029", "Too many jobs in queue")
    assert bulk.status(export_id)["status"] == "Created"
    sim.clock.advance(seconds=600)  # two of the other integration's jobs finish
    assert bulk.enqueue(export_id)["success"]
    assert bulk.status(export_id)["status"] == "Queued"


def test_the_export_quota_answers_1029_until_midnight_central(sim, bulk):
    sim.bulk.set_used_bytes(500 * 1024 * 1024, sim.clock.now())
    export_id = bulk.create()
    assert error_of(bulk.enqueue(export_id)) == ("1029", "Export daily quota exceeded")
    sim.clock.set("2024-04-13T06:00:01Z")  # midnight CST
    assert bulk.enqueue(export_id)["success"]


def test_completed_files_count_toward_the_export_quota(sim, bulk):
    export_id = bulk.create()
    bulk.enqueue(export_id)
    size = bulk.status(export_id)["fileSize"]
    assert sim.bulk.used_bytes == size > 0
    sim.bulk.quota_bytes = size
    second = bulk.create()
    assert error_of(bulk.enqueue(second))[0] == "1029"


def test_range_requests_answer_206_with_content_range(sim, bulk):
    export_id = bulk.create()
    bulk.enqueue(export_id)
    whole = bulk.file(export_id).content
    part = bulk.file(export_id, Range="bytes=100-199")
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert part.content == whole[100:200]
    tail = bulk.file(export_id, Range="bytes=1000-")
    assert tail.status_code == 206
    assert tail.content == whole[1000:]


def test_a_broken_download_drops_the_connection_and_range_resumes_it(sim, bulk):
    export_id = bulk.create()
    bulk.enqueue(export_id)
    status = bulk.status(export_id)
    sim.bulk.break_downloads = 1
    received = bytearray()

    def read_all() -> None:
        with bulk.request("GET", f"{EXPORT}/{export_id}/file.json", stream=True) as answer:
            for chunk in answer.iter_content(4096):
                received.extend(chunk)

    with pytest.raises(requests.RequestException):
        read_all()
    assert 0 < len(received) < status["fileSize"]
    rest = bulk.file(export_id, Range=f"bytes={len(received)}-")
    assert rest.status_code == 206
    whole = bytes(received) + rest.content
    assert "sha256:" + hashlib.sha256(whole).hexdigest() == status["fileChecksum"]
    assert sim.counters.injected_by_code["broken_download"] == 1


def test_knobs_corrupt_the_checksum_and_make_a_completed_file_answer_404(sim, bulk):
    sim.bulk.corrupt_checksum = True
    sim.bulk.file_404_times = 2
    export_id = bulk.create()
    bulk.enqueue(export_id)
    assert bulk.status(export_id)["status"] == "Completed"
    assert bulk.file(export_id).status_code == 404
    assert bulk.file(export_id).status_code == 404
    answer = bulk.file(export_id)
    assert answer.status_code == 200
    checksum = bulk.status(export_id)["fileChecksum"]
    assert checksum.startswith("sha256:")
    assert checksum != "sha256:" + hashlib.sha256(answer.content).hexdigest()


@pytest.mark.parametrize("form", ["object", "array"])
def test_attributes_are_json_in_either_documented_form_and_empty_fields_are_null(sim, bulk, form):
    sim.bulk.attributes_form = form
    export_id = bulk.create(types=(1, 22, 46))
    bulk.enqueue(export_id)
    rows = list(csv.DictReader(io.StringIO(bulk.file(export_id).text)))
    by_guid = {r["marketoGUID"]: r for r in sim.expected("activities", type_ids=[1, 22, 46])}
    assert rows
    for row in rows:
        served = by_guid[row["marketoGUID"]]
        attributes = json.loads(row["attributes"])
        if form == "object":
            assert attributes == {a["name"]: a["value"] for a in served["attributes"]}
        else:
            assert attributes == served["attributes"]
        if "campaignId" not in served:
            assert row["campaignId"] == "null"
    assert any(r["primaryAttributeValueId"] == "null" for r in rows)  # types 22 and 46


def test_cancel_list_and_the_cancel_spelling_knob(sim, bulk):
    sim.bulk.processing_s = 600
    first, second = bulk.create(), bulk.create()
    bulk.enqueue(first)
    cancelled = bulk.call("POST", f"{EXPORT}/{first}/cancel.json")
    assert cancelled["result"][0]["status"] == "Cancelled"
    sim.bulk.cancel_spelling = "Canceled"
    assert bulk.call("POST", f"{EXPORT}/{second}/cancel.json")["result"][0]["status"] == (
        "Canceled"
    )
    again = bulk.call("POST", f"{EXPORT}/{second}/cancel.json")
    assert error_of(again)[0] == "1003"
    listed = bulk.call("GET", f"{EXPORT}.json", params={"status": "cancelled,canceled"})
    assert sorted(j["exportId"] for j in listed["result"]) == sorted([first, second])
    page = bulk.call("GET", f"{EXPORT}.json", params={"batchSize": "1"})
    assert len(page["result"]) == 1
    assert page["nextPageToken"]


def test_bad_requests_answer_with_marketo_errors(sim, bulk):
    def create(body):
        return bulk.call("POST", f"{EXPORT}/create.json", json=body)

    too_long = {"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-02-02T00:00:00Z"}
    assert error_of(create({"filter": {"createdAt": too_long}}))[0] == "1003"
    assert error_of(create({"filter": {"createdAt": WINDOW, "activityTypeIds": [37]}}))[0] == (
        "1003"
    )
    assert error_of(create({"format": "CSV"}))[0] == "1003"
    unknown = "00000000-0000-4000-8000-000000000000"
    assert error_of(bulk.call("GET", f"{EXPORT}/{unknown}/status.json"))[0] == "1003"
    anonymous = requests.post(sim.base_url + f"{EXPORT}/create.json", json={}, timeout=5)
    assert error_of(anonymous.json())[0] == "601"
    assert sim.counters.calls_by_path[f"{EXPORT}/create.json"] == 4


def test_a_lead_export_answers_1035_for_updated_at_and_makes_a_job_by_created_at(sim, bulk):
    """updatedAt answers 1035 unless the instance has it (Stitch's probe); createdAt a job."""
    leads = "/bulk/v1/leads/export/create.json"
    probe = {
        "format": "CSV",
        "fields": ["id"],
        "filter": {"updatedAt": {"startAt": WINDOW["startAt"], "endAt": WINDOW["endAt"]}},
    }
    assert error_of(bulk.call("POST", leads, json=probe)) == (
        "1035",
        "Unsupported filter type for target subscription: updatedAt",
    )
    assert sim.bulk.statuses() == {}
    unknown = {"format": "CSV", "fields": ["nickname"], "filter": {"createdAt": WINDOW}}
    assert error_of(bulk.call("POST", leads, json=unknown))[0] == "1003"
    by_creation = {"format": "CSV", "fields": ["id"], "filter": {"createdAt": WINDOW}}
    created = bulk.call("POST", leads, json=by_creation)
    assert created["success"], created
    assert list(sim.bulk.statuses().values()) == ["Created"]
    assert error_of(bulk.call("POST", leads, data=b"{not json"))[0] == "609"
    assert error_of(bulk.call("GET", leads))[0] == "610"
    assert sim.counters.calls_by_path[leads] == 5


def test_bulk_calls_count_toward_the_daily_call_quota(sim, bulk):
    sim.set_quota(sim.daily_quota)
    assert error_of(bulk.call("POST", f"{EXPORT}/create.json", json={}))[0] == "607"


def test_forgotten_jobs_are_gone(sim, bulk):
    export_id = bulk.create()
    sim.bulk.forget(export_id)
    assert error_of(bulk.call("GET", f"{EXPORT}/{export_id}/status.json"))[0] == "1003"
    assert bulk.file(export_id).status_code == 404


def test_stop_removes_the_files(bulk, sim):
    export_id = bulk.create()
    bulk.enqueue(export_id)
    path = sim.bulk.jobs[export_id].path
    assert path is not None
    assert path.exists()
    sim.stop()
    assert not path.exists()


def test_jobs_are_listed_for_seven_days(sim, bulk):
    export_id = bulk.create()
    assert [j["exportId"] for j in bulk.call("GET", f"{EXPORT}.json")["result"]] == [export_id]
    sim.clock.advance(timedelta(days=8))
    assert bulk.call("GET", f"{EXPORT}.json")["result"] == []


def test_the_command_line_sets_the_bulk_knobs():
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_marketo_activities.simulator",
            "--scenario",
            "seed-afternoon",
            "--bulk-processing-seconds",
            "600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        client = Bulk(server.stdout.readline().strip())
        export_id = client.create()
        client.enqueue(export_id)
        assert client.status(export_id)["status"] == "Processing"  # 600 s on a frozen clock
        client.session.close()
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert server.returncode == 0
