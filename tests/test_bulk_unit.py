"""Pure pieces of the bulk path: window planning, statuses, poll intervals, envelope errors,
CSV parsing into the REST record shape, checksum verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json

import pytest

from tap_marketo_activities.errors import MalformedResponse
from tap_marketo_activities.records import activity_record
from tap_marketo_activities.sources.bulk import backfill_end, plan_windows
from tap_marketo_activities.sources.bulk.csvfile import rest_rows
from tap_marketo_activities.sources.bulk.download import verify
from tap_marketo_activities.sources.bulk.errors import (
    BulkApiError,
    ChecksumMismatch,
    ExportQuotaExceeded,
    QueueFull,
)
from tap_marketo_activities.sources.bulk.jobs import ExportJobs, normal_status, poll_waits
from tap_marketo_activities.sync.handover import wants_bulk

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)
TYPE_NAMES = {1: "Visit Webpage", 6: "Send Email"}


# ----------------------------------------------------------------------------- windows
def test_windows_cover_the_span_in_at_most_31_days_each_without_gaps():
    end = T0 + dt.timedelta(days=70, hours=5)
    windows = plan_windows(T0, end)
    assert len(windows) == 3
    assert windows[0].start == T0  # exact: rows before the start are not ours
    assert windows[-1].end == end.replace(microsecond=0)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
    for window in windows:
        created = window.created_at_filter()
        start = dt.datetime.fromisoformat(created["startAt"].replace("Z", "+00:00"))
        stop = dt.datetime.fromisoformat(created["endAt"].replace("Z", "+00:00"))
        assert stop - start <= dt.timedelta(days=31)
        assert "." not in created["startAt"]  # ISO 8601 without milliseconds
    assert windows[0].created_at_filter()["startAt"] == "2024-01-01T12:00:00Z"


def test_no_window_when_the_start_is_not_before_the_end():
    assert plan_windows(T0, T0) == []
    assert plan_windows(T0, T0 - dt.timedelta(days=1)) == []


def test_a_window_holds_its_start_but_not_its_end():
    (window,) = plan_windows(T0, T0 + dt.timedelta(days=1))
    assert window.contains(T0)
    assert not window.contains(window.end)
    assert not window.contains(T0 - dt.timedelta(microseconds=1))


def test_windows_longer_than_marketo_allows_are_refused():
    with pytest.raises(ValueError, match="at most 31 days"):
        plan_windows(T0, T0 + dt.timedelta(days=90), dt.timedelta(days=32))


def test_the_backfill_ends_a_settle_margin_before_the_run_start():
    started = dt.datetime(2024, 4, 12, 14, 0, 7, 900_000, tzinfo=UTC)
    assert backfill_end(started, dt.timedelta(minutes=15)) == dt.datetime(
        2024, 4, 12, 13, 45, 7, tzinfo=UTC
    )


# ----------------------------------------------------------------------------- jobs
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("Completed", "completed"),
        ("CANCELLED", "cancelled"),
        ("Canceled", "cancelled"),
        ("processing", "processing"),
        (" Queued ", "queued"),
    ],
)
def test_statuses_are_read_case_insensitively_in_both_cancel_spellings(raw, status):
    assert normal_status(raw) == status


def test_polls_start_sane_and_grow_to_a_cap():
    waits = poll_waits(30, 1.5, 300)
    got = [next(waits) for _ in range(9)]
    assert got[:3] == [30, 45, 67.5]
    assert got[-1] == 300
    assert got == sorted(got)


class _Answers:
    """A transport that answers every call with the same envelope (envelope reading only)."""

    def __init__(self, envelope):
        self.envelope = envelope
        self.calls = []

    def post_json(self, path, body=None):
        self.calls.append(path)
        return self.envelope

    def get_json(self, path, params=None):
        self.calls.append(path)
        return self.envelope

    def download(self, path, dest, start_byte):
        raise AssertionError("not used")


def _refusal(code, message):
    return {
        "requestId": "e3b#18e",
        "success": False,
        "errors": [{"code": code, "message": message}],
    }


ID = "0f8e2d4c-6a1b-4c3d-9e8f-7a6b5c4d3e2f"


def test_1029_quota_says_when_the_quota_resets_and_how_to_resume():
    now = dt.datetime(2024, 4, 12, 14, 0, tzinfo=UTC)
    jobs = ExportJobs(_Answers(_refusal("1029", "Export daily quota exceeded")), clock=lambda: now)
    with pytest.raises(ExportQuotaExceeded) as caught:
        jobs.enqueue("0f8e2d4c-6a1b-4c3d-9e8f-7a6b5c4d3e2f")
    text = str(caught.value)
    assert text.startswith(
        f"Marketo refused the bulk enqueue of export {ID}: 1029 Export daily quota exceeded "
        "(requestId e3b#18e)."
    )
    assert "midnight US Central, 2024-04-13T05:00:00Z (in 15 h 0 min)" in text
    assert "The next run resumes this backfill where it stopped" in text


def test_1029_queue_full_and_other_codes_are_told_apart():
    now = dt.datetime(2024, 4, 12, 14, 0, tzinfo=UTC)
    full = ExportJobs(_Answers(_refusal("1029", "Too many jobs in queue")), clock=lambda: now)
    with pytest.raises(QueueFull, match="1029 Too many jobs in queue"):
        full.enqueue("0f8e2d4c-6a1b-4c3d-9e8f-7a6b5c4d3e2f")
    other = ExportJobs(_Answers(_refusal("1003", "Invalid data")), clock=lambda: now)
    with pytest.raises(BulkApiError) as caught:
        other.status("0f8e2d4c-6a1b-4c3d-9e8f-7a6b5c4d3e2f")
    assert str(caught.value) == (
        f"Marketo refused the bulk status of export {ID}: 1003 Invalid data (requestId e3b#18e)."
    )


def test_an_answer_without_a_known_status_is_refused():
    now = dt.datetime(2024, 4, 12, 14, 0, tzinfo=UTC)
    odd = {"requestId": "r1", "success": True, "result": [{"exportId": "x", "status": "Odd"}]}
    with pytest.raises(BulkApiError, match="without a usable exportId or status"):
        ExportJobs(_Answers(odd), clock=lambda: now).status(ID)


@pytest.mark.parametrize("export_id", ["../../identity/oauth/token", ID + "?x=1", "a%2Fb", ""])
def test_a_job_path_is_built_only_from_a_marketo_export_id(export_id):
    """No call is made for an id that could steer the request (and its token) elsewhere."""
    answers = _Answers({"success": True, "result": []})
    jobs = ExportJobs(answers, clock=lambda: dt.datetime(2024, 4, 12, tzinfo=UTC))
    for call in (jobs.status, jobs.enqueue, jobs.cancel, jobs.file_path):
        with pytest.raises(BulkApiError, match="is not a Marketo export id"):
            call(export_id)
    assert answers.calls == []


# ----------------------------------------------------------------------------- CSV
HEADER = (
    "marketoGUID,leadId,activityDate,activityTypeId,campaignId,primaryAttributeValueId,"
    "primaryAttributeValue,attributes\n"
)


def _rest_record(row):
    return activity_record(row, type_names=TYPE_NAMES, request_id="test")


def test_csv_rows_become_exactly_the_rest_records(tmp_path):
    attributes = [
        {"name": "Client IP Address", "value": "10.0.0.1"},
        {"name": "Is Mobile Device", "value": False},
        {"name": "Step ID", "value": 12},
        {"name": "Query Parameters", "value": 'line one\nline two, "quoted"'},
    ]
    obj = {a["name"]: a["value"] for a in attributes}
    lines = [
        HEADER,
        'g-1,1001,2024-04-12T13:45:00Z,1,null,101,www.example.com/pricing,"'
        + json.dumps(obj).replace('"', '""')
        + '"\n',
        'g-2,1002,2024-04-12T13:46:00+0000,6,2001,4001,"Nurture EMEA.Email 4001, ünïcödé 🙂",'
        + '"'
        + json.dumps(attributes, ensure_ascii=False).replace('"', '""')
        + '"\n',
        "g-3,1003,2024-04-12T13:47:00Z,1,null,null,null,null\n",
        "g-4,10\x0004,2024-04-12T13:48:00Z,1,null,null,Home\x00,[]\n",
    ]
    path = tmp_path / "export.csv"
    path.write_text("".join(lines), encoding="utf-8")
    got = [_rest_record(row) for row in rest_rows(path, what="test")]
    rest = [
        {
            "marketoGUID": "g-1",
            "leadId": 1001,
            "activityDate": "2024-04-12T13:45:00Z",
            "activityTypeId": 1,
            "primaryAttributeValueId": 101,
            "primaryAttributeValue": "www.example.com/pricing",
            "attributes": attributes,
        },
        {
            "marketoGUID": "g-2",
            "leadId": 1002,
            "activityDate": "2024-04-12T13:46:00+0000",
            "activityTypeId": 6,
            "campaignId": 2001,
            "primaryAttributeValueId": 4001,
            "primaryAttributeValue": "Nurture EMEA.Email 4001, ünïcödé 🙂",
            "attributes": attributes,
        },
        {
            "marketoGUID": "g-3",
            "leadId": 1003,
            "activityDate": "2024-04-12T13:47:00Z",
            "activityTypeId": 1,
            "attributes": [],
        },
        {
            "marketoGUID": "g-4",
            "leadId": 1004,
            "activityDate": "2024-04-12T13:48:00Z",
            "activityTypeId": 1,
            "primaryAttributeValue": "Home",
            "attributes": [],
        },
    ]
    assert got == [_rest_record(row) for row in rest]
    assert got[0]["attributes"]["Query Parameters"] == 'line one\nline two, "quoted"'
    assert got[0]["attributes"]["Step ID"] == 12  # numbers stay numbers
    assert got[2]["campaignId"] is None
    assert got[2]["primaryAttributeValue"] is None


def test_a_row_with_the_wrong_number_of_columns_names_the_record(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(HEADER + "g-1,1001,2024-04-12T13:45:00Z,1\n", encoding="utf-8")
    with pytest.raises(MalformedResponse) as caught:
        list(rest_rows(path, what="bulk export abc"))
    assert str(caught.value) == "bulk export abc, record 1: 4 columns where the header has 8"


def test_a_header_without_the_key_is_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("leadId,activityDate,activityTypeId\n1,2024-04-12T13:45:00Z,1\n")
    with pytest.raises(MalformedResponse, match="header lacks marketoGUID"):
        list(rest_rows(path, what="bulk export abc"))


def test_attributes_that_are_not_json_are_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(HEADER + "g-1,1,2024-04-12T13:45:00Z,1,null,null,null,{oops\n")
    with pytest.raises(MalformedResponse, match="record 1: attributes is not JSON"):
        list(rest_rows(path, what="x"))


def test_an_empty_file_has_no_rows(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("")
    assert list(rest_rows(path, what="x")) == []
    path.write_text(HEADER)
    assert list(rest_rows(path, what="x")) == []


# ----------------------------------------------------------------------------- checksum
def test_verify_accepts_the_right_sha256_and_names_both_on_a_mismatch(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(b"marketoGUID\nabc\n")
    digest = hashlib.sha256(b"marketoGUID\nabc\n").hexdigest()
    verify(path, f"sha256:{digest}", what="bulk export abc")
    verify(path, f"SHA256:{digest.upper()}", what="bulk export abc")
    with pytest.raises(ChecksumMismatch) as caught:
        verify(path, "sha256:" + "0" * 64, what="bulk export abc")
    assert str(caught.value) == (
        f"bulk export abc: the downloaded file's SHA-256 is {digest}, but Marketo's "
        f"fileChecksum is {'0' * 64}; nothing from the file was emitted and the bookmark did "
        "not move. Run the tap again to download it anew."
    )
    with pytest.raises(ChecksumMismatch, match="no usable fileChecksum"):
        verify(path, None, what="bulk export abc")


# ----------------------------------------------------------------------------- choosing bulk
NOW = dt.datetime(2024, 4, 12, 14, 0, tzinfo=UTC)


def _wants(method, days_back, state=None, *, resuming_cursor=False):
    return wants_bulk(
        method,
        threshold=dt.timedelta(days=3),
        window_start=NOW - dt.timedelta(days=days_back),
        now=NOW,
        settle=dt.timedelta(minutes=15),
        state=state or {},
        resuming_cursor=resuming_cursor,
    )


def test_auto_uses_bulk_only_for_windows_longer_than_the_threshold():
    assert _wants("auto", 3.5)
    assert not _wants("auto", 3)
    assert not _wants("auto", 0.1)


def test_bulk_and_rest_force_the_method_and_a_saved_cursor_always_resumes_rest():
    assert _wants("bulk", 0.1)
    assert not _wants("bulk", 0.005)  # shorter than the settle margin: nothing to export
    assert not _wants("rest", 700)
    assert not _wants("auto", 700, resuming_cursor=True)


def test_an_unfinished_backfill_continues_through_bulk_whatever_the_window():
    job = {"bulk": {"job": {"exportId": "x"}}}
    assert _wants("auto", 0.1, job)
    started = {"bulk": {"done_until": "2024-04-01T00:00:00Z", "job": None}}
    assert _wants("auto", 0.1, started)
    finished = {**started, "replication_key_value": "2024-04-12T13:00:00Z"}
    assert not _wants("auto", 0.1, finished)
    assert not _wants("rest", 0.1, job)


def test_bulk_method_governs_backfills_only_caught_up_runs_read_rest():
    caught_up = {"replication_key_value": "2024-04-12T13:00:00Z"}
    assert _wants("bulk", 0.1)  # a first sync: bulk, however short
    assert not _wants("bulk", 0.1, caught_up)  # a scheduled run once caught up: REST
    assert not _wants("bulk", 3, caught_up)
    assert _wants("bulk", 3.5, caught_up)  # far behind again: longer than the threshold
