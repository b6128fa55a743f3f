"""The overlap set's stored-block zlib text: a valid zlib stream, equal to one built anew."""

from __future__ import annotations

import base64
import os
import random
import zlib

from tap_marketo_activities.sync.stored_zlib import BLOCK, StoredText, stored_stream


def test_any_zlib_reader_inflates_the_stream():
    for size in (0, 1, 2, 3, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7):
        raw = os.urandom(size)
        assert zlib.decompress(stored_stream(raw)) == raw


def test_text_kept_between_calls_equals_the_text_of_a_fresh_stream():
    """Growing, shrinking and rewritten raw bytes, as an overlap set's pages make them."""
    rng = random.Random(7)
    encoder = StoredText()
    raw = b""
    for step in range(120):
        unchanged = rng.randrange(0, len(raw) + 1) if raw else 0
        if rng.random() < 0.7:  # most pages rewrite only the newest part and add to it
            unchanged = max(unchanged, len(raw) - rng.randrange(0, 2000))
        grown = rng.randrange(0, 40_000) if rng.random() < 0.9 else 0
        raw = raw[:unchanged] + os.urandom(max(0, len(raw) - unchanged) + grown)
        if rng.random() < 0.1:
            raw = raw[: rng.randrange(0, len(raw) + 1)]
            unchanged = min(unchanged, len(raw))
        text = encoder.text(raw, unchanged)
        assert text == base64.b64encode(stored_stream(raw)).decode("ascii"), f"step {step}"
        assert zlib.decompress(base64.b64decode(text)) == raw
