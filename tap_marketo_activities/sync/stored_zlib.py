"""base64 of a zlib stream of stored (uncompressed) blocks, rebuilt only past its unchanged part.

An overlap set of UUID digests does not compress, so it is written as stored deflate
blocks, which any zlib reader inflates. The set is written after every page that
delivered a row, and between two writes only its newest seconds change: so whole
blocks of the stream (and the base64 text over them) stay the same, and are kept,
while the rest, the last block and the Adler-32 checksum are made again. Building the
stream here, rather than with ``zlib.compress(raw, 0)`` and encoding it anew, avoids
two passes over the whole set per page.
"""

from __future__ import annotations

import base64
import struct
import zlib

#: Raw bytes a stored block holds: deflate's maximum, also a multiple of 3.
BLOCK = 65_535
_HEADER = b"\x78\x01"  # deflate, 32 KB window, no dictionary, "fastest" (header check valid)


def _block_header(length: int, *, final: bool) -> bytes:
    return struct.pack("<BHH", 1 if final else 0, length, length ^ 0xFFFF)


def stored_stream(raw: bytes) -> bytes:
    """The whole zlib stream of ``raw`` in stored blocks (what :class:`StoredText` encodes)."""
    out = bytearray(_HEADER)
    count = max(1, -(-len(raw) // BLOCK))
    for index in range(count):
        chunk = raw[index * BLOCK : (index + 1) * BLOCK]
        out += _block_header(len(chunk), final=index == count - 1)
        out += chunk
    out += struct.pack(">I", zlib.adler32(raw))
    return bytes(out)


class StoredText:
    """base64 of ``stored_stream(raw)``, reusing what the previous call's raw shares with this one.

    Kept between calls: the text over the stream's leading non-final blocks (cut to a
    whole number of base64 quanta) and the running Adler-32 at each block's end.
    """

    def __init__(self) -> None:
        self._blocks = 0  # non-final blocks the kept text covers (partly, for the last)
        self._text = ""  # base64 of the stream's first _cut(self._blocks) bytes
        self._adlers = [zlib.adler32(b"")]  # Adler-32 of raw[: i * BLOCK], i = 0..

    @staticmethod
    def _cut(blocks: int) -> int:
        """Bytes of the stream before block ``blocks``, down to a multiple of 3."""
        end = len(_HEADER) + blocks * (5 + BLOCK)
        return end - end % 3

    def text(self, raw: bytes, unchanged: int) -> str:
        """The text for ``raw``, whose first ``unchanged`` bytes equal the previous call's."""
        kept = min(self._blocks, unchanged // BLOCK, max(0, -(-len(raw) // BLOCK) - 1))
        start = kept * BLOCK  # raw bytes of the kept blocks
        cut = self._cut(kept)
        stream_end = len(_HEADER) + kept * (5 + BLOCK)
        # The stream from ``cut``: the header (no block kept), or the last bytes of the
        # last kept block's data, then every block after it.
        tail = bytearray(_HEADER if kept == 0 else raw[start - (stream_end - cut) : start])
        count = max(1, -(-(len(raw) - start) // BLOCK))
        for index in range(count):
            chunk = raw[start + index * BLOCK : start + (index + 1) * BLOCK]
            tail += _block_header(len(chunk), final=index == count - 1)
            tail += chunk
        del self._adlers[kept + 1 :]
        running = self._adlers[kept]
        for index in range(count - 1):  # the new non-final blocks' running checksums
            running = zlib.adler32(
                raw[start + index * BLOCK : start + (index + 1) * BLOCK], running
            )
            self._adlers.append(running)
        checksum = zlib.adler32(raw[start + (count - 1) * BLOCK :], running)
        tail += struct.pack(">I", checksum)
        text = self._text[: cut // 3 * 4] + base64.b64encode(bytes(tail)).decode("ascii")
        self._blocks = kept + count - 1
        self._text = text[: self._cut(self._blocks) // 3 * 4]
        return text
