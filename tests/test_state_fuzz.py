"""Fuzzed state documents (issue 12): each is accepted or refused with the state error, quickly.

A seeded generator (reproducible, no extra dependency) takes a complete, valid state and
breaks it: every field replaced by every wrong JSON type, fields removed, junk added,
deep nesting spliced in as text, and overlap sets replaced by crafted blobs (random
bytes, truncated and padded streams, zlib bombs, oversized varints, sets near the key
bound). ``check_state`` must either return the Singer state or raise ``StateError`` —
never another exception — and spend at most a second of CPU on any one document (CPU,
not wall time, so a busy shared machine does not make the test flaky). A handful of the
documents then go through the real tap process against the simulator.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import random
import subprocess
import time
import zlib
from typing import Any

import pytest
from helpers import TAP, parse_messages, sim_config

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.simulator import World
from tap_marketo_activities.sync.overlap import OverlapSet
from tap_marketo_activities.sync.state import check_state, parse_state_text

UTC = dt.timezone.utc
SEED = 20261123
DOCUMENTS = 3000
CPU_SECONDS_PER_DOCUMENT = 1.0
NOW = "2024-04-12T16:00:00Z"
T0 = dt.datetime(2024, 4, 12, 14, tzinfo=UTC)
DEEP_MARK = "__deep__"
BIG_NUMBER_MARK = "__big_number__"


def encoded_set(rng: random.Random, size: int, *, numeric: bool) -> str:
    overlap = OverlapSet()
    for n in range(size):
        key = str(8_000_000 + n * 3) if numeric else f"{rng.getrandbits(64):x}-guid"
        overlap.add(key, T0 + dt.timedelta(seconds=rng.randrange(3600)))
    return overlap.encode()


def valid_state(rng: random.Random) -> dict[str, Any]:
    """A state of the shape the tap writes: three groups, a cursor, all three streams."""

    def entry(with_cursor: bool) -> dict[str, Any]:
        value: dict[str, Any] = {
            "replication_key": "activityDate",
            "replication_key_value": "2024-04-12T15:00:00Z",
            "overlap": {
                "v": 1,
                "since": "2024-04-12T14:00:00Z",
                "keys": encoded_set(rng, 30, numeric=rng.random() < 0.5),
            },
        }
        if with_cursor:
            value["cursor"] = {
                "v": 1,
                "token": "GIYDAOBNGEYS2MBWKQYDAORQGA5DAMBOGAYDAKZQGAYDALBQ",
                "window_start": "2024-04-12T14:00:00Z",
                "max_seen": "2024-04-12T14:30:00Z",
                "pending": encoded_set(rng, 10, numeric=True),
            }
        return value

    groups = [[1, 2, 3, 6, 7, 8, 9, 10, 11, 12], [19, 21, 22], [100001]]
    return {
        "bookmarks": {
            "activity_types": {},
            "activities": {
                "partitions": [
                    {"context": {"activity_type_ids": ids}, **entry(i == 0)}
                    for i, ids in enumerate(groups)
                ]
            },
            "lead_changes": {"lead_change_fields": ["email", "leadScore"], **entry(False)},
            "deleted_leads": entry(True),
        }
    }


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in the document a value sits (dict keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


@functools.cache
def bomb(mebibytes: int, byte: int) -> str:
    """Built once per size: compressing tens of MiB is the slow part of this test."""
    return base64.b64encode(zlib.compress(bytes([byte]) * (mebibytes << 20), 9)).decode()


@functools.cache
def large_set(size: int, *, numeric: bool) -> str:
    return encoded_set(random.Random(size), size, numeric=numeric)


def hostile_blob(rng: random.Random) -> str:
    """An overlap.keys / cursor.pending value built to hurt a decoder."""
    choice = rng.randrange(9)
    if choice == 0:  # random bytes, compressed: structurally plausible, semantically noise
        raw = rng.randbytes(rng.randrange(1, 200_000))
        return base64.b64encode(zlib.compress(raw)).decode()
    if choice == 1:  # a zlib bomb (8 to 64 MiB of one byte)
        return bomb(rng.choice((8, 64)), rng.choice((0, 0xFF)))
    if choice == 2:  # one long varint (the quadratic case)
        return base64.b64encode(zlib.compress(b"\x01" + b"\xff" * 500_000 + b"\x00")).decode()
    if choice == 3:  # a valid set, truncated or with trailing bytes
        text = encoded_set(rng, 200, numeric=False)
        raw = base64.b64decode(text)
        raw = raw[: rng.randrange(len(raw))] if rng.random() < 0.5 else raw + b"junk"
        return base64.b64encode(raw).decode()
    if choice == 4:  # not base64 / not ASCII / empty
        return rng.choice(["", "!!!!", "é" * 10, "eJw=" * 3, " " * 100])
    if choice == 5:  # huge counts in few bytes
        return base64.b64encode(zlib.compress(b"\x01" + b"\xff" * 9 + b"\x7f")).decode()
    if choice == 6:  # a large, valid set (a busy partition)
        return large_set(rng.choice((20_000, 100_000)), numeric=rng.random() < 0.5)
    if choice == 7:  # megabytes of base64 text
        return "A" * rng.randrange(1, 10 << 20)
    raw = rng.randbytes(rng.randrange(1, 5000))  # uncompressed noise
    return base64.b64encode(raw).decode()


WRONG_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    10**30,
    "",
    "x",
    "2100-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "2024-04-12T15:00:00",
    "9999-12-31T23:59:59Z",
    [],
    [[1]],
    [1] * 11,
    {},
    {"v": True},
    "9" * 100_000,
]


def set_at(document: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


def mutate(rng: random.Random, document: dict[str, Any]) -> None:
    """One breakage at a random place in the document."""
    places = paths(document)
    if not places:  # an earlier breakage removed everything
        return
    path = rng.choice(places)
    action = rng.random()
    if action < 0.55:
        set_at(document, path, rng.choice(WRONG_VALUES))
    elif action < 0.65:
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    elif action < 0.72:
        set_at(document, path, DEEP_MARK)
    elif action < 0.75:
        set_at(document, path, BIG_NUMBER_MARK)
    elif action < 0.85:
        set_at(document, path, {"junk": rng.choice(WRONG_VALUES), "more": {"a": [1, {}]}})
    else:
        set_at(document, path, hostile_blob(rng))


def documents(count: int) -> list[tuple[int, str]]:
    """``count`` (index, state file text) pairs; deep nesting is spliced in as text."""
    rng = random.Random(SEED)
    out: list[tuple[int, str]] = []
    base = valid_state(rng)
    for index in range(count):
        document = json.loads(json.dumps(base))
        if index % 25:  # every 25th stays valid: the checker must also accept
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                mutate(rng, document)
        text = json.dumps(document)
        while f'"{DEEP_MARK}"' in text:
            depth = rng.choice((20, 200, 5000, 100_000))
            opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
            text = text.replace(f'"{DEEP_MARK}"', opener * depth + "1" + closer * depth, 1)
        text = text.replace(f'"{BIG_NUMBER_MARK}"', "9" * 100_000)
        out.append((index, text))
    return out


def judge(text: str) -> tuple[str, float]:
    """('accepted' | 'refused: <message>', CPU seconds); any other exception propagates."""
    started = time.process_time()
    try:
        check_state(parse_state_text(text))
    except StateError as exc:
        verdict = f"refused: {exc}"
    else:
        verdict = "accepted"
    return verdict, time.process_time() - started


def test_thousands_of_fuzzed_states_are_accepted_or_refused_quickly():
    verdicts = {"accepted": 0, "refused": 0}
    slowest = 0.0
    for index, text in documents(DOCUMENTS):
        verdict, cpu = judge(text)
        assert cpu <= CPU_SECONDS_PER_DOCUMENT, f"document {index} took {cpu:.2f} s of CPU"
        slowest = max(slowest, cpu)
        if verdict == "accepted":
            verdicts["accepted"] += 1
        else:
            verdicts["refused"] += 1
            assert "\n" not in verdict
            assert len(verdict) < 800, verdict[:300]
    print(f"fuzzed states: {verdicts}, slowest {slowest:.3f} s CPU")
    assert verdicts["accepted"] >= DOCUMENTS // 25  # the untouched ones, at least
    assert verdicts["refused"] > DOCUMENTS // 2


def test_valid_base_state_is_accepted():
    text = json.dumps(valid_state(random.Random(SEED)))
    assert judge(text)[0] == "accepted"


def _pick(count: int, want: str) -> list[Any]:
    """The first ``count`` mutated documents with the wanted verdict (small enough to log)."""
    picked = []
    for index, text in documents(60):
        if index % 25 and judge(text)[0].startswith(want) and len(text) < 2_000_000:
            # A short id: pytest puts the id in every subprocess's environment.
            picked.append(pytest.param(index, text, id=f"document{index}"))
            if len(picked) == count:
                break
    return picked


def run_with_state(simulator, tmp_path, index, text, timeout):
    """The tap as a process against a fresh simulator, with ``text`` as its state file."""
    sim = simulator(World.seed_afternoon(rows=100, seed=3), now=NOW)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sim_config(sim)))
    state = tmp_path / f"fuzz{index}.json"
    state.write_text(text)
    done = subprocess.run(
        [*TAP, "--config", str(config), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return sim, done


@pytest.mark.parametrize(("index", "text"), _pick(4, "refused"))
def test_fuzzed_refusals_through_the_tap_make_no_call(simulator, tmp_path, index, text):
    sim, done = run_with_state(simulator, tmp_path, index, text, timeout=120)
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-2000:]
    assert errors[0].endswith(judge(text)[0].removeprefix("refused: "))  # after the file's name
    assert "Traceback" not in done.stderr
    assert parse_messages(done.stdout) == []
    assert sim.counters.total_calls == 0


@pytest.mark.parametrize(("index", "text"), _pick(1, "accepted"))
def test_fuzzed_accepted_state_runs_through_the_tap(simulator, tmp_path, index, text):
    _, done = run_with_state(simulator, tmp_path, index, text, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert any(m["type"] == "STATE" for m in parse_messages(done.stdout))
