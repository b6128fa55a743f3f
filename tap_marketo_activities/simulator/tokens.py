"""Paging tokens: opaque, base32-looking, stateless.

Marketo's tokens look like base32
(https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/paging-tokens).
Ours are base32 of a small binary record: the kind (date-based from pagingtoken.json, or a
position from a data page), the world they belong to, the ``reject_cursors`` generation they
were issued in, the ``since`` time, the position in the commit-order walk, a fingerprint of the
request's filter, and a checksum.
No server-side state: a token saved by one simulator process works in the next one serving the
same world (the quick start depends on that), and a tampered token fails its checksum.

``long=True`` pads the record with deterministic filler to about 9 KB so a GET carrying it
crosses Marketo's 8 KB URI limit (HTTP 414) and a client must fall back to ``POST ?_method=GET``.
"""

from __future__ import annotations

import base64
import binascii
import random
import struct
from dataclasses import dataclass
from zlib import crc32

DATE, POSITION = 1, 2
_FORMAT = ">BBIIqqI"  # version, kind, world, generation, since, position, filter
_VERSION = 1
_HEAD = struct.calcsize(_FORMAT)
LONG_FILLER_BYTES = 5600  # base32 expands 5 bytes to 8 characters: about 9,000 characters
# Scrambles the record so tokens look as random as Marketo's (obfuscation, not secrecy).
_KEYSTREAM = random.Random(0x4D6B746F).randbytes(_HEAD + 2)


def _scramble(data: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, _KEYSTREAM, strict=False))


class TokenError(ValueError):
    """The text is not a token this simulator issued."""


@dataclass(frozen=True)
class PagingToken:
    kind: int
    world: int
    generation: int
    since_ts: int
    position: int
    filter_fp: int = 0

    def encode(self, *, long: bool = False) -> str:
        record = struct.pack(
            _FORMAT,
            _VERSION,
            self.kind,
            self.world & 0xFFFFFFFF,
            self.generation,
            self.since_ts,
            self.position,
            self.filter_fp & 0xFFFFFFFF,
        )
        record += struct.pack(">H", crc32(record) & 0xFFFF)
        record = _scramble(record)
        if long:
            filler = random.Random(record).randbytes(LONG_FILLER_BYTES)
            record += filler
        return base64.b32encode(record).decode("ascii")


def decode(text: str) -> PagingToken:
    try:
        record = base64.b32decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise TokenError("not base32") from exc
    if len(record) < _HEAD + 2:
        raise TokenError("too short")
    plain = _scramble(record[: _HEAD + 2])
    head, check = plain[:_HEAD], plain[_HEAD:]
    if struct.pack(">H", crc32(head) & 0xFFFF) != check:
        raise TokenError("checksum mismatch")
    version, kind, world, generation, since_ts, position, filter_fp = struct.unpack(_FORMAT, head)
    if version != _VERSION or kind not in (DATE, POSITION):
        raise TokenError("unknown token version or kind")
    return PagingToken(kind, world, generation, since_ts, position, filter_fp)
