"""Per-second tallies (sync/tally.py) and the rows they let a pass prove delivered (sync/gap.py).

Issue 22: where a cadence STATE cannot carry the keys the target has, it carries their
tally; after a SIGKILL, the run that re-reads those rows must skip exactly the delivered
ones (nothing twice) and emit every other one (nothing lost).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.sync.gap import MAX_HELD, GapResolver
from tap_marketo_activities.sync.incremental import PartitionSync
from tap_marketo_activities.sync.overlap import OverlapSet, _normal_key
from tap_marketo_activities.sync.tally import Tally, TallyError, fingerprint

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 4, 12, 12, 0, tzinfo=UTC)
LOOKBACK = dt.timedelta(minutes=60)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def new_sync(state: dict, *, now: dt.datetime | None = None) -> PartitionSync:
    return PartitionSync(
        state,
        label="stream 'activities'",
        start_date=T0,
        lookback=LOOKBACK,
        run_started=lambda: now or at(7200),
    )


def tally_of(keys_at: list[tuple[str, dt.datetime]]) -> Tally:
    overlap = OverlapSet()
    for key, when in keys_at:
        overlap.add(key, when)
    return Tally.of(overlap)


def test_a_tally_round_trips_and_costs_about_eleven_bytes_a_second():
    rng = random.Random(7)
    rows = [
        (str(uuid.UUID(int=rng.getrandbits(128))), at(rng.randrange(3600))) for _ in range(60_000)
    ]
    rows += [(str(n), at(n % 3600)) for n in range(10_000, 12_000)]  # numeric GUIDs too
    tally = tally_of(rows)
    text = tally.encode()
    assert Tally.decode(text) == tally
    assert tally.rows == 62_000
    assert len(tally) == 3600
    assert len(text) / len(tally) < 16  # base64 of ~11 bytes; the keys took 60,000 x 10.7
    assert Tally.decode("") == Tally()


def test_fingerprints_of_sequential_numbers_do_not_cancel_out():
    # A plain XOR of 1, 2, 3 is 0, as of no rows at all: the mixed prints are not.
    assert fingerprint(1) ^ fingerprint(2) ^ fingerprint(3) != 0
    assert len({fingerprint(n) for n in range(100_000)}) == 100_000
    digest = _normal_key(str(uuid.uuid4()))
    assert isinstance(digest, bytes)
    assert fingerprint(digest) == int.from_bytes(digest, "big")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not base64!", "not base64"),
        ("AQ==", "truncated"),  # a stamp and nothing after it
        ("AQAAAAAAAAAAAA==", "empty second"),  # a second with no rows
        ("AQEAAAAAAAAAAAABAQAAAAAAAAAA", "listed twice"),
        ("/////////////////w==", "longer than 64 bits"),
    ],
)
def test_a_tally_the_encoder_cannot_have_written_is_refused(text, problem):
    with pytest.raises(TallyError, match=problem):
        Tally.decode(text)


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ({"overlap": {"v": 1, "keys": OverlapSet().encode(), "tally": "###"}}, "overlap.tally"),
        (
            {"cursor": {"v": 1, "token": "t", "window_start": "2024-04-12T12:00:00Z", "tally": 5}},
            "cursor.tally",
        ),
    ],
)
def test_a_state_with_a_bad_tally_fails_naming_the_field(field, where):
    state = {"replication_key": "activityDate", "replication_key_value": "2024-04-12T13:00:00Z"}
    state.update(field)
    with pytest.raises(StateError, match=where) as caught:
        new_sync(state)
    assert "Nothing was synced" in str(caught.value)


def _resolver(delivered: list[str], stamp: int = 100) -> GapResolver:
    return GapResolver(tally_of([(key, at(stamp)) for key in delivered]))


def _hold_all(gap: GapResolver, keys: list[str], stamp: int = 100) -> tuple[list[str], list[str]]:
    emitted: list[str] = []
    proven: list[str] = []
    for key in keys:
        outcome = gap.hold(_normal_key(key), int(at(stamp).timestamp()), at(stamp), key, "tok")
        emitted += [row.record for row in outcome.emit]
        proven += [row.record for row in outcome.delivered]
    emitted += [row.record for row in gap.flush()]
    return emitted, proven


@pytest.mark.parametrize("new_rows", [0, 1, 2, 3, 4])
def test_re_read_rows_are_proven_delivered_and_new_ones_singled_out(new_rows):
    rng = random.Random(new_rows)
    delivered = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(40)]
    new = [f"new-{n}" for n in range(new_rows)]
    order = delivered + new
    rng.shuffle(order)  # late commits may come before or among the delivered rows
    emitted, proven = _hold_all(_resolver(delivered), order)
    assert sorted(emitted) == sorted(new)
    assert sorted(proven) == sorted(delivered)


def test_five_new_rows_in_one_second_are_all_sent_and_none_lost():
    delivered = [f"d{n}" for n in range(10)]
    new = [f"n{n}" for n in range(5)]
    gap = _resolver(delivered)
    emitted, proven = _hold_all(gap, new + delivered)  # five late rows before the others
    assert set(new) <= set(emitted)  # nothing lost; the delivered ones go again (re-sends)
    assert not proven
    assert gap.flushed == 15
    assert gap.carry.get(int(at(100).timestamp())) is not None  # handed on, not proven


def test_a_second_missing_a_delivered_row_holds_its_rows_until_the_pass_ends():
    delivered = [f"d{n}" for n in range(5)]
    gap = _resolver(delivered)
    outcome = gap.hold(_normal_key("d0"), int(at(100).timestamp()), at(100), "d0", "tok")
    assert outcome.emit == outcome.delivered == []
    assert gap.holding == 1
    assert gap.oldest_token() == (True, "tok")
    assert [row.record for row in gap.flush()] == ["d0"]  # sent at the end: never lost
    assert gap.holding == 0
    assert gap.oldest_token() == (False, None)


def _page(sync: PartitionSync, rows: list[tuple[str, dt.datetime]], token: str) -> list[str]:
    out: list[str] = []
    for key, when in rows:
        out += sync.take(key, when, key)
    out += sync.release_held(token)
    sync.page_done(token)
    return out


def test_a_killed_pass_known_by_tally_is_skipped_by_the_next_run_and_late_rows_are_not():
    """Killed after a cadence STATE with a tally: the resumed pass and the next scheduled
    run together send every row once, late commits included (no keys in any cursor)."""
    rng = random.Random(3)
    first = [(f"a{n}", at(3600 + rng.randrange(600))) for n in range(9_900)]
    state2: dict = {}
    sync = new_sync(state2, now=at(4300))
    asked = []
    for page in range(0, 9_900, 300):
        for key, when in first[page : page + 300]:
            sync.take(key, when, key)
        sync.page_done(f"tok-{page}", lambda: asked.append(1) or 20_000, lambda: 20_000)
    assert asked == [1]
    cursor = state2["cursor"]
    # 9,900 keys (106 KB) do not fit 20 KB; the tally of their 600 seconds (9 KB) does
    assert "tally" in cursor
    assert "pending" not in cursor
    assert len(cursor["tally"]) < 120_000
    # SIGKILL after that STATE; the resumed pass reads what followed the cursor.
    resumed = new_sync(dict(state2), now=at(4300))
    assert resumed.keys_missing_until is None
    after = [(f"b{n}", at(3600 + 600 + n % 60)) for n in range(500)]
    sent = _page(resumed, after, "tok-end")
    sent += resumed.release_all()
    resumed.page_done(None)
    resumed.finish()
    assert sorted(sent) == sorted(key for key, _ in after)
    assert "tally" in resumed.state["overlap"]
    # The next run re-reads the lookback: everything again, plus late commits in the same
    # seconds as the killed pass's rows.
    late = [(f"late{n}", first[n * 97][1]) for n in range(50)]
    everything = first + after + late
    rng.shuffle(everything)
    nxt = new_sync(resumed.state, now=at(5000))
    sent = []
    for page in range(0, len(everything), 300):
        sent += _page(nxt, everything[page : page + 300], f"t{page}")
    sent += nxt.release_all()
    nxt.page_done(None)
    assert sorted(sent) == sorted(key for key, _ in late)  # nothing twice, nothing lost
    assert nxt.gap.proven == 9_900
    nxt.finish()
    assert "tally" not in nxt.state["overlap"]  # every tallied second proven: keys again


def test_while_rows_are_held_the_cursor_stays_at_their_page_and_a_state_releases_them():
    delivered = [(f"d{n}", at(3000)) for n in range(3)]
    state = {
        "replication_key": "activityDate",
        "replication_key_value": format_time(at(3600)),
        "overlap": {"v": 1, "keys": OverlapSet().encode(), "tally": tally_of(delivered).encode()},
    }
    sync = new_sync(state)
    sync.page_token = "first"
    assert _page(sync, [("d0", at(3000)), ("x", at(3100))], "second") == ["x"]
    assert state["cursor"]["token"] == "first"  # d0 is held: a stop re-reads its page
    assert _page(sync, [("y", at(3200))], "third") == ["y"]
    assert state["cursor"]["token"] == "first"
    # A pass's rows so far took it to its cadence: the held row goes out first.
    sync.report.emitted = 20_000
    assert sync.release_held("fourth") == ["d0"]
    assert sync.page_done("fourth")
    assert state["cursor"]["token"] == "fourth"


def test_too_many_held_rows_are_released_so_memory_stays_bounded():
    delivered = [(f"d{n}", at(3000)) for n in range(MAX_HELD + 10)]
    state = {
        "replication_key": "activityDate",
        "replication_key_value": format_time(at(3600)),
        "overlap": {"v": 1, "keys": OverlapSet().encode(), "tally": tally_of(delivered).encode()},
    }
    sync = new_sync(state)
    sent = []
    for key, when in delivered[: MAX_HELD + 1]:
        sent += sync.take(key, when, key)
    assert sent == []
    assert len(sync.release_held("next")) == MAX_HELD + 1


def format_time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
