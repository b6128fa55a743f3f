"""Quick ways of reading page bodies and activityDate agree with the general ones."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests

from tap_marketo_activities.errors import MalformedResponse
from tap_marketo_activities.records import (
    activity_record,
    format_datetime,
    parse_datetime,
    utc_stamp,
)
from tap_marketo_activities.sources.bulk import plan_windows
from tap_marketo_activities.sources.bulk.cache import ExportCache
from tap_marketo_activities.sources.bulk.csvfile import numbered_rows, rest_rows
from tap_marketo_activities.wire.envelope import envelope


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-04-12T12:00:07Z",
        "2024-04-12T12:00:07+0000",
        "2024-04-12T12:00:07+00:00",
        "2024-04-12 12:00:07Z",
        "2024-04-12 12:00:07+0000",
        "2024-04-12T14:00:07+0200",
        "2024-04-12T12:00:07.250Z",
        "2024-04-12t12:00:07z",
        "2024-02-29T23:59:59-0000",
    ],
)
def test_utc_stamp_agrees_with_parse_and_format(stamp):
    text, when = utc_stamp(stamp)
    assert when == parse_datetime(stamp)
    assert when.utcoffset() == dt.timedelta(0)
    assert text == format_datetime(parse_datetime(stamp))
    assert parse_datetime(text) == when


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-04-12T12:00:0xZ",
        "2024-13-12T12:00:07Z",
        "2024-04-12T12:00:07",
        "2024-04-12T25:00:07+0000",
    ],
)
def test_utc_stamp_refuses_what_parse_refuses(stamp):
    with pytest.raises(ValueError):
        parse_datetime(stamp)
    with pytest.raises(ValueError):
        utc_stamp(stamp)


# ------------------------------------------------------------------ page bodies (envelope)


def response(content: bytes, content_type: str = "application/json;charset=UTF-8"):
    answer = requests.Response()
    answer.status_code = 200
    answer._content = content
    answer.headers["Content-Type"] = content_type
    answer.encoding = requests.utils.get_encoding_from_headers(answer.headers)
    answer.url = "https://123-ABC-456.mktorest.com/rest/v1/activities.json"
    return answer


PAGE = {
    "requestId": "e42b#14272d07d78",
    "success": True,
    "nextPageToken": "WQV2VQVPPCKHC6AQYVK7JDSA3J62DUSJ3EXJGDPTKPEBFW3SAVUA====",
    "moreResult": False,
    "result": [
        {
            "id": 2147480000,
            "marketoGUID": "32172d0b-f0d0-48e8-a321-7a3065562ac3",
            "attributes": [{"name": "Score", "value": 1.5}, {"name": "Big", "value": 10**30}],
            "primaryAttributeValue": "caf\u00e9 \u2603 \U0001f600",
        }
    ],
}


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (json.dumps(PAGE).encode(), "application/json;charset=UTF-8"),
        (json.dumps(PAGE, ensure_ascii=False).encode(), "application/json"),
        (b"\xef\xbb\xbf" + json.dumps(PAGE).encode(), "application/json;charset=UTF-8"),
        (json.dumps({**PAGE, "x": float("nan")}).encode(), "application/json"),
        (
            json.dumps(PAGE, ensure_ascii=False).encode("latin-1", "replace"),
            "text/json;charset=ISO-8859-1",
        ),
        (
            '{"success": true, "result": ["\u00c3\u00a9"]}'.encode("latin-1"),
            "application/json;charset=ISO-8859-1",
        ),
    ],
)
def test_a_page_body_parses_as_requests_parses_it(content, content_type):
    try:
        expected = response(content, content_type).json()
    except ValueError:
        with pytest.raises(MalformedResponse, match="with a body that is not JSON"):
            envelope(response(content, content_type))
        return
    body = envelope(response(content, content_type))
    assert json.dumps(body, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_a_body_that_is_not_json_is_named_as_such():
    with pytest.raises(MalformedResponse, match="with a body that is not JSON"):
        envelope(response(b"<html>502 Bad Gateway</html>", "text/html"))


# ------------------------------------------------------------------- export files (csvfile)

HEADER = (
    "marketoGUID,leadId,activityDate,activityTypeId,campaignId,primaryAttributeValueId,"
    "primaryAttributeValue,attributes\n"
)


def export_file(tmp_path, lines):
    path = tmp_path / "export.csv"
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def test_a_type_group_gets_its_rows_numbered_by_their_place_in_the_file(tmp_path):
    path = export_file(
        tmp_path,
        [
            'g-1,1,2024-04-12T13:45:00Z,1,null,null,null,"{""Step ID"": 1}"\n',
            "g-2,2,2024-04-12T13:46:00Z,6,null,null,null,{not json}\n",  # not asked for
            "\n",
            'g-3,3,2024-04-12T13:47:00Z,6,null,null,null,"[{""name"": ""A"", ""value"": 2}]"\n',
            "g-4,4,2024-04-12T13:48:00Z,x,null,null,null,null\n",
            "g-5,5,2024-04-12T13:49:00Z,1,null,null,null,null\n",
        ],
    )
    got = [(n, row["marketoGUID"]) for n, row in numbered_rows(path, what="x", type_ids={1})]
    assert got == [(1, "g-1"), (4, "g-4"), (5, "g-5")]  # g-4's type is for the builder to refuse
    resumed = numbered_rows(path, what="x", type_ids={1, 6}, after=3)
    assert [(n, row["marketoGUID"]) for n, row in resumed] == [(4, "g-4"), (5, "g-5")]


GROUPS = ({1, 2}, {6}, {7, 8})
ROWS = [
    'g-1,1,2024-04-12T13:45:00Z,1,null,null,null,"{""Step ID"": 1}"\n',
    'g-2,2,2024-04-12T13:46:00Z,6,null,null,"Mail\nwith a newline",null\n',
    'g-3,3,2024-04-12T13:47:00Z,7,null,null,null,"[{""name"": ""A"", ""value"": 2}]"\n',
    "g-4,4,2024-04-12T13:48:00Z,6,9,10,null,null\n",
    "g-5,5,2024-04-12T13:49:00Z,2,null,null,null,null\n",
    "g-6,6,2024-04-12T13:50:00Z,8,null,null,,null\n",
]


@pytest.fixture
def cached_export(tmp_path):
    """An export file in a run's cache, and what each group gets reading it on its own."""
    cache = ExportCache(tmp_path)
    with cache:
        source = export_file(tmp_path, ROWS)
        window = plan_windows(
            dt.datetime(2024, 4, 12, tzinfo=dt.timezone.utc),
            dt.datetime(2024, 4, 13, tzinfo=dt.timezone.utc),
        )[0]
        path = cache.put(window, {1, 2, 6, 7, 8}, "job-1", source).path
        alone = [list(numbered_rows(path, what="x", type_ids=group)) for group in GROUPS]
        yield cache, path, alone


def test_the_groups_after_the_first_read_its_leftovers_not_the_export(cached_export):
    cache, path, alone = cached_export
    first = list(cache.rows(path, what="x", type_ids=GROUPS[0]))
    path.write_text("not,the,export\n")  # the groups after the first never read it again
    resumed = list(cache.rows(path, what="x", type_ids=GROUPS[2], after=3))
    assert resumed == [row for row in alone[2] if row[0] > 3]  # numbers of the export's rows
    rest = [list(cache.rows(path, what="x", type_ids=group)) for group in GROUPS[1:]]
    assert [first, *rest] == alone
    assert [[n for n, _ in rows] for rows in alone] == [[1, 5], [2, 4], [3, 6]]
    # Each leftovers file is removed once the next replaces it; the last goes with the cache.
    assert sorted(p.name for p in path.parent.iterdir()) == ["job-1.csv", "job-1.left-3.jsonl"]


def test_an_empty_export_leaves_nothing_and_every_group_reads_nothing(tmp_path):
    with ExportCache(tmp_path) as cache:
        window = plan_windows(
            dt.datetime(2024, 4, 12, tzinfo=dt.timezone.utc),
            dt.datetime(2024, 4, 13, tzinfo=dt.timezone.utc),
        )[0]
        empty = tmp_path / "empty.csv"
        empty.write_text("")
        path = cache.put(window, {1, 2, 6}, "job-2", empty).path
        assert [list(cache.rows(path, what="x", type_ids=group)) for group in GROUPS] == [[]] * 3


def test_leftovers_that_cannot_be_written_cost_a_parse_not_the_run(cached_export):
    cache, path, alone = cached_export
    (path.parent / f"{path.stem}.left-1.jsonl").mkdir()  # where the first group would spill
    assert list(cache.rows(path, what="x", type_ids=GROUPS[0])) == alone[0]
    assert list(cache.rows(path, what="x", type_ids=GROUPS[1])) == alone[1]  # the export again
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["job-1.csv", "job-1.left-1.jsonl", "job-1.left-2.jsonl"]  # no .part left


def test_a_group_stopped_half_way_leaves_nothing_and_the_next_reads_the_export(cached_export):
    cache, path, alone = cached_export
    partial = cache.rows(path, what="x", type_ids=GROUPS[0])
    assert next(partial) == alone[0][0]
    partial.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["job-1.csv"]  # no partial spill
    path.write_text("not,the,export\n")
    with pytest.raises(MalformedResponse, match="header lacks"):
        list(cache.rows(path, what="x", type_ids=GROUPS[1]))


def test_a_group_resumed_inside_the_file_leaves_nothing(cached_export):
    cache, path, alone = cached_export
    assert list(cache.rows(path, what="x", type_ids=GROUPS[0], after=2)) == alone[0][1:]
    path.write_text("not,the,export\n")
    with pytest.raises(MalformedResponse, match="header lacks"):
        list(cache.rows(path, what="x", type_ids=GROUPS[1]))


def test_attributes_as_an_object_or_a_list_make_the_same_record(tmp_path):
    path = export_file(
        tmp_path,
        [
            'g-1,1,2024-04-12T13:45:00Z,1,null,null,null,"{""Step ID"": 1, ""On"": true}"\n',
            'g-1,1,2024-04-12T13:45:00Z,1,null,null,null,"[{""name"": ""Step ID"", ""value"": 1},'
            ' {""name"": ""On"", ""value"": true}]"\n',
        ],
    )
    first, second = (
        activity_record(row, type_names={1: "Visit Webpage"}, request_id="x")
        for row in rest_rows(path, what="x")
    )
    assert first == second
    assert first["attributes"] == {"Step ID": 1, "On": True}
