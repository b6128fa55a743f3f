"""The REST endpoints: parameter rules, paging walks and response bodies (no HTTP here).

Each handler takes the simulator and the request's parameters (``{name: [values]}``, query and
``_method=GET`` form body merged) and returns the body without ``requestId``, or raises
``ApiError`` for an HTTP-200 ``success: false`` answer.

Parameter rules, with the choices made where Marketo's behaviour is UNVERIFIED:
- list parameters (``activityTypeIds``, ``leadIds``, ``assetIds``, ``fields``) may be repeated,
  comma-separated, or both;
- a missing required parameter (``nextPageToken``, ``activityTypeIds``, ``fields``,
  ``sinceDatetime``) -> 1002 "Missing value for required parameter '<name>'";
- a non-integer where an integer is due -> 1001 "Invalid value '<v>'. Required of type
  'integer'";
- more than 10 ``activityTypeIds``, more than 30 ``leadIds``, ``batchSize`` above 300 (or below
  1) -> 1003 with a message naming the parameter;
- a ``sinceDatetime`` that is not ISO 8601 -> ``sim.bad_since_code`` (default 1001; 704 is the
  other candidate);
- an unknown lead field in ``fields`` -> 1006 "Field '<name>' not found" (exact, case-sensitive
  REST names);
- a ``nextPageToken`` we did not issue -> ``sim.invalid_token_code`` (default 1003 "Invalid
  nextPageToken"); a position token issued before ``reject_cursors()``, or by a simulator
  serving another world -> ``sim.stale_token_code`` (default 1003, same message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from . import catalog as cat
from .clock import parse_datetime, to_epoch
from .tokens import DATE, POSITION, PagingToken, TokenError, decode
from .world import Filter, make_filter

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from .protocols import Instance

Params = dict[str, list[str]]
MAX_BATCH = 300
MAX_TYPES = 10
MAX_LEADS = 30


class ApiError(Exception):
    """An HTTP-200, ``success: false`` answer with one Marketo error."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or cat.error_message(code))
        self.code = code
        self.message = message or cat.error_message(code)


def _values(params: Params, name: str) -> list[str]:
    out: list[str] = []
    for raw in params.get(name, ()):
        out.extend(part.strip() for part in raw.split(",") if part.strip())
    return out


def _single(params: Params, name: str) -> str | None:
    values = [v for v in params.get(name, ()) if v.strip()]
    return values[-1].strip() if values else None


def _required(params: Params, name: str) -> str:
    value = _single(params, name)
    if value is None:
        raise ApiError("1002", cat.error_message("1002", name=name))
    return value


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError("1001", cat.error_message("1001", value=value, type="integer")) from None


def _ints(params: Params, name: str) -> list[int]:
    return [_int(v) for v in _values(params, name)]


def _batch_size(params: Params) -> int:
    raw = _single(params, "batchSize")
    if raw is None:
        return MAX_BATCH
    size = _int(raw)
    if not 1 <= size <= MAX_BATCH:
        raise ApiError("1003", f"Invalid batchSize '{size}': must be between 1 and {MAX_BATCH}")
    return size


def _lead_ids(params: Params) -> list[int] | None:
    leads = _ints(params, "leadIds")
    if len(leads) > MAX_LEADS:
        raise ApiError("1003", f"leadIds: at most {MAX_LEADS} values allowed, got {len(leads)}")
    return leads or None


def _list_id(params: Params) -> int | None:
    raw = _single(params, "listId")
    return _int(raw) if raw is not None else None


def _walk(sim: Instance, params: Params, flt: Filter, batch: int) -> dict[str, Any]:
    """One page of a commit-order walk; see world.py for why commit order."""
    text = _required(params, "nextPageToken")
    try:
        token = decode(text)
    except TokenError:
        raise ApiError(sim.invalid_token_code, "Invalid nextPageToken") from None
    world = sim.world
    stale = token.kind == POSITION and token.generation < sim.cursor_generation
    if token.world != world.fingerprint or stale:
        raise ApiError(sim.stale_token_code, "Invalid nextPageToken")
    date_based = token.kind == DATE
    position = world.start_position(token.since_ts) if date_based else token.position
    end = world.visible_end(sim.clock.now())
    scan_end = min(end, position + max(1, sim.scan_block))
    indices, next_position = world.scan(position, scan_end, token.since_ts, flt, batch)
    next_position = max(next_position, position)
    rows = [world.render(i, flt.stream) for i in indices]
    sim.counter_book.add("rows_served", len(rows))
    sim.counter_book.add("pages_served")
    next_token = PagingToken(
        POSITION,
        world.fingerprint,
        sim.cursor_generation,
        token.since_ts,
        next_position,
        flt.fingerprint(),
    )
    return {
        "success": True,
        "nextPageToken": next_token.encode(long=sim.long_tokens),
        "moreResult": next_position < end,
        "result": rows,
    }


def activities(sim: Instance, params: Params) -> dict[str, Any]:
    _required(params, "nextPageToken")
    type_ids = _ints(params, "activityTypeIds")
    if not type_ids:
        raise ApiError("1002", cat.error_message("1002", name="activityTypeIds"))
    if len(set(type_ids)) > MAX_TYPES:
        raise ApiError(
            "1003",
            f"activityTypeIds: at most {MAX_TYPES} values allowed, got {len(set(type_ids))}",
        )
    batch = _batch_size(params)
    sim.counter_book.activity_call(type_ids)
    assets = _ints(params, "assetIds")
    flt = make_filter(
        "activities",
        type_ids=type_ids,
        lead_ids=_lead_ids(params),
        list_id=_list_id(params),
        asset_ids=assets or None,
    )
    return _walk(sim, params, flt, batch)


def lead_changes(sim: Instance, params: Params) -> dict[str, Any]:
    _required(params, "nextPageToken")
    fields = _values(params, "fields")
    if not fields:
        raise ApiError("1002", cat.error_message("1002", name="fields"))
    for name in fields:
        if name not in cat.KNOWN_LEAD_FIELDS:
            raise ApiError("1006", cat.error_message("1006", name=name))
    batch = _batch_size(params)
    flt = make_filter(
        "lead_changes", fields=fields, lead_ids=_lead_ids(params), list_id=_list_id(params)
    )
    return _walk(sim, params, flt, batch)


def deleted_leads(sim: Instance, params: Params) -> dict[str, Any]:
    _required(params, "nextPageToken")
    return _walk(sim, params, make_filter("deleted_leads"), _batch_size(params))


def paging_token(sim: Instance, params: Params) -> dict[str, Any]:
    raw = _required(params, "sinceDatetime")
    try:
        since: datetime = parse_datetime(raw)
    except ValueError:
        raise ApiError(
            sim.bad_since_code,
            cat.error_message(sim.bad_since_code, value=raw, type="date-time"),
        ) from None
    token = PagingToken(DATE, sim.world.fingerprint, sim.cursor_generation, to_epoch(since), 0)
    return {"success": True, "nextPageToken": token.encode(long=sim.long_tokens)}


def activity_types(sim: Instance, params: Params) -> dict[str, Any]:
    del params
    present = set(sim.world.type_ids()) | set(cat.TYPES_BY_ID)
    result = []
    for type_def in cat.ACTIVITY_TYPES:
        if type_def.id not in present:
            continue
        item = type_def.as_json()
        changes = sim.described_attributes.get(type_def.id, {})
        if changes:
            attributes = []
            described = cast("list[dict[str, Any]]", item["attributes"])
            for attribute in described:
                data_type = changes.get(attribute["name"], attribute["dataType"])
                if data_type is not None:
                    attributes.append({**attribute, "dataType": data_type})
            item["attributes"] = attributes
        result.append(item)
    return {"success": True, "result": result}


def usage(sim: Instance, params: Params) -> dict[str, Any]:
    del params
    day, used = sim.limits.usage(sim.clock.now())
    return {
        "success": True,
        "result": [
            {
                "date": f"{day.isoformat()}T00:00:00Z",
                "total": used,
                "users": [{"userId": sim.scope, "count": used}] if used else [],
            }
        ],
    }


def leads_describe(sim: Instance, params: Params) -> dict[str, Any]:
    """The lead fields the simulator knows (names as ``fields=`` accepts them).

    Served for other extractors' discovery (Stitch's tap-marketo reads it before it lists
    any stream); ``length`` on string-like fields, ``readOnly`` on the three system fields.
    """
    del sim, params
    result = []
    for field_id, name, display, data_type in cat.LEAD_DESCRIPTION:
        item: dict[str, Any] = {"id": field_id, "displayName": display, "dataType": data_type}
        if data_type in ("string", "email", "phone", "url"):
            item["length"] = 255
        read_only = name in ("id", "createdAt", "updatedAt")
        item["rest"] = {"name": name, "readOnly": read_only}
        item["soap"] = {"name": name[:1].upper() + name[1:], "readOnly": read_only}
        result.append(item)
    return {"success": True, "result": result}


ROUTES: dict[str, Callable[[Instance, Params], dict[str, Any]]] = {
    "/rest/v1/activities.json": activities,
    "/rest/v1/activities/leadchanges.json": lead_changes,
    "/rest/v1/activities/deletedleads.json": deleted_leads,
    "/rest/v1/activities/pagingtoken.json": paging_token,
    "/rest/v1/activities/types.json": activity_types,
    "/rest/v1/stats/usage.json": usage,
    "/rest/v1/leads/describe.json": leads_describe,
}
