"""Turn one stored row (an index into the World's columns) into the dict the API answers with.

Rows are stored as a handful of integers; everything else (names, URLs, attribute values, the
GUID, which of the two date forms a row uses, whether ``id`` is present) is derived from the
row's index and its 32-bit ``aux`` number with cheap arithmetic, so the same row always renders
identically and a million-row world costs a few columns of ints, not a million dicts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from . import catalog as cat

if TYPE_CHECKING:
    from array import array
    from collections.abc import Callable


class Rows(Protocol):
    """The columns of a world that rendering reads (``world.World`` holds them).

    A Protocol, so that this module does not import ``world.py``, which renders with it.
    """

    id_base: int
    id_stride: int
    id_absent_permille: int
    event: array[int]
    type_id: array[int]
    lead: array[int]
    campaign: array[int]
    aux: array[int]

    def guid(self, i: int) -> str:
        """The row's marketoGUID."""
        ...


_MAILING_TYPES = frozenset({6, 7, 8, 9, 10, 11, 27})
_PERSON_TYPES = frozenset({12, 19, 21, 32, 37, 145})
_PROGRAMS = ("Spring Launch 2024", "Webinar Series", "Nurture EMEA", "Product Updates")
_PLATFORMS = ("Windows", "Mac OS", "iOS", "Android")
_DEVICES = ("Desktop", "iPhone", "Android phone", "iPad")


def mix(value: int, salt: int = 0) -> int:
    """A cheap 32-bit integer hash (deterministic, unlike ``hash()`` across processes)."""
    x = (value * 0x9E3779B1 + salt * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    return x


def person_name(lead_id: int) -> str:
    first = cat.FIRST_NAMES[lead_id % len(cat.FIRST_NAMES)]
    last = cat.LAST_NAMES[(lead_id // len(cat.FIRST_NAMES)) % len(cat.LAST_NAMES)]
    return f"{first} {last}"


def render_date(ts: int, plus_form: bool) -> str:
    """Marketo uses both ``...Z`` and ``...+0000``; a tap must parse both."""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return text + ("+0000" if plus_form else "Z")


def lead_field_change(world: Rows, i: int) -> tuple[int, str, str, str | None]:
    """The (field id, field name, new value, old value) of a type-13 row."""
    aux = world.aux[i]
    field_id, name = cat.LEAD_FIELDS[aux % len(cat.LEAD_FIELDS)]
    lead = world.lead[i]
    h_new, h_old = mix(aux, 1), mix(aux, 2)
    new: str
    old: str | None
    if name == "email":
        base = person_name(lead).lower().replace(" ", ".")
        new, old = f"{base}{h_new % 100}@example.com", f"{base}@example.org"
    elif name == "firstName":
        new, old = cat.FIRST_NAMES[h_new % 26], cat.FIRST_NAMES[h_old % 26]
    elif name == "lastName":
        new, old = cat.LAST_NAMES[h_new % 26], cat.LAST_NAMES[h_old % 26]
    elif name == "company":
        new, old = cat.COMPANIES[h_new % 8], cat.COMPANIES[h_old % 8]
    elif name == "leadStatus":
        new, old = cat.STATUSES[h_new % 5], cat.STATUSES[h_old % 5]
    elif name == "leadScore":
        new, old = str(h_new % 100), str(h_old % 100)
    elif name == "title":
        new, old = cat.TITLES[h_new % 6], cat.TITLES[h_old % 6]
    elif name == "phone":
        new, old = f"+1 555 01{h_new % 100:02d}", f"+1 555 02{h_old % 100:02d}"
    elif name == "city":
        new, old = cat.CITIES[h_new % 8], cat.CITIES[h_old % 8]
    else:
        new, old = cat.COUNTRIES[h_new % 8], cat.COUNTRIES[h_old % 8]
    if (aux >> 20) & 15 == 0:
        old = None  # the field was empty before: no oldValue
    return field_id, name, new, old


def _primary(world: Rows, i: int, type_id: int, h: int) -> tuple[int | None, str | None]:
    lead = world.lead[i]
    campaign = world.campaign[i]
    if type_id in _MAILING_TYPES:
        mailing = 4000 + (campaign % 500 if campaign else h % 30)
        program = _PROGRAMS[mailing % len(_PROGRAMS)]
        return mailing, f"{program}.Email {mailing}"
    if type_id in _PERSON_TYPES:
        if type_id == cat.DELETE_LEAD and h % 5 == 0:
            return lead + 1 + h % 7, person_name(lead)  # id need not equal leadId (doc sample)
        return lead, person_name(lead)
    if type_id == cat.CHANGE_DATA_VALUE:
        field_id, name, _, _ = lead_field_change(world, i)
        return field_id, name
    if type_id in (1, 3):
        page = h % len(cat.PAGES)
        return 100 + page, f"www.example.com/{cat.PAGES[page]}"
    if type_id == 2:
        return 1000 + h % 5, f"Form {1000 + h % 5}"
    if type_id in (24, 25):
        return 1000 + h % 10, f"List {1000 + h % 10}"
    if type_id in (104, 113, 114, 115, 123):
        number = h % len(_PROGRAMS)
        return 3000 + number, _PROGRAMS[number]
    if type_id == 22:
        return None, "Behavior Score"
    if type_id == 23:
        return 500 + h % 4, f"Owner {500 + h % 4}"
    if type_id == 34:
        return 7000 + h % 50, f"Opportunity {7000 + h % 50}"
    if type_id == 47:
        return 1000 + h % 20, f"Campaign {1000 + h % 20}"
    if type_id == 110:
        return 60 + h % 3, f"Webhook {60 + h % 3}"
    if type_id == 46:
        return None, "Visited the pricing page twice"
    if type_id == 100001:
        return None, "Webinar: Late Commits Explained"
    return h % 1000, f"Asset {h % 1000}"


def primary_id(world: Rows, i: int) -> int | None:
    """primaryAttributeValueId of row ``i`` (used by the ``assetIds`` filter)."""
    return _primary(world, i, world.type_id[i], mix(world.aux[i], 7))[0]


def _attr_value(world: Rows, i: int, name: str, data_type: str, h: int) -> Any:
    """One attribute value, or None when the value is empty (Marketo omits those)."""
    special = _SPECIAL.get(name)
    if special is not None:
        return special(world, i, h)
    if data_type == "integer":
        return h % 1000
    if data_type == "boolean":
        return bool(h & 1)
    if data_type == "date":
        return time.strftime("%Y-%m-%d", time.gmtime(world.event[i]))
    return f"{name} {h % 20}"


def _campaign_run(world: Rows, i: int, h: int) -> Any:
    campaign = world.campaign[i]
    return 90000 + campaign if campaign else 80000 + h % 100


def _optional(text: str, one_in: int) -> Callable[[Rows, int, int], Any]:
    def value(_world: Rows, _i: int, h: int) -> Any:
        return None if h % one_in else text  # empty on (one_in - 1) rows in one_in: omitted

    return value


def _change_value(new: bool) -> Callable[[Rows, int, int], Any]:
    def value(world: Rows, i: int, h: int) -> Any:
        if world.type_id[i] == cat.CHANGE_DATA_VALUE:
            _, _, new_value, old_value = lead_field_change(world, i)
            return new_value if new else old_value
        if world.type_id[i] == 22:
            return h % 100 + (5 if new else 0)  # scores are numbers
        return f"Status {h % 4 + (1 if new else 0)}"

    return value


_SPECIAL: dict[str, Callable[[Rows, int, int], Any]] = {
    "Lead ID": lambda w, i, h: w.lead[i],
    "Campaign Run ID": _campaign_run,
    "Step ID": lambda w, i, h: 10 + h % 5,
    "Choice Number": lambda w, i, h: h % 3,
    "Client IP Address": lambda w, i, h: f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}",
    "Query Parameters": _optional("utm_source=newsletter&utm_medium=email", 3),
    "Referrer URL": lambda w, i, h: None if h % 3 == 0 else "https://www.google.com/",
    "User Agent": lambda w, i, h: cat.USER_AGENTS[h % len(cat.USER_AGENTS)],
    "Webpage URL": lambda w, i, h: "/" + cat.PAGES[h % len(cat.PAGES)],
    "Form Fields": lambda w, i, h: f"firstName={cat.FIRST_NAMES[h % 26]}&optIn=true",
    "Link": lambda w, i, h: "https://www.example.com/" + cat.PAGES[h % len(cat.PAGES)],
    "Platform": lambda w, i, h: _PLATFORMS[h % 4],
    "Device": lambda w, i, h: _DEVICES[h % 4],
    "Is Mobile Device": lambda w, i, h: h % 4 >= 2,
    "Source Type": lambda w, i, h: ("New lead", "Web form fillout", "Web service API")[h % 3],
    "Form Name": _optional("Contact Us", 2),
    "Reason": lambda w, i, h: ("Web service API", "Form fill", "Flow action")[h % 3],
    "Source": lambda w, i, h: ("Web service API", "Marketo Flow Action", "Salesforce")[h % 3],
    "New Value": _change_value(new=True),
    "Old Value": _change_value(new=False),
    "Change Value": lambda w, i, h: "+5",
    "Email": lambda w, i, h: person_name(w.lead[i]).lower().replace(" ", ".") + "@example.com",
    "Category": lambda w, i, h: "4",
    "Details": lambda w, i, h: "550 mailbox unavailable",
    "Subcategory": lambda w, i, h: "4.2.2",
    "Minutes Attended": lambda w, i, h: 5 + h % 55,
    "Response": _optional('{"ok":true}', 2),
    "Merge IDs": lambda w, i, h: f"{w.lead[i]},{w.lead[i] + 1 + h % 9}",
}


def _attributes(world: Rows, i: int, type_def: cat.ActivityTypeDef) -> list[dict[str, Any]]:
    aux = world.aux[i]
    out = []
    for k, (name, data_type) in enumerate(type_def.attributes):
        value = _attr_value(world, i, name, data_type, mix(aux, 11 + k))
        if value is not None:
            out.append({"name": name, "value": value})
    return out


def _head(world: Rows, i: int) -> dict[str, Any]:
    aux = world.aux[i]
    row: dict[str, Any] = {}
    if (aux >> 8) % 1000 >= world.id_absent_permille:
        row["id"] = world.id_base + world.id_stride * i
    row["marketoGUID"] = world.guid(i)
    row["leadId"] = world.lead[i]
    row["activityDate"] = render_date(world.event[i], bool(aux & 0x10))
    row["activityTypeId"] = world.type_id[i]
    if world.campaign[i]:
        row["campaignId"] = world.campaign[i]
    return row


def render_activity(world: Rows, i: int) -> dict[str, Any]:
    """A row as activities.json and deletedleads.json render it."""
    type_id = world.type_id[i]
    row = _head(world, i)
    pid, pvalue = _primary(world, i, type_id, mix(world.aux[i], 7))
    if pid is not None:
        row["primaryAttributeValueId"] = pid
    if pvalue is not None:
        row["primaryAttributeValue"] = pvalue
    type_def = cat.TYPES_BY_ID[type_id]
    row["attributes"] = [] if type_id == cat.DELETE_LEAD else _attributes(world, i, type_def)
    return row


def render_lead_change(world: Rows, i: int) -> dict[str, Any]:
    """A row as leadchanges.json renders it: no primary attribute, a ``fields`` list."""
    type_id = world.type_id[i]
    row = _head(world, i)
    if type_id == cat.CHANGE_DATA_VALUE:
        field_id, name, new, old = lead_field_change(world, i)
        change: dict[str, Any] = {"id": field_id, "name": name, "newValue": new}
        if old is not None:
            change["oldValue"] = old
        row["fields"] = [change]
        row["attributes"] = [
            {"name": "Reason", "value": _SPECIAL["Reason"](world, i, mix(world.aux[i], 3))},
            {"name": "Source", "value": _SPECIAL["Source"](world, i, mix(world.aux[i], 4))},
            {"name": "Lead ID", "value": world.lead[i]},
        ]
    else:
        row["fields"] = []
        row["attributes"] = _attributes(world, i, cat.TYPES_BY_ID[type_id])
    return row
