"""The overlap set: keys already delivered, by ``activityDate``, and their compact encoding.

A pass skips a re-read row whose key is in this set (``incremental.PartitionSync``); the
state stores it encoded (sorted stamps, varints, 64-bit digests, zlib where it pays,
base64), and decoding refuses anything the encoder cannot have written.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import typing as t
import zlib

from tap_marketo_activities.sync.stored_zlib import StoredText

if t.TYPE_CHECKING:
    import datetime as dt

_Key = int | bytes
_MASK = (1 << 64) - 1
_MAX_EXACT = 1 << 62
_DIGEST_BYTES = 8
_MAX_VARINT_BYTES = 10  # 70 bits: every value the encoder writes fits
_MAX_STAMP = 253_402_300_799  # 9999-12-31T23:59:59Z

# Bounds on a decoded overlap set (overlap.keys or cursor.pending). The README's measured
# load, 20,000 keys an hour with a 60-minute lookback, takes 224 KB of text with digest keys
# (about 165 KB inflated); these allow 25 times that, and decode in well under a second.
MAX_SET_KEYS = 500_000
MAX_SET_BYTES = 6 * 1024 * 1024  # inflated
MAX_SET_TEXT = 9 * 1024 * 1024  # base64 characters (zlib cannot shrink random digests)


class OverlapSetError(ValueError):
    """An encoded overlap set that the encoder cannot have written, or one over the bounds."""


# How much of an encoded set is compressed to judge whether compressing it pays.
_SAMPLE = 4096


def _normal_key(key: str) -> _Key:
    """Numeric GUIDs are kept exactly; any other GUID as a 64-bit BLAKE2b digest.

    A digest keeps the overlap set under 256 KB at 20,000 rows an hour whatever
    Marketo's GUIDs look like. Two distinct GUIDs colliding would hide one row; with
    64 bits and ~20,000 keys per horizon that is about 1 in 10^10 per run.
    """
    if key.isdigit() and (key == "0" or key[0] != "0") and len(key) < 19:
        value = int(key)
        if value < _MAX_EXACT:
            return value
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


def fingerprint(key: _Key) -> int:
    """64 bits for a normalized key (``_normal_key``): a digest as is, a number mixed.

    Numeric GUIDs are sequential, and XORs of small consecutive numbers collide easily
    ({1, 2, 3} and {} both give 0); the splitmix64 finalizer spreads them, and being a
    bijection it keeps distinct numbers distinct.
    """
    if isinstance(key, bytes):
        return int.from_bytes(key, "big")
    z = (key + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _varint(value: int, out: bytearray) -> None:
    if value < 0:
        # A negative value would never shift down to zero: refuse instead of looping.
        msg = f"cannot encode {value} (a time before 1970?)"
        raise ValueError(msg)
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """One varint of at most 64 bits, so a crafted run of 0xFF bytes cannot build a huge int."""
    shift = value = 0
    end = min(len(data), pos + _MAX_VARINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    msg = "truncated" if pos >= len(data) else "a number longer than 64 bits"
    raise OverlapSetError(msg)


def _inflate(text: str) -> bytes:
    """base64 then zlib, refusing anything that inflates past MAX_SET_BYTES (a zlib bomb)."""
    if len(text) > MAX_SET_TEXT:
        msg = f"{len(text)} characters, more than the {MAX_SET_TEXT} an overlap set may take"
        raise OverlapSetError(msg)
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    inflater = zlib.decompressobj()
    data = inflater.decompress(raw, MAX_SET_BYTES + 1)
    if len(data) > MAX_SET_BYTES or inflater.unconsumed_tail:
        msg = f"inflates to more than {MAX_SET_BYTES} bytes"
        raise OverlapSetError(msg)
    if not inflater.eof or inflater.unused_data:
        msg = "not one complete zlib stream"
        raise OverlapSetError(msg)
    return data


class OverlapSet:
    """Keys delivered recently, each with its ``activityDate`` (epoch seconds).

    A pass writes the set into the state after every page that delivered a row, and a
    page adds keys near the newest seconds while pruning drops the oldest: so the set is
    kept grouped by second, in stamp order, with each group's encoding and the last
    encoding cached, and :meth:`encode` rebuilds only the seconds changed since, and
    only the zlib blocks after them (a busy hour's 60,000 UUID keys in 200 pages: 3.5 ->
    1.1 us of encoding a row).
    """

    def __init__(self) -> None:
        self._stamps: dict[_Key, int] = {}
        self._groups: dict[int, set[_Key]] = {}
        self._encoded: dict[int, bytes] = {}
        #: Each second's (rows, XOR of their prints), kept like ``_encoded`` (``tallies``).
        self._xors: dict[int, tuple[int, int]] = {}
        #: Stamps of the non-empty groups, ascending.
        self._order: list[int] = []
        #: The last encoding: its raw bytes, the stamps it holds and where each one's entry
        #: starts; ``_dirty`` is the lowest stamp changed since (None: nothing changed).
        self._raw = b""
        self._raw_order: list[int] = []
        self._raw_starts: list[int] = []
        self._dirty: int | None = None
        self._text: str | None = None
        self._stored = StoredText()

    def __len__(self) -> int:
        return len(self._stamps)

    def __contains__(self, key: str) -> bool:
        return _normal_key(key) in self._stamps

    def has(self, key: _Key) -> bool:
        """Membership of a key already passed through ``_normal_key`` (hashed once per row)."""
        return key in self._stamps

    def _touch(self, stamp: int) -> None:
        self._text = None
        self._encoded.pop(stamp, None)
        self._xors.pop(stamp, None)
        if self._dirty is None or stamp < self._dirty:
            self._dirty = stamp

    def _put(self, key: _Key, stamp: int) -> None:
        old = self._stamps.get(key)
        if old == stamp:
            return
        if old is not None:
            previous = self._groups[old]
            previous.discard(key)
            if not previous:
                del self._groups[old]
                del self._order[bisect.bisect_left(self._order, old)]
            self._touch(old)
        self._stamps[key] = stamp
        group = self._groups.get(stamp)
        if group is None:
            self._groups[stamp] = group = set()
            if not self._order or stamp > self._order[-1]:
                self._order.append(stamp)
            else:
                bisect.insort(self._order, stamp)
        group.add(key)
        self._touch(stamp)

    def add(self, key: str, when: dt.datetime) -> None:
        """Remember ``key`` as delivered, stamped ``when``."""
        self.put(_normal_key(key), when)

    def put(self, key: _Key, when: dt.datetime) -> None:
        """:meth:`add` for a key already passed through ``_normal_key``."""
        self._put(key, int(when.timestamp()))

    def tallies(self) -> dict[int, tuple[int, int]]:
        """Each second's (rows, XOR of their fingerprints), for ``tally.Tally.of``.

        Cached per second as the encoding is: between two cadence STATEs only the newest
        seconds change, so a tally costs a fingerprint per new key, not per key held.
        """
        result: dict[int, tuple[int, int]] = {}
        for stamp in self._order:
            entry = self._xors.get(stamp)
            if entry is None:
                group = self._groups[stamp]
                xor = 0
                for key in group:
                    xor ^= fingerprint(key)
                self._xors[stamp] = entry = (len(group), xor)
            result[stamp] = entry
        return result

    def without(self, keys: t.Iterable[_Key]) -> OverlapSet:
        """A copy that lacks ``keys`` (normalized keys)."""
        dropped = set(keys)
        result = OverlapSet()
        for key, stamp in self._stamps.items():
            if key not in dropped:
                result._put(key, stamp)
        return result

    def update(self, other: OverlapSet) -> None:
        """Union with ``other``."""
        for key, stamp in other._stamps.items():
            self._put(key, stamp)

    def prune(self, before: dt.datetime) -> None:
        """Drop keys stamped before ``before``: no future window reaches them."""
        cut = bisect.bisect_left(self._order, int(before.timestamp()))
        if not cut:
            return
        for stamp in self._order[:cut]:
            for key in self._groups.pop(stamp):
                del self._stamps[key]
            self._encoded.pop(stamp, None)
            self._xors.pop(stamp, None)
        del self._order[:cut]
        # The cached encoding stays valid from the first kept stamp on (see _raw_bytes).
        self._text = None

    def _encode_group(self, stamp: int) -> bytes:
        cached = self._encoded.get(stamp)
        if cached is not None:
            return cached
        keys = self._groups[stamp]
        out = bytearray()
        numbers = sorted(k for k in keys if isinstance(k, int))
        digests = sorted(k for k in keys if isinstance(k, bytes))
        _varint(len(numbers), out)
        last = 0
        for number in numbers:
            _varint(number - last, out)
            last = number
        _varint(len(digests), out)
        for digest in digests:
            out += digest
        self._encoded[stamp] = encoded = bytes(out)
        return encoded

    def _entries(self, stamps: list[int], previous: int, out: bytearray, starts: list[int]) -> None:
        """Append each stamp's entry (its distance from the one before, then its group)."""
        for stamp in stamps:
            starts.append(len(out))
            _varint(stamp - previous, out)
            previous = stamp
            out += self._encode_group(stamp)

    def _raw_bytes(self) -> tuple[bytes, int]:
        """Groups by second as varint-coded entries, and how many leading bytes are as before.

        An entry holds its stamp's distance from the previous one, so the last encoding's
        entries stay valid up to the lowest stamp changed since, where encoding resumes.
        Seconds pruned since stay in the text while they are under a quarter of it: keys
        older than the horizon are never read again, so carrying a few costs bytes, not
        correctness, whereas dropping them re-codes the first entry and so makes the whole
        text new (see stored_zlib.py). Past a quarter, the first kept entry is re-coded.
        """
        order, old, starts, raw = self._order, self._raw_order, self._raw_starts, self._raw
        dirty = self._dirty
        last = len(old) if dirty is None else bisect.bisect_left(old, dirty)
        # Cached entries before ``first`` have been pruned (all of them, if the set is empty).
        first = bisect.bisect_left(old, order[0]) if order else len(old)

        def end_of(index: int) -> int:
            return starts[index] if index < len(starts) else len(raw)

        out = bytearray()
        new_order: list[int] = []
        new_starts: list[int] = []
        unchanged = 0
        if last and (not first or (4 * end_of(first) <= len(raw) and 2 * len(self) < MAX_SET_KEYS)):
            # Keep entries [0, last), pruned ones included, byte for byte.
            unchanged = end_of(last)
            out += raw[:unchanged]
            new_order += old[:last]
            new_starts += starts[:last]
            resume, previous = max(0, last - first), old[last - 1]
        elif first < last:
            # Re-code the first kept entry from zero, keep the ones after it up to ``last``.
            self._entries(old[first : first + 1], 0, out, new_starts)
            new_order.append(old[first])
            shift = len(out) - end_of(first + 1)
            out += raw[end_of(first + 1) : end_of(last)]
            new_order += old[first + 1 : last]
            new_starts += [start + shift for start in starts[first + 1 : last]]
            resume, previous = last - first, old[last - 1]
        else:
            resume, previous = 0, 0
        self._entries(order[resume:], previous, out, new_starts)
        new_order += order[resume:]
        self._raw, self._raw_order, self._raw_starts = bytes(out), new_order, new_starts
        self._dirty = None
        return self._raw, unchanged

    def encode(self) -> str:
        """Compact text: varint-coded groups by second, zlib, base64."""
        if self._text is not None:
            return self._text
        raw, unchanged = self._raw_bytes()
        if len(self) > MAX_SET_KEYS or len(raw) > MAX_SET_BYTES:
            # Refused here rather than written: the next run would refuse to read it.
            msg = (
                f"holds {len(self)} keys ({len(raw)} bytes), over the {MAX_SET_KEYS} keys or "
                f"{MAX_SET_BYTES} bytes a state may carry"
            )
            raise OverlapSetError(msg)
        # Digests of UUID GUIDs do not compress: they are stored (zlib's stored blocks, built
        # in stored_zlib so that only the changed part is made again); what a sample shows
        # is compressible (numeric GUIDs' small deltas) is compressed.
        sample = raw[:_SAMPLE]
        if len(zlib.compress(sample, 1)) < 0.9 * len(sample):
            self._stored = StoredText()  # its next call cannot reuse this call's bytes
            self._text = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
        else:
            self._text = self._stored.text(raw, unchanged)
        return self._text

    @classmethod
    def decode(cls, text: str) -> OverlapSet:
        """Inverse of :meth:`encode`, in time linear in the input; ValueError on anything else.

        The state is input a person (or an attacker) can hand the tap, so every size is
        checked before it is trusted: the text, the inflated bytes, each varint, each
        count against the bytes left, the total number of keys, every stamp and number.
        """
        data = _inflate(text)
        size = len(data)
        result = cls()
        pos = stamp = total = 0
        while pos < size:
            delta, pos = _read_varint(data, pos)
            stamp += delta
            if stamp > _MAX_STAMP:
                msg = "a time after the year 9999"
                raise OverlapSetError(msg)
            count, pos = _read_varint(data, pos)
            total += count
            if count > size - pos or total > MAX_SET_KEYS:
                msg = f"more keys than its bytes hold or than the limit of {MAX_SET_KEYS}"
                raise OverlapSetError(msg)
            last = 0
            for _ in range(count):
                delta, pos = _read_varint(data, pos)
                last += delta
                if last >= _MAX_EXACT:
                    msg = "a numeric key the encoder would have stored as a digest"
                    raise OverlapSetError(msg)
                result._put(last, stamp)
            count, pos = _read_varint(data, pos)
            total += count
            if count * _DIGEST_BYTES > size - pos or total > MAX_SET_KEYS:
                msg = f"more digests than its bytes hold or than the limit of {MAX_SET_KEYS}"
                raise OverlapSetError(msg)
            for _ in range(count):
                result._put(data[pos : pos + _DIGEST_BYTES], stamp)
                pos += _DIGEST_BYTES
        return result
