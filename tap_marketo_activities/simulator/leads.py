"""The simulated lead database: describe, describe2 and ``leads.json`` by id.

A lead's record is not stored: it is the fold of the activities visible at the virtual ``now``
over a base record derived from the lead id, so the leads and the activities never disagree:

- every ``leadId`` the world's activities name is a lead (created before its first activity,
  or at its New Lead row);
- 13 Change Data Value sets a standard field and moves ``updatedAt``;
- 23 Change Owner sets ``leadOwnerId`` and 21 Convert Lead sets ``leadStatus`` (both move
  ``updatedAt``);
- 22 Change Score sets the custom score field ``behaviorScore`` and 32 Merge Leads writes the
  custom ``mergeNote`` on the winner: custom fields, so ``updatedAt`` does **not** move
  (Adobe: the visible ``updatedAt`` reflects standard fields only);
- 32 Merge Leads removes the losers (the other ids of ``Merge IDs``), 37 Delete Lead the lead.

``change_silently`` sets a field with no activity and without moving ``updatedAt`` (as a
system-managed or formula field changes): only a re-export of the lead shows it.

Custom fields cover every ``dataType`` describe reports (MARKETO_LEADS.md §2). Ids that match
nothing are silently dropped from ``leads.json`` answers, as Marketo drops unmatched values.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from . import catalog as cat
from .clock import to_epoch
from .endpoints import ApiError, _single, _values
from .render import lead_field_change, mix, person_name, render_activity

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from .endpoints import Params
    from .protocols import Instance
    from .world import World

MAX_IDS = 300
DEFAULT_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")

#: (REST name, display name, dataType, custom) — standard first, then one custom per dataType.
FIELDS: tuple[tuple[str, str, str, bool], ...] = (
    *((name, display, data_type, False) for _, name, display, data_type in cat.LEAD_DESCRIPTION),
    ("leadOwnerId", "Lead Owner", "reference", False),
    ("mktoPersonNotes", "Person Notes", "text", False),
    ("unsubscribed", "Unsubscribed", "boolean", False),
    ("behaviorScore", "Behavior Score", "score", True),
    ("mergeNote", "Merge Note", "text", True),
    ("seats", "Seats", "integer", True),
    ("discountRate", "Discount Rate", "float", True),
    ("contractValue", "Contract Value", "currency", True),
    ("completionPct", "Completion", "percent", True),
    ("renewalDate", "Renewal Date", "date", True),
    ("lastDemoAt", "Last Demo", "datetime", True),
    ("billingEmail", "Billing Email", "email", True),
    ("assistantPhone", "Assistant Phone", "phone", True),
    ("linkedinUrl", "LinkedIn", "url", True),
    ("region", "Region", "string", True),
)
FIELD_NAMES = frozenset(name for name, _, _, _ in FIELDS)
_STRING_TYPES = frozenset({"string", "email", "phone", "url", "text"})
_FOLDED = frozenset({12, 13, 21, 22, 23, 32, 37})
_DAY = 86_400


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _base(lead: int, created: int) -> dict[str, Any]:
    """The lead as created: every field, ``None`` where empty (Marketo returns explicit null)."""
    first, last = person_name(lead).split(" ")
    h = [mix(lead, 50 + k) for k in range(8)]
    return {
        "id": lead,
        "createdAt": _iso(created),
        "updatedAt": _iso(created),
        "email": f"{first}.{last}{lead}@example.com".lower(),
        "firstName": first,
        "lastName": last,
        "company": cat.COMPANIES[h[0] % 8],
        "leadStatus": cat.STATUSES[h[1] % 5],
        "leadScore": h[2] % 100,
        "title": cat.TITLES[h[3] % 6],
        "phone": None,
        "city": cat.CITIES[h[4] % 8],
        "country": cat.COUNTRIES[h[5] % 8],
        "middleName": None,
        "website": None if h[6] & 1 else f"https://www.example.com/{lead}",
        "leadOwnerId": 500 + h[7] % 4,
        "mktoPersonNotes": 'Line one,\nline "two"' if h[0] % 7 == 0 else None,
        "unsubscribed": False,  # an unset boolean comes back false (MARKETO_LEADS.md §1)
        "behaviorScore": 0,
        "mergeNote": None,
        "seats": h[1] % 500,
        "discountRate": (h[2] % 1000) / 100,
        "contractValue": (h[3] % 100_000) / 100,
        "completionPct": h[4] % 101,
        "renewalDate": time.strftime("%Y-%m-%d", time.gmtime(created + 365 * _DAY)),
        "lastDemoAt": None if h[5] & 1 else _iso(created + 3600),
        "billingEmail": f"billing{lead}@example.com",
        "assistantPhone": f"+1 555 03{h[6] % 100:02d}",
        "linkedinUrl": None,
        "region": ("EMEA", "AMER", "APAC")[h[7] % 3],
    }


def _attribute(row: dict[str, Any], name: str) -> Any:
    return next((a["value"] for a in row.get("attributes", ()) if a["name"] == name), None)


class LeadDatabase:
    """The leads of one world, as of a virtual time (the fold is cached per visible prefix)."""

    def __init__(self, world: World) -> None:
        self.world = world
        first: dict[int, int] = {}
        for i in range(len(world)):
            lead = world.lead[i]
            first[lead] = min(first.get(lead, world.event[i]), world.event[i])
        #: created one to 400 days before its first activity, unless a New Lead row says when
        self._created = {lead: ts - (1 + mix(lead, 9) % 400) * _DAY for lead, ts in first.items()}
        for i in range(len(world)):
            if world.type_id[i] == cat.NEW_LEAD:
                self._created[world.lead[i]] = world.event[i]
        self._cache: tuple[tuple[int, int], dict[int, dict[str, Any]]] | None = None
        #: per lead, the time of its latest field change of any kind (the bulk updatedAt
        #: filter's notion, which custom fields move too)
        self.touched: dict[int, int] = {}
        #: field values set by ``change_silently``, applied over the fold
        self.silent: dict[int, dict[str, Any]] = {}

    def change_silently(self, lead: int, name: str, value: Any) -> None:
        """Set ``name`` of ``lead`` with no activity, ``updatedAt`` and ``touched`` unmoved."""
        if name not in FIELD_NAMES or name in ("id", "createdAt", "updatedAt"):
            raise ValueError(name)
        self.silent.setdefault(lead, {})[name] = value
        self._cache = None

    def at(self, now: datetime) -> dict[int, dict[str, Any]]:
        """Every lead that exists at ``now``, by id (ground truth for tests)."""
        world = self.world
        end = world.visible_end(now)
        if self._cache is not None and self._cache[0] == (end, to_epoch(now)):
            return self._cache[1]
        moment = to_epoch(now)  # a lead exists from its creation on
        created = {lead: ts for lead, ts in self._created.items() if ts <= moment}
        leads = {lead: _base(lead, ts) for lead, ts in created.items()}
        self.touched = dict(created)
        gone: set[int] = set()
        rows = sorted((i for i in range(end) if world.type_id[i] in _FOLDED), key=self._order)
        for i in rows:
            self._apply(leads, gone, i)
        for lead in gone:
            leads.pop(lead, None)
        for lead, values in self.silent.items():
            if lead in leads:
                leads[lead].update(values)
        self._cache = ((end, to_epoch(now)), leads)
        return leads

    def _order(self, i: int) -> tuple[int, int]:
        return self.world.event[i], i

    def _apply(self, leads: dict[int, dict[str, Any]], gone: set[int], i: int) -> None:
        world = self.world
        lead, type_id, when = world.lead[i], world.type_id[i], _iso(world.event[i])
        if type_id == 32:  # losers go even when the winner is gone (the world is random)
            merged = str(_attribute(render_activity(world, i), "Merge IDs") or "").split(",")
            losers = {int(x) for x in merged if x.strip()} - {lead}
            gone.update(losers)
        record = leads.get(lead)
        if record is None or lead in gone:
            return
        standard = True
        if type_id == cat.CHANGE_DATA_VALUE:
            _, name, new, _ = lead_field_change(world, i)
            record[name] = int(new) if name == "leadScore" else new
        elif type_id == 21:
            record["leadStatus"] = "Converted"
        elif type_id == 23:
            record["leadOwnerId"] = render_activity(world, i).get("primaryAttributeValueId")
        elif type_id == 22:
            record["behaviorScore"] = _attribute(render_activity(world, i), "New Value")
            standard = False
        elif type_id == 32:
            record["mergeNote"] = f"merged {','.join(map(str, sorted(losers)))} at {when}"
            standard = False
        elif type_id == cat.DELETE_LEAD:
            gone.add(lead)
            return
        else:
            return
        self.touched[lead] = max(self.touched[lead], world.event[i])
        if standard:
            record["updatedAt"] = max(record["updatedAt"], when)


_DATABASES: WeakKeyDictionary[World, LeadDatabase] = WeakKeyDictionary()


def database(sim: Instance) -> LeadDatabase:
    """The lead database of the simulator's current world (built once per world)."""
    db = _DATABASES.get(sim.world)
    if db is None:
        db = _DATABASES[sim.world] = LeadDatabase(sim.world)
    return db


def describe(sim: Instance, params: Params) -> dict[str, Any]:
    """``/rest/v1/leads/describe2.json``: every REST field, standard and custom."""
    del sim, params
    fields = []
    for name, display, data_type, custom in FIELDS:
        item: dict[str, Any] = {"name": name, "displayName": display, "dataType": data_type}
        if data_type in _STRING_TYPES:
            item["length"] = 30000 if data_type == "text" else 255
        item["updateable"] = name not in ("id", "createdAt", "updatedAt")
        item["crmManaged"] = False
        del custom
        fields.append(item)
    searchable = [["id"], ["email"], ["region"]]
    return {
        "success": True,
        "result": [{"name": "API Lead", "searchableFields": searchable, "fields": fields}],
    }


def leads(sim: Instance, params: Params) -> dict[str, Any]:
    """``/rest/v1/leads.json`` by ``filterType`` (``id``, ``email``), up to 300 values."""
    filter_type = _single(params, "filterType")
    if filter_type is None:
        raise ApiError("1002", cat.error_message("1002", name="filterType"))
    if filter_type not in ("id", "email"):
        raise ApiError("1011", f"Field '{filter_type}' not supported")
    values = _values(params, "filterValues")
    if not values:
        raise ApiError("1002", cat.error_message("1002", name="filterValues"))
    if len(values) > MAX_IDS:
        raise ApiError("1003", f"filterValues: at most {MAX_IDS} values allowed")
    fields = _values(params, "fields") or list(DEFAULT_FIELDS)
    for name in fields:
        if name not in FIELD_NAMES:
            raise ApiError("1006", cat.error_message("1006", name=name))
    db = database(sim).at(sim.clock.now())
    if filter_type == "id":
        found = [db[int(v)] for v in dict.fromkeys(values) if v.isdigit() and int(v) in db]
    else:
        wanted = set(values)
        found = [lead for lead in db.values() if lead["email"] in wanted]
    result = [{name: lead[name] for name in ("id", *fields)} for lead in found]
    return {"success": True, "result": result}


def _cell(value: Any) -> str:
    if value is None:
        return "null"  # empty bulk values arrive as the literal null (MARKETO_LEADS.md §9)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export_rows(
    world: World, at: datetime, lead_filter: tuple[str, int, int], fields: tuple[str, ...]
) -> list[list[str]]:
    """A lead export's CSV rows: leads created (or last changed) in the filter's span."""
    db = _DATABASES.get(world)
    if db is None:
        db = _DATABASES[world] = LeadDatabase(world)
    leads = db.at(at)
    kind, start, end = lead_filter
    moment = db._created if kind == "createdAt" else db.touched
    return [
        [_cell(lead[name]) for name in fields]
        for lead_id, lead in sorted(leads.items())
        if start <= moment[lead_id] <= end
    ]


ROUTES: dict[str, Callable[[Instance, Params], dict[str, Any]]] = {
    "/rest/v1/leads/describe2.json": describe,
    "/rest/v1/leads.json": leads,
}
