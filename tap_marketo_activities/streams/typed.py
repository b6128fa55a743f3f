"""Per-type activity tables: stream names, column names, column types and typed values.

Pure functions of ``/activities/types.json`` and of one record; the streams that use them
live in ``activities.py``. The naming rules are part of the tap's contract with warehouses
(a renamed table or column breaks every query on it), so they are written down here and
in the README, and they only change with a major release:

* **Stream name**: ``activities_`` + the type's ``name`` in snake case (ASCII-folded,
  lower case, every run of other characters one ``_``). Types are named in increasing id
  order: a type whose name is already taken (by a type of the same name, or by an earlier
  ``_<id>`` name: ``Foo`` id 6 after ``Foo 6``) gets ``_<id>`` appended, then ``_2``,
  ``_3``... while that is taken too. Marketo hands out ids in increasing order, so an
  existing name never moves when a new type arrives. A name that folds to nothing becomes
  ``activities_type_<id>``.
* **Column name**: an attribute's ``name`` in snake case by the same rule. The primary
  attribute (``Mailing ID`` for Send Email) is a column too, holding
  ``primaryAttributeValueId`` when its type is numeric and ``primaryAttributeValue``
  otherwise. A column that would collide with a common field or an earlier column gets
  ``_attribute`` appended (then ``_2``, ``_3``...), in the order types.json lists them.
  Names collide when they are equal after the folding warehouses and targets apply
  (``clash_key``: compared without case and without separators), so
  the attribute ``Lead ID`` is ``lead_id_attribute`` next to the common ``leadId``: a
  target that snake-cases or upper-cases names (target-snowflake's ``normalise_casing``)
  still gets distinct columns.
* **Column type**: from ``dataType``: integer; float and currency as numbers; boolean;
  date (``format: date``); datetime (``format: date-time``); string, text, email, url and
  phone as strings; anything else as a string.
* **Values that do not fit** their column's type are kept as text in
  ``extra_attributes`` (a warning once per column); attributes the type does not
  describe go there too, with their own JSON values. Integers outside the signed 64-bit
  range and non-finite numbers (NaN, infinities, or too large for a double) do not fit:
  no warehouse column type holds them everywhere, so they are kept as text the same way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
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
_INT64 = range(-(2**63), 2**63)


def snake_case(text: str) -> str:
    """``'Campaign Run ID'`` -> ``'campaign_run_id'``; ASCII only; may return ''."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_WORD.sub("_", ascii_text.lower()).strip("_")


def clash_key(name: str) -> str:
    """The name as every target folds it alike: ``leadId`` and ``lead_id`` -> ``leadid``.

    Targets fold names before they reach the warehouse, each its own way: the SDK snake-cases
    camelCase, target-snowflake's ``normalise_casing`` lower-cases runs of capitals first
    (``marketoGUID`` -> ``marketoguid``), warehouses fold case. Every one of them only changes
    case and adds or removes separators, so names equal without case and separators may end
    up one column; they count as a clash.
    """
    return snake_case(name).replace("_", "")


def _first_free(candidates: t.Iterator[str], taken: set[str]) -> str:
    """The first candidate whose clash key is not taken; marks it taken."""
    for name in candidates:
        if clash_key(name) not in taken:
            taken.add(clash_key(name))
            return name
    raise AssertionError("unreachable: the candidates never end")  # pragma: no cover


def stream_names(types: t.Iterable[dict[str, t.Any]]) -> dict[int, str]:
    """Type id -> stream name, by the rule in the module docstring."""
    by_id = {int(item["id"]): str(item.get("name") or "") for item in types}
    taken: set[str] = set()
    names: dict[int, str] = {}
    for type_id in sorted(by_id):
        base = f"{STREAM_PREFIX}{snake_case(by_id[type_id]) or f'type_{type_id}'}"
        suffixed = f"{base}_{type_id}"
        candidates = itertools.chain(
            (base, suffixed), (f"{suffixed}_{n}" for n in itertools.count(2))
        )
        names[type_id] = _first_free(candidates, taken)
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
    taken = {clash_key(name) for name in reserved}
    layout = TypeLayout(int(item["id"]), stream_name)
    described: list[tuple[dict[str, t.Any], bool]] = []
    if isinstance(item.get("primaryAttribute"), dict):
        described.append((item["primaryAttribute"], True))
    described += [(a, False) for a in item.get("attributes") or [] if isinstance(a, dict)]
    for attribute, primary in described:
        name = str(attribute.get("name") or "")
        if not name:
            continue
        base = snake_case(name) or "attribute"
        candidates = itertools.chain(
            (base, f"{base}_attribute"), (f"{base}_attribute_{n}" for n in itertools.count(2))
        )
        column = _first_free(candidates, taken)
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
            number = float(value)
            if not math.isfinite(number):
                raise NotOfType(value)
            return number
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
        whole = value
    else:
        text = value.strip() if isinstance(value, str) else None
        if text is not None and re.fullmatch(r"[+-]?\d+", text):
            whole = int(text)
        else:
            number = float(value if text is None else text)
            if not number.is_integer():  # NaN and the infinities are not integers either
                raise NotOfType(value)
            whole = int(number)
    if whole not in _INT64:
        raise NotOfType(value)
    return whole


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
