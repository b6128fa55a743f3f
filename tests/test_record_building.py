"""Quick ways of reading page bodies and activityDate agree with the general ones."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests

from tap_marketo_activities.bulk.csvfile import numbered_rows, rest_rows
from tap_marketo_activities.envelope import envelope
from tap_marketo_activities.errors import MalformedResponse
from tap_marketo_activities.records import (
    activity_record,
    format_datetime,
    parse_datetime,
    utc_stamp,
)


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
