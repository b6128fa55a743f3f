"""Lead fields from describe2 (or describe), typed from Marketo's ``dataType`` (pure logic).

Every field is nullable except ``id``: Marketo answers unset fields with ``null`` or leaves
them out. ``percent`` is a number, not an integer: custom percent fields can carry decimals.
Types no Adobe page lists (``lead_function``, ``formula``...) become strings.
"""

from __future__ import annotations

import typing as t

INTEGER_TYPES = frozenset({"integer", "score"})
NUMBER_TYPES = frozenset({"float", "currency", "percent"})
_FORMATS = {"date": "date", "datetime": "date-time"}


class Field(t.NamedTuple):
    """One lead field: its REST name and Marketo ``dataType``."""

    name: str
    data_type: str


def fields_from_describe2(result: list[t.Any]) -> list[Field]:
    """``describe2.json``'s ``result[0].fields`` (name is the REST name)."""
    items = result[0].get("fields", []) if result and isinstance(result[0], dict) else []
    return [
        Field(str(item["name"]), str(item.get("dataType") or "string"))
        for item in items
        if isinstance(item, dict) and item.get("name")
    ]


def fields_from_describe(result: list[t.Any]) -> list[Field]:
    """``describe.json``: the REST name is ``rest.name``; items without ``rest`` are skipped."""
    out = []
    for item in result:
        rest = item.get("rest") if isinstance(item, dict) else None
        if isinstance(rest, dict) and rest.get("name"):
            out.append(Field(str(rest["name"]), str(item.get("dataType") or "string")))
    return out


def property_schema(data_type: str) -> dict[str, t.Any]:
    """The JSON schema of one field's values."""
    if data_type in INTEGER_TYPES:
        return {"type": ["integer", "null"]}
    if data_type in NUMBER_TYPES:
        return {"type": ["number", "null"]}
    if data_type == "boolean":
        return {"type": ["boolean", "null"]}
    if data_type in _FORMATS:
        return {"type": ["string", "null"], "format": _FORMATS[data_type]}
    return {"type": ["string", "null"]}


def lead_schema(fields: t.Iterable[Field]) -> dict[str, t.Any]:
    """The stream's schema: ``id`` required, every other field nullable."""
    properties = {field.name: property_schema(field.data_type) for field in fields}
    properties["id"] = {"type": ["integer"]}
    return {"type": "object", "properties": properties, "required": ["id"]}


def choose(fields: list[Field], wanted: list[str] | None) -> list[Field]:
    """The fields the ``lead_fields`` setting names (all when unset); ``id`` always.

    Raises ``ValueError`` naming the fields the instance does not have.
    """
    if not wanted:
        return fields
    known = {field.name: field for field in fields}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(", ".join(unknown))
    names = dict.fromkeys(["id", *wanted])
    return [known[name] for name in names if name in known]


def conform(value: t.Any, data_type: str) -> t.Any:
    """One value as its schema says (REST sends typed JSON; strings are parsed defensively)."""
    if value is None or value == "":
        return None
    if data_type in INTEGER_TYPES:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            number = float(value)
            return int(number) if number.is_integer() else number
        return value
    if data_type in NUMBER_TYPES and isinstance(value, str):
        return float(value)
    if data_type == "boolean" and isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if data_type not in INTEGER_TYPES | NUMBER_TYPES and data_type != "boolean":
        return value if isinstance(value, str) else str(value)
    return value
