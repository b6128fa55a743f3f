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
columns, and nothing more (their attributes are not parsed). A group that reads the whole
file also writes those other rows, cells and numbers as parsed, to a file of leftovers
(:class:`Leftovers`), which the next group reads instead of parsing the CSV again: with k
groups the CSV is parsed once, not k times (three groups, 53,904 rows: 391 -> 213 ms).
"""

from __future__ import annotations

import contextlib
import csv
import json
import typing as t
from dataclasses import dataclass

import msgspec.json

from tap_marketo_activities.errors import MalformedResponse
from tap_marketo_activities.sources.bulk.filecheck import allow_fields_up_to

if t.TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator
    from pathlib import Path

REQUIRED = ("marketoGUID", "activityDate", "activityTypeId")
NULL = "null"
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


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


@dataclass(frozen=True)
class Leftovers:
    """The rows of an export file that the groups which read it so far did not want.

    One JSON line per row, ``[number, cell, ...]`` with the cells as the CSV parser gave
    them, after a first line holding the header; written by :func:`numbered_rows` while a
    group reads the whole file. Every row of a type outside ``taken`` is here, so a group
    whose types are all outside ``taken`` can read this file instead of the export.
    """

    path: Path
    taken: frozenset[int]

    def serves(self, type_ids: Collection[int]) -> bool:
        return self.taken.isdisjoint(type_ids)


def numbered_rows(
    path: Path,
    *,
    what: str,
    type_ids: Collection[int] | None = None,
    after: int = 0,
    source: Leftovers | None = None,
    spill: Path | None = None,
) -> Iterator[tuple[int, dict[str, t.Any]]]:
    """(number, REST-shaped row) of each data row after row ``after`` of one of ``type_ids``.

    Data rows are numbered 1, 2, ... in file order whether they are yielded or not, so a
    number saved in the state names the same row in a later run. A row whose
    ``activityTypeId`` is not an integer is yielded, for the record builder to refuse.

    With ``source``, the rows come from those leftovers of the file at ``path`` (numbers
    and order as in the file). With ``spill`` and ``type_ids`` (and ``after`` 0), the rows
    of other types are written there as leftovers: complete only once this generator has
    run to its end, and only if the file is there then (leftovers are a saving, not a
    duty: an empty export writes none, and a failed write removes the file and goes on).
    """
    header: list[str] | None
    with contextlib.ExitStack() as files:
        if source is not None and type_ids is not None and source.serves(type_ids):
            header, numbered = _leftover_cells(files.enter_context(source.path.open("rb")))
        else:
            allow_fields_up_to(path.stat().st_size)
            # bytes that are not UTF-8 were counted, reported and the file kept (filecheck)
            text = files.enter_context(path.open(encoding="utf-8", errors="replace", newline=""))
            header, numbered = _csv_cells(text, what)
        if header is None:
            return
        type_column = header.index("activityTypeId")
        out = None
        if spill is not None and type_ids is not None and not after:
            out = files.enter_context(_Spill(spill, header))
        for number, cells in numbered:
            if number <= after:
                continue
            if type_ids is not None:
                try:
                    wanted = int(cells[type_column]) in type_ids
                except ValueError:
                    wanted = True
                if not wanted:
                    if out is not None:
                        out.write([number, *cells])
                    continue
            row = {
                name: cell
                for name, cell in zip(header, cells, strict=True)
                if cell and cell != NULL
            }
            text_value = row.get("attributes")
            row["attributes"] = [] if text_value is None else _attributes(text_value, what, number)
            yield number, row


class _Spill:
    """A leftovers file being written, best effort: a full disk costs a parse, not the run.

    It is written under a ``.part`` name and takes its own name only when the pass that
    writes it ends normally, so a file under that name is always complete.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        self._path = path
        self._part = path.with_name(path.name + ".part")
        self._out: t.BinaryIO | None = None
        try:
            self._out = self._part.open("wb")
        except OSError:
            return
        self.write(header)

    def write(self, item: list[t.Any]) -> None:
        if self._out is None:
            return
        try:
            self._out.write(_ENCODER.encode(item) + b"\n")
        except OSError:
            self._give_up()

    def _give_up(self) -> None:
        out, self._out = self._out, None
        with contextlib.suppress(OSError):
            if out is not None:
                out.close()
        with contextlib.suppress(OSError):
            self._part.unlink(missing_ok=True)

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._out is None:
            return
        if exc_type is not None:  # the pass failed or was stopped: the rows are not all here
            self._give_up()
            return
        try:
            self._out.close()
            self._out = None
            self._part.replace(self._path)
        except OSError:
            self._give_up()


def _csv_cells(
    source: t.IO[str], what: str
) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """The export's header (checked) and its data rows, numbered, each of the header's width."""
    reader = csv.reader(_without_nul(source))
    header = next(reader, None)
    if header is None:
        return None, iter(())
    header = [name.strip().lstrip("\ufeff") for name in header]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        msg = f"{what}: the file's header lacks {', '.join(missing)} (header: {header})"
        raise MalformedResponse(msg)
    return header, _numbered(reader, len(header), what)


def _numbered(
    reader: Iterator[list[str]], width: int, what: str
) -> Iterator[tuple[int, list[str]]]:
    number = 0
    for cells in reader:
        if not cells:
            continue
        number += 1
        if len(cells) != width:
            msg = f"{what}, record {number}: {len(cells)} columns where the header has {width}"
            raise MalformedResponse(msg)
        yield number, cells


def _leftover_cells(source: t.BinaryIO) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Leftovers as :func:`_csv_cells` gives the export (our own file: checked when written)."""
    header = _DECODER.decode(source.readline())
    return header, _leftover_numbered(source)


def _leftover_numbered(source: t.BinaryIO) -> Iterator[tuple[int, list[str]]]:
    for line in source:
        number, *cells = _DECODER.decode(line)
        yield number, cells
