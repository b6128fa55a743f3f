"""Per-type activity tables: stream names, column names, column types and typed values.

Pure functions of ``/activities/types.json`` and of one record; the streams that use them
live in ``streams.py``. The naming rules are part of the tap's contract with warehouses
(a renamed table or column breaks every query on it), so they are written down here and
in the README, and they only change with a major release:

* **Stream name**: ``activities_`` + the type's ``name`` in snake case (ASCII-folded,
  lower case, every run of other characters one ``_``). When several types normalise to
  the same name, the one with the lowest id keeps it and every other gets ``_<id>``
  appended; Marketo hands out ids in increasing order, so an existing name never moves
  when a new type arrives. A name that folds to nothing becomes ``activities_type_<id>``.
* **Column name**: an attribute's ``name`` in snake case by the same rule. The primary
  attribute (``Mailing ID`` for Send Email) is a column too, holding
  ``primaryAttributeValueId`` when its type is numeric and ``primaryAttributeValue``
  otherwise. A column that would collide with a common field or an earlier column gets
  ``_attribute`` appended (then ``_2``, ``_3``...), in the order types.json lists them.
* **Column type**: from ``dataType``: integer; float and currency as numbers; boolean;
  date (``format: date``); datetime (``format: date-time``); string, text, email, url and
  phone as strings; anything else as a string.
* **Values that do not fit** their column's type are kept as text in
  ``extra_attributes`` (a warning once per column); attributes the type does not
  describe go there too, with their own JSON values.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t
import unicodedata
from dataclasses import dataclass, field

from singer_sdk import typing as th

from tap_marketo_activities.records import format_datetime, parse_datetime

STREAM_PREFIX = "activities_"
EXTRA_ATTRIBUTES = "extra_attributes"
_NOT_WORD = re.compile(r"[^a-z0-9]+")

#: dataType -> JSON schema type of the column.
_JSON_TYPES: dict[str, th.JSONTypeHelper] = {
    "integer": th.IntegerType(),
    "float": th.NumberType(),
    "currency": th.NumberType(),
    "boolean": th.BooleanType(),
    "date": th.DateType(),
    "datetime": th.DateTimeType(),
}
_NUMERIC = frozenset({"integer", "float", "currency"})


def snake_case(text: str) -> str:
    """``'Campaign Run ID'`` -> ``'campaign_run_id'``; ASCII only; may return ''."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_WORD.sub("_", ascii_text.lower()).strip("_")


def stream_names(types: t.Iterable[dict[str, t.Any]]) -> dict[int, str]:
    """Type id -> stream name, by the rule in the module docstring."""
    by_base: dict[str, list[int]] = {}
    for item in types:
        type_id = int(item["id"])
        base = snake_case(str(item.get("name") or "")) or f"type_{type_id}"
        by_base.setdefault(base, []).append(type_id)
    names: dict[int, str] = {}
    for base, ids in by_base.items():
        first, *others = sorted(ids)
        names[first] = f"{STREAM_PREFIX}{base}"
        for type_id in others:
            names[type_id] = f"{STREAM_PREFIX}{base}_{type_id}"
    return names


@dataclass(frozen=True)
class Column:
    """One typed column of a per-type table."""

    name: str
    attribute: str  # Marketo's attribute name
    data_type: str  # Marketo's dataType, lower case
    primary: bool = False

    @property
    def json_type(self) -> th.JSONTypeHelper:
        """The column's JSON schema type."""
        return _JSON_TYPES.get(self.data_type, th.StringType())


@dataclass
class TypeLayout:
    """How one activity type's rows become columns."""

    type_id: int
    stream_name: str
    columns: list[Column] = field(default_factory=list)


def type_layout(item: dict[str, t.Any], stream_name: str, reserved: t.Iterable[str]) -> TypeLayout:
    """Columns for one types.json entry; names never collide with ``reserved`` or each other."""
    taken = set(reserved)
    layout = TypeLayout(int(item["id"]), stream_name)
    described: list[tuple[dict[str, t.Any], bool]] = []
    if isinstance(item.get("primaryAttribute"), dict):
        described.append((item["primaryAttribute"], True))
    described += [(a, False) for a in item.get("attributes") or [] if isinstance(a, dict)]
    for attribute, primary in described:
        name = str(attribute.get("name") or "")
        if not name:
            continue
        column = snake_case(name) or "attribute"
        if column in taken:
            column = f"{column}_attribute"
            suffix = 2
            while column in taken:
                column = f"{snake_case(name) or 'attribute'}_attribute_{suffix}"
                suffix += 1
        taken.add(column)
        data_type = str(attribute.get("dataType") or "string").lower()
        layout.columns.append(Column(column, name, data_type, primary))
    return layout


class NotOfType(ValueError):
    """A value that does not parse as its column's declared type."""


def coerce(value: t.Any, data_type: str) -> t.Any:
    """A Marketo attribute value as its column's JSON type; raises NotOfType."""
    if value is None or value == "":
        return None
    try:
        if data_type == "integer":
            return _as_integer(value)
        if data_type in _NUMERIC:
            if isinstance(value, bool):
                raise NotOfType(value)
            return float(value)
        if data_type == "boolean":
            return _as_boolean(value)
        if data_type == "date":
            return dt.date.fromisoformat(str(value)[:10]).isoformat()
        if data_type == "datetime":
            return format_datetime(parse_datetime(str(value)))
    except (TypeError, ValueError, OverflowError) as exc:
        raise NotOfType(value) from exc
    return value if isinstance(value, str) else _as_text(value)


def _as_integer(value: t.Any) -> int:
    if isinstance(value, bool):
        raise NotOfType(value)
    if isinstance(value, int):
        return value
    number = float(value) if not isinstance(value, str) else None
    if number is None:
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        number = float(text)
    if not number.is_integer():
        raise NotOfType(value)
    return int(number)


def _as_boolean(value: t.Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise NotOfType(value)


def _as_text(value: t.Any) -> str:
    import json  # noqa: PLC0415 (rare path: structured values in a string column)

    return json.dumps(value, sort_keys=True)


def typed_record(
    record: dict[str, t.Any],
    layout: TypeLayout,
    *,
    common: t.Iterable[str],
    columns_in_schema: t.Container[str],
    on_misfit: t.Callable[[Column, t.Any], None],
) -> dict[str, t.Any]:
    """A unified-stream record as a row of its per-type table: every column, null if absent.

    ``columns_in_schema`` is the stream's schema as the run sees it: a column discovered
    after the catalog was written is not in it, and its values go to ``extra_attributes``
    instead of being dropped.
    """
    row = {name: record.get(name) for name in common}
    extra: dict[str, t.Any] = {}
    attributes = dict(record.get("attributes") or {})
    for column in layout.columns:
        if column.primary:
            use_id = column.data_type in _NUMERIC
            value = record.get("primaryAttributeValueId" if use_id else "primaryAttributeValue")
        else:
            value = attributes.pop(column.attribute, None)
        if column.name not in columns_in_schema:
            if value is not None:
                extra[column.attribute] = value
            continue
        try:
            row[column.name] = coerce(value, column.data_type)
        except NotOfType:
            on_misfit(column, value)
            row[column.name] = None
            extra[column.attribute] = value if isinstance(value, str) else _as_text(value)
    # What is left has no column: the type's description does not list it.
    extra.update(attributes)
    row[EXTRA_ATTRIBUTES] = extra
    return row
