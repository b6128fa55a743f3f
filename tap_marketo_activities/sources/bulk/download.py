"""Download an export file to disk, resuming with HTTP Range, then check its SHA-256.

The file goes to a temporary file, never into memory (a month of a big instance is
gigabytes), and it is verified against ``fileChecksum`` before a single row is read from it:
a half-written or corrupted file must not emit rows that the bookmark then steps over.
"""

from __future__ import annotations

import hashlib
import typing as t

from tap_marketo_activities.sources.bulk.errors import ChecksumMismatch, DownloadBroken
from tap_marketo_activities.sources.bulk.progress import CountingFile

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tap_marketo_activities.sources.bulk.transport import BulkTransport

_BLOCK = 1 << 20


def fetch(
    transport: BulkTransport,
    path: str,
    dest: Path,
    *,
    max_breaks: int,
    on_break: Callable[[int, str], None] | None = None,
    on_size: Callable[[int], None] | None = None,
) -> int:
    """Download ``path`` into ``dest`` (resuming what is there); return the file's size.

    A broken connection resumes from the bytes on disk, ``max_breaks`` times at most.
    ``FileNotReady`` (404) passes through to the caller, who decides whether to wait.
    ``on_size`` hears the bytes on disk after every write (progress lines).
    """
    breaks = 0
    with dest.open("ab") as raw:
        out: t.BinaryIO = (
            raw if on_size is None else t.cast("t.BinaryIO", CountingFile(raw, on_size))
        )
        while True:
            have = out.tell()
            try:
                total = transport.download(path, out, have)
            except DownloadBroken as exc:
                breaks += 1
                if breaks > max_breaks:
                    raise
                if on_break is not None:
                    on_break(out.tell(), str(exc))
                continue
            size = out.tell()
            if total < 0 or size == total:
                return size
            breaks += 1
            if breaks > max_breaks:
                msg = f"the file ended at byte {size} of {total}"
                raise DownloadBroken(msg)
            if on_break is not None:
                on_break(size, f"short answer ({size} of {total} bytes)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


RETRY_ADVICE = "Run the tap again; if it persists, set backfill_method to rest."


def verify(path: Path, checksum: str | None, *, what: str, advice: str = RETRY_ADVICE) -> None:
    """Raise ``ChecksumMismatch`` unless the file's SHA-256 is ``checksum`` ("sha256:<hex>").

    A status without a checksum is refused too: the check is what lets us trust the file.
    ``advice`` ends that message (lead exports have no REST path to point to).
    """
    expected = (checksum or "").strip()
    algorithm, _, hex_digest = expected.partition(":")
    if algorithm.lower() != "sha256" or not hex_digest:
        msg = (
            f"{what}: Marketo gave no usable fileChecksum ({checksum!r}); nothing from the file "
            f"was emitted. {advice}"
        )
        raise ChecksumMismatch(msg)
    actual = sha256_of(path)
    if actual != hex_digest.lower():
        msg = (
            f"{what}: the downloaded file's SHA-256 is {actual}, but Marketo's fileChecksum "
            f"is {hex_digest}; nothing from the file was emitted and the bookmark did not "
            "move. Run the tap again to download it anew."
        )
        raise ChecksumMismatch(msg)
