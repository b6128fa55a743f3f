"""Hostile state (issue 12 items 3, 4, 5): refused in one line, before any call, bookmark kept."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import zlib

import pytest
from helpers import TAP, parse_messages, sim_config

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.simulator import World
from tap_marketo_activities.sync.overlap import (
    MAX_SET_BYTES,
    MAX_SET_KEYS,
    OverlapSet,
    OverlapSetError,
)
from tap_marketo_activities.sync.state import check_state, parse_state_text

UTC = dt.timezone.utc
NOW = "2024-04-12T16:00:00Z"
BOOKMARK = "2024-04-12T15:00:00Z"
FIRST_TEN = [1, 2, 3, 6, 7, 8, 9, 10, 11, 12]


def blob(raw: bytes, level: int = 9) -> str:
    """An overlap.keys value holding ``raw`` as its inflated bytes."""
    return base64.b64encode(zlib.compress(raw, level)).decode("ascii")


def with_overlap(keys: str, stream: str = "lead_changes") -> dict:
    return {
        "bookmarks": {
            stream: {
                "replication_key": "activityDate",
                "replication_key_value": BOOKMARK,
                "overlap": {"v": 1, "since": "2024-04-12T14:00:00Z", "keys": keys},
            }
        }
    }


def activities_partition(ids, **fields) -> dict:
    partition = {"context": {"activity_type_ids": ids}, "replication_key": "activityDate"}
    partition.update(fields)
    return {"bookmarks": {"activities": {"partitions": [partition]}}}


def deep(levels: int) -> str:
    nest = "[" * levels + "]" * levels
    return '{"bookmarks": {"activities": {"partitions": ' + nest + "}}}"


# A varint of 3 MB of 0xFF bytes: the old decoder built a 21-million-bit integer from it,
# one shift at a time (quadratic; the issue saw 7 minutes at 100 % CPU).
QUADRATIC = blob(b"\x01" + b"\xff" * 3_000_000 + b"\x00")
# 64 MiB of zeros in 87 KB of text: a zlib bomb ten times the inflated bound (the issue's
# 1.5 GB one is refused at the same point; this one is quicker to build).
BOMB = blob(b"\x00" * (64 << 20))

# (state file text, what the one ERROR line must contain)
REFUSED_TEXTS = {
    "empty file": ("", ["--state file is empty", "{}"]),
    "blank file": ("  \n", ["--state file is empty"]),
    "list": ("[]", ["holds a list, not a Singer state object"]),
    "null": ("null", ["holds null, not a Singer state object"]),
    "json string": ('"s.json"', ["holds a string, not a Singer state object"]),
    "not json": ("{bookmarks", ["--state file is not valid JSON"]),
    "100,000 deep": (deep(100_000), ["--state file nests deeper"]),
    "40 deep": (
        deep(40),
        ["stream 'activities'", "field 'partitions[0][0]' nests deeper than 16 levels"],
    ),
}
REFUSED_STATES = {
    "singer_state string": (
        {"singer_state": "x"},
        ["Meltano's state export", "field 'singer_state'", "not a string"],
    ),
    "partitions object": (
        {"bookmarks": {"activities": {"partitions": {}}}},
        ["stream 'activities'", "field 'partitions' must be a list, not an object"],
    ),
    "nested type ids": (
        activities_partition([[1]]),
        ["stream 'activities' partition 0", "field 'context.activity_type_ids'", "a list"],
    ),
    "eleven types": (
        activities_partition([*FIRST_TEN, 13], replication_key_value=BOOKMARK),
        ["partition 0", "'context.activity_type_ids' lists 11 types", "at most 10"],
    ),
    "year one bookmark": (
        activities_partition(FIRST_TEN, replication_key_value="0001-01-01T00:00:00Z"),
        [
            "stream 'activities' partition {'activity_type_ids': [1, 2, 3, 6, 7, 8, 9, 10, 11, "
            "12]}",
            "field 'replication_key_value'",
            "outside 1970-01-01",
        ],
    ),
    "quadratic varint": (
        with_overlap(QUADRATIC),
        ["stream 'lead_changes'", "field 'overlap.keys'", "longer than 64 bits"],
    ),
    "zlib bomb": (
        with_overlap(BOMB, "deleted_leads"),
        ["stream 'deleted_leads'", "field 'overlap.keys'", f"more than {MAX_SET_BYTES} bytes"],
    ),
    "bookmark removed": (
        {
            "bookmarks": {
                "lead_changes": {
                    "replication_key": "activityDate",
                    "overlap": {"v": 1, "keys": OverlapSet().encode()},
                }
            }
        },
        ["stream 'lead_changes'", "field 'replication_key_value' is missing"],
    ),
    "unknown stream": (
        {"bookmarks": {"activitys": {}}},
        ["stream 'activitys'", "does not have"],
    ),
    "typo at the top": (
        {"bookmark": {"activities": {}}},
        ["field 'bookmark' is not part of a Singer state"],
    ),
    "version true": (  # True == 1 in Python: must not pass as format version 1
        {
            "bookmarks": {
                "deleted_leads": {
                    "replication_key_value": BOOKMARK,
                    "overlap": {"v": True, "keys": OverlapSet().encode()},
                }
            }
        },
        ["stream 'deleted_leads'", "field 'overlap.v' is True"],
    ),
}


# -- unit level ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFUSED_TEXTS))
def test_state_text_refused_in_one_line(name):
    text, fragments = REFUSED_TEXTS[name]
    with pytest.raises(StateError) as caught:
        check_state(parse_state_text(text))
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("name", sorted(REFUSED_STATES))
def test_state_shape_refused_naming_stream_partition_field(name):
    state, fragments = REFUSED_STATES[name]
    with pytest.raises(StateError) as caught:
        check_state(json.loads(json.dumps(state)))
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 600
    for fragment in fragments:
        assert fragment in message


def test_empty_object_and_meltano_export_are_accepted():
    assert check_state(parse_state_text("{}")) == {}
    inner = activities_partition(FIRST_TEN, replication_key_value=BOOKMARK)
    assert check_state({"singer_state": inner}) is inner


def test_overlap_set_bounds_keep_real_sets_and_refuse_crafted_ones():
    overlap = OverlapSet()
    when = dt.datetime(2024, 4, 12, tzinfo=UTC)
    for n in range(20_000):
        overlap.add(f"guid-{n}", when + dt.timedelta(seconds=n % 3600))
    assert len(OverlapSet.decode(overlap.encode())) == 20_000
    # Counts larger than the bytes left, trailing garbage, truncation, keys over the cap:
    crafted = {
        "count past the end": b"\x01\xff\xff\xff\x0f",
        "digests past the end": b"\x01\x00\x05" + b"\x00" * 8,
        "numeric key over 62 bits": b"\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00",
        "stamp after 9999": b"\xff\xff\xff\xff\xff\xff\x7f\x00\x00",
    }
    for name, raw in crafted.items():
        with pytest.raises(OverlapSetError):
            OverlapSet.decode(blob(raw))
        assert name
    too_many = bytearray(b"\x01")
    too_many += _varint(MAX_SET_KEYS + 1) + b"\x01" * (MAX_SET_KEYS + 1) + b"\x00"
    with pytest.raises(OverlapSetError, match="limit"):
        OverlapSet.decode(blob(bytes(too_many)))
    with pytest.raises(OverlapSetError, match="complete zlib stream"):
        OverlapSet.decode(base64.b64encode(zlib.compress(b"\x01\x00\x00") + b"x").decode())
    with pytest.raises(OverlapSetError, match="complete zlib stream"):
        OverlapSet.decode(base64.b64encode(zlib.compress(b"\x01\x00\x00")[:-3]).decode())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# -- through the tap process, against the simulator -----------------------------------


def _run_with_state_text(tmp_path, sim, text: str, name: str):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sim_config(sim)))
    state = tmp_path / f"{name.replace(' ', '_')}.json"
    state.write_text(text)
    return subprocess.run(
        [*TAP, "--config", str(config), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


ALL_REFUSALS = {
    **REFUSED_TEXTS,
    **{name: (json.dumps(state), frags) for name, (state, frags) in REFUSED_STATES.items()},
}


@pytest.mark.parametrize("name", sorted(ALL_REFUSALS))
def test_tap_refuses_hostile_state_before_any_call(simulator, tmp_path, name):
    sim = simulator(World.seed_afternoon(rows=200, seed=1), now=NOW)
    text, fragments = ALL_REFUSALS[name]
    done = _run_with_state_text(tmp_path, sim, text, name)
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in done.stderr
    assert parse_messages(done.stdout) == []
    assert sim.counters.total_calls == 0


def test_json_string_state_is_not_followed_as_a_path(simulator, tmp_path):
    """The SDK takes a string state as a file path: a valid state there must not be used."""
    sim = simulator(World.seed_afternoon(rows=200, seed=1), now=NOW)
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(activities_partition(FIRST_TEN, replication_key_value=BOOKMARK)))
    done = _run_with_state_text(tmp_path, sim, json.dumps(str(target)), "path")
    assert done.returncode == 1
    assert "holds a string, not a Singer state object" in done.stderr
    assert "Traceback" not in done.stderr
    assert sim.counters.total_calls == 0


def test_future_bookmark_stops_with_a_clear_line_and_keeps_the_bookmark(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now=NOW)
    future = "2100-01-01T00:00:00Z"
    state = {
        "bookmarks": {
            "deleted_leads": {"replication_key": "activityDate", "replication_key_value": future}
        }
    }
    run = run_tap(sim_config(sim), state)
    assert run.returncode == 1, run.stderr[-2000:]
    errors = [line for line in run.error_lines() if "unhandled error occurred" not in line]
    assert len(errors) == 1, run.stderr[-2000:]
    assert "State for stream 'deleted_leads': field 'replication_key_value' is " in errors[0]
    assert f"{future}, later than Marketo's clock (2024-04-12T16:00:" in errors[0]
    assert "Traceback" not in run.stderr
    assert not run.records.get("deleted_leads")
    assert run.records["activities"]  # the streams before it were synced and saved
    assert all(
        s["bookmarks"]["deleted_leads"]["replication_key_value"] == future for s in run.states
    )
    # A bookmark a second ahead of the simulator's Date header is not an error.
    state["bookmarks"]["deleted_leads"]["replication_key_value"] = "2024-04-12T16:00:01Z"
    assert run_tap(sim_config(sim), state).returncode == 0
