"""Stream an export CSV into rows shaped like REST's ``activities.json`` result items.

Real export files hold quoted newlines inside values, stray NUL bytes (dropped here: they
are not text, and the csv module refuses them on some Pythons), the literal ``null`` for an
empty field, any Unicode, and ``attributes`` as a JSON object (the docs' sample) or a
``[{name, value}]`` array (the SPEC's sample). Each row becomes the dict REST would have
served, so ``records.activity_record`` makes the very record the REST path makes. The
export has no ``id`` column, so ``id`` is null in records that came through bulk.
"""

from __future__ import annotations

import csv
import json
import typing as t

from tap_marketo_activities.errors import MalformedResponse

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

REQUIRED = ("marketoGUID", "activityDate", "activityTypeId")
NULL = "null"


def _without_nul(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        yield line.replace("\x00", "") if "\x00" in line else line


def _attributes(text: str | None, where: str) -> list[dict[str, t.Any]]:
    if text is None or text == "":
        return []
    try:
        value = json.loads(text)
    except ValueError:
        msg = f"{where}: attributes is not JSON ({text[:80]!r})"
        raise MalformedResponse(msg) from None
    if value is None:
        return []
    if isinstance(value, dict):
        return [{"name": k, "value": v} for k, v in value.items()]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    msg = f"{where}: attributes is neither an object nor a list ({text[:80]!r})"
    raise MalformedResponse(msg)


def rest_rows(path: Path, *, what: str) -> Iterator[dict[str, t.Any]]:
    """Yield each data row of the CSV at ``path`` as a REST-shaped dict, in file order."""
    with path.open(encoding="utf-8", errors="replace", newline="") as source:
        reader = csv.reader(_without_nul(source))
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip().lstrip("\ufeff") for name in header]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            msg = f"{what}: the file's header lacks {', '.join(missing)} (header: {header})"
            raise MalformedResponse(msg)
        for number, cells in enumerate(reader, start=2):
            if not cells:
                continue
            where = f"{what}, record {number - 1}"
            if len(cells) != len(header):
                msg = f"{where}: {len(cells)} columns where the header has {len(header)}"
                raise MalformedResponse(msg)
            row: dict[str, t.Any] = {}
            for name, cell in zip(header, cells, strict=True):
                value = None if cell == NULL else cell
                if name == "attributes":
                    row["attributes"] = _attributes(value, where)
                elif value is not None and value != "":
                    row[name] = value
            row.setdefault("attributes", [])
            yield row
