"""Building records: the quick ways of reading activityDate agree with the general one."""

from __future__ import annotations

import datetime as dt

import pytest

from tap_marketo_activities.records import format_datetime, parse_datetime, utc_stamp


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
