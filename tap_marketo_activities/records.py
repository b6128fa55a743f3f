"""Turning Marketo's activity rows into the records we emit (pure functions).

Marketo stamps ``activityDate`` as ``...Z`` or ``...+0000`` depending on the
endpoint and era; we emit RFC 3339 UTC so bookmarks compare as strings and
warehouses parse one format. Attributes arrive as ``[{name, value}]``; we emit one
object keyed by name, keeping each value's JSON type, so a warehouse stores it in
one JSON/variant column and numbers stay numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

from tap_marketo_activities.errors import MalformedResponse

UTC = dt.timezone.utc


def _is_canonical(text: str) -> bool:
    """True for ``YYYY-MM-DDTHH:MM:SSZ``, the form we emit and Marketo mostly sends."""
    return (
        len(text) == 20
        and text[19] == "Z"
        and text[10] == "T"
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
        and text[:4].isdigit()
    )


def parse_datetime(value: str) -> dt.datetime:
    """Parse Marketo's ISO 8601 forms (Z, +hh:mm, +hhmm); raise ValueError otherwise."""
    if _is_canonical(value):
        # The common case, once per row: the zone is known, skip the rewriting below.
        # (Appending the offset is several times cheaper than ``.replace(tzinfo=UTC)``.)
        return dt.datetime.fromisoformat(value[:19] + "+00:00")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and ":" not in text[-5:]:
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        msg = f"{value!r} has no time zone"
        raise ValueError(msg)
    return parsed.astimezone(UTC)


def format_datetime(value: dt.datetime) -> str:
    """RFC 3339 UTC with a Z, whole seconds unless the value has a fraction."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def attributes_object(attributes: t.Any) -> dict[str, t.Any]:
    """``[{name, value}]`` -> ``{name: value}``; later duplicates win, as in Marketo's UI.

    An object (an export file's ``attributes`` cell) is taken as it is, keys as text.
    """
    if not attributes:
        return {}
    if isinstance(attributes, dict):
        return {str(name): value for name, value in attributes.items()}
    result: dict[str, t.Any] = {}
    for item in attributes:
        if isinstance(item, dict) and "name" in item:
            result[str(item["name"])] = item.get("value")
    return result


def _as_text(value: t.Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _as_int(value: t.Any) -> int | None:
    if type(value) is int or value is None:
        return value
    if value == "":
        return None
    return int(value)


#: The UTC offsets Marketo writes after whole seconds, by the length of the stamp.
_UTC_SUFFIXES = {20: "Z", 24: "+0000", 25: "+00:00"}


def utc_stamp(value: str) -> tuple[str, dt.datetime]:
    """``activityDate`` as we emit it (RFC 3339 UTC, ``...Z``) and as a datetime.

    Marketo's usual forms, whole seconds in UTC (``Z``, ``+0000``, ``+00:00``), are
    re-written by slicing: once per row, formatting through ``strftime`` cost more than
    the rest of the record. Every other form goes through :func:`parse_datetime` and
    :func:`format_datetime`. Raises ValueError for a stamp neither can read.
    """
    suffix = _UTC_SUFFIXES.get(len(value))
    if suffix is not None and value.endswith(suffix):
        head = value[:19]
        # fromisoformat checks the digits; the separators it would also accept in
        # other places (a space for the T, say) must not reach the emitted stamp.
        if (
            head[10] == "T"
            and head[4] == head[7] == "-"
            and head[13] == head[16] == ":"
            and head.isascii()
        ):
            return head + "Z", dt.datetime.fromisoformat(head + "+00:00")
    when = parse_datetime(value)
    return format_datetime(when), when


def activity_record(
    row: t.Any,
    *,
    type_names: t.Mapping[int, str],
    request_id: str,
) -> dict[str, t.Any]:
    """Normalise one row of activities/leadchanges/deletedleads into our record.

    A row without ``marketoGUID`` or a parseable ``activityDate`` cannot be keyed
    or bookmarked; it fails the run (with the request id) rather than being
    dropped or guessed at.
    """
    return dated_activity_record(row, type_names=type_names, request_id=request_id)[0]


def dated_activity_record(
    row: t.Any,
    *,
    type_names: t.Mapping[int, str],
    request_id: str,
) -> tuple[dict[str, t.Any], dt.datetime]:
    """:func:`activity_record` and its parsed ``activityDate``, so callers need not re-parse."""
    if not isinstance(row, dict):
        msg = f"Marketo returned a result item that is not an object (requestId {request_id})."
        raise MalformedResponse(msg)
    guid = row.get("marketoGUID")
    if guid in (None, ""):
        msg = (
            f"Marketo returned an activity without marketoGUID (requestId {request_id}, "
            f"id {row.get('id')}); stopping without moving the bookmark past it."
        )
        raise MalformedResponse(msg)
    try:
        stamp, when = utc_stamp(str(row["activityDate"]))
        type_id = row["activityTypeId"]
        if type(type_id) is not int:
            type_id = int(type_id)
        get = row.get
        record: dict[str, t.Any] = {
            "marketoGUID": guid if type(guid) is str else str(guid),
            "id": _as_int(get("id")),
            "leadId": _as_int(get("leadId")),
            "activityDate": stamp,
            "activityTypeId": type_id,
            "activityTypeName": type_names.get(type_id),
            "campaignId": _as_int(get("campaignId")),
            "primaryAttributeValueId": _as_int(get("primaryAttributeValueId")),
            "primaryAttributeValue": _as_text(get("primaryAttributeValue")),
            "attributes": attributes_object(get("attributes")),
        }
        if "fields" in row:
            record["fields"] = [
                {
                    "id": _as_int(f.get("id")),
                    "name": _as_text(f.get("name")),
                    "newValue": _as_text(f.get("newValue")),
                    "oldValue": _as_text(f.get("oldValue")),
                }
                for f in row.get("fields") or []
                if isinstance(f, dict)
            ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = (
            f"Marketo returned an activity with a missing or invalid field ({exc!s}) "
            f"(requestId {request_id}, marketoGUID {guid}); stopping without moving the "
            "bookmark past it."
        )
        raise MalformedResponse(msg) from None
    return record, when
