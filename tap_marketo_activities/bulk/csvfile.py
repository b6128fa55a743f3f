"""Stream an export CSV into rows shaped like REST's ``activities.json`` result items.

Real export files hold quoted newlines inside values, stray NUL bytes (dropped here: they
are not text, and the csv module refuses them on some Pythons), the literal ``null`` for an
empty field, any Unicode, and ``attributes`` as a JSON object (the docs' sample) or a
``[{name, value}]`` array (the SPEC's sample). Each row becomes the dict REST would have
served (``attributes`` a list, or the file's object as it is: ``records.attributes_object``
reads both), so ``records.activity_record`` makes the very record the REST path makes. The
export has no ``id`` column, so ``id`` is null in records that came through bulk.

One file serves every type group of a window, so each group reads it asking for its own
types (:func:`numbered_rows`): the other rows are counted and checked for their number of
columns, and nothing more (their attributes are not parsed).
"""

from __future__ import annotations

import csv
import json
import typing as t

import msgspec.json

from tap_marketo_activities.errors import MalformedResponse

if t.TYPE_CHECKING:
    from collections.abc import Container, Iterable, Iterator
    from pathlib import Path

REQUIRED = ("marketoGUID", "activityDate", "activityTypeId")
NULL = "null"
_DECODER = msgspec.json.Decoder()


def _without_nul(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        yield line.replace("\x00", "") if "\x00" in line else line


def _attributes(text: str, what: str, number: int) -> t.Any:
    """The attributes cell: a JSON object or ``[{name, value}]`` list (checked)."""
    try:
        value = _DECODER.decode(text)
    except ValueError:  # msgspec refuses NaN and the like, which Python's parser reads
        try:
            value = json.loads(text)
        except ValueError:
            msg = f"{what}, record {number}: attributes is not JSON ({text[:80]!r})"
            raise MalformedResponse(msg) from None
    if value is None:
        return []
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    msg = f"{what}, record {number}: attributes is neither an object nor a list ({text[:80]!r})"
    raise MalformedResponse(msg)


def rest_rows(path: Path, *, what: str) -> Iterator[dict[str, t.Any]]:
    """Yield each data row of the CSV at ``path`` as a REST-shaped dict, in file order."""
    for _, row in numbered_rows(path, what=what):
        yield row


def numbered_rows(
    path: Path, *, what: str, type_ids: Container[int] | None = None, after: int = 0
) -> Iterator[tuple[int, dict[str, t.Any]]]:
    """(number, REST-shaped row) of each data row after row ``after`` of one of ``type_ids``.

    Data rows are numbered 1, 2, ... in file order whether they are yielded or not, so a
    number saved in the state names the same row in a later run. A row whose
    ``activityTypeId`` is not an integer is yielded, for the record builder to refuse.
    """
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
        width = len(header)
        type_column = header.index("activityTypeId")
        number = 0
        for cells in reader:
            if not cells:
                continue
            number += 1
            if len(cells) != width:
                msg = f"{what}, record {number}: {len(cells)} columns where the header has {width}"
                raise MalformedResponse(msg)
            if number <= after:
                continue
            if type_ids is not None:
                try:
                    wanted = int(cells[type_column]) in type_ids
                except ValueError:
                    wanted = True
                if not wanted:
                    continue
            row = {
                name: cell
                for name, cell in zip(header, cells, strict=True)
                if cell and cell != NULL
            }
            text = row.get("attributes")
            row["attributes"] = [] if text is None else _attributes(text, what, number)
            yield number, row
