"""Verified export files of one run, shared by the partitions of ``activities``.

``activities`` reads its types in partitions of at most 10 (REST's limit per call), but an
export job takes any number of types. So the first partition to need a window creates one
job for the types of every partition starting from the same point, downloads and verifies
its file once, and the others read the same file (each keeps its own types' rows): one job
per window, not one per group. The file is parsed once too: each group that reads it whole
leaves the rows it did not want for the next (``csvfile.Leftovers``). Files live in a
temporary directory removed at the end of the run.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import typing as t
from dataclasses import dataclass
from pathlib import Path

from tap_marketo_activities.sources.bulk.csvfile import Leftovers, numbered_rows

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Collection, Iterable, Iterator
    from types import TracebackType

    from tap_marketo_activities.sources.bulk.windows import Window


@dataclass(frozen=True)
class CachedExport:
    export_id: str
    path: Path
    size: int
    #: Earliest moment the file's snapshot can have been taken (``JobStatus.snapshot_floor``).
    snapshot: dt.datetime | None = None


class ExportCache:
    """Files by (window, job types); a context manager that removes them on exit."""

    def __init__(self, work_dir: Path | None = None) -> None:
        self._work_dir = work_dir
        self._dir: Path | None = None
        self._files: dict[tuple[str, str, frozenset[int]], CachedExport] = {}
        self._fresh_types: frozenset[int] | None = None
        self._leftovers: dict[Path, Leftovers] = {}
        self._spills = itertools.count(1)
        #: Why a job of this run could not be used; the partitions after it read REST.
        self.gave_up: str | None = None

    def __enter__(self) -> ExportCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._files.clear()
        self._leftovers.clear()

    def fresh_types(self, compute: Callable[[], Iterable[int]]) -> frozenset[int]:
        """Types of the partitions with no bookmark, as first computed in this run."""
        if self._fresh_types is None:
            self._fresh_types = frozenset(compute())
        return self._fresh_types

    @staticmethod
    def _key(window: Window, types: Iterable[int]) -> tuple[str, str, frozenset[int]]:
        return window.start.isoformat(), window.end.isoformat(), frozenset(types)

    def get(self, window: Window, types: Iterable[int]) -> CachedExport | None:
        return self._files.get(self._key(window, types))

    def put(
        self,
        window: Window,
        types: Iterable[int],
        export_id: str,
        src: Path,
        snapshot: dt.datetime | None = None,
    ) -> CachedExport:
        """Move a verified file into the cache and remember it."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="tap-marketo-exports-", dir=self._work_dir))
        path = self._dir / f"{export_id}.csv"
        shutil.move(src, path)
        entry = CachedExport(export_id, path, path.stat().st_size, snapshot)
        self._files[self._key(window, types)] = entry
        return entry

    def rows(
        self, path: Path, *, what: str, type_ids: Collection[int], after: int = 0
    ) -> Iterator[tuple[int, dict[str, t.Any]]]:
        """``csvfile.numbered_rows`` of a file, reading what earlier groups left when it can.

        A group that reads a cached file from its first row leaves the rows of other types
        behind for the groups after it, once it has read to the end (a pass stopped half
        way leaves nothing, and the next group reads the export itself). The leftovers take
        at most the export's size again on disk, in the same temporary folder.
        """
        source = self._leftovers.get(path)
        spill = None
        if not after and self._dir is not None and path.parent == self._dir:
            spill = self._dir / f"{path.stem}.left-{next(self._spills)}.jsonl"
        kept = False
        try:
            yield from numbered_rows(
                path, what=what, type_ids=type_ids, after=after, source=source, spill=spill
            )
            # None for an empty file or a full disk; complete whenever it is there (_Spill).
            if spill is not None and spill.is_file():
                taken = frozenset(type_ids)
                if source is not None and source.serves(type_ids):
                    taken |= source.taken
                self._leftovers[path] = Leftovers(spill, taken)
                kept = True
                if source is not None:
                    source.path.unlink(missing_ok=True)
        finally:
            if spill is not None and not kept:
                with contextlib.suppress(OSError):
                    spill.unlink(missing_ok=True)
