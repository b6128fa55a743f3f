"""Unit tests of the window / overlap / cursor logic (no HTTP)."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid

import pytest

from tap_marketo_activities.errors import MalformedResponse, StateError
from tap_marketo_activities.records import activity_record, dated_activity_record, parse_datetime
from tap_marketo_activities.sync.incremental import PartitionSync, lateness_warning
from tap_marketo_activities.sync.overlap import OverlapSet
from tap_marketo_activities.wire.envelope import first_error

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 4, 12, 12, 0, tzinfo=UTC)
LOOKBACK = dt.timedelta(minutes=60)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


NOON_PLUS_2H = at(120)


def new_sync(state: dict, *, now: dt.datetime = NOON_PLUS_2H) -> PartitionSync:
    return PartitionSync(
        state,
        label="stream 'activities'",
        start_date=T0,
        lookback=LOOKBACK,
        run_started=lambda: now,
    )


def test_overlap_set_round_trip_numeric_and_other_keys():
    overlap = OverlapSet()
    keys = [str(n) for n in range(1_000_000, 1_000_500)] + [str(uuid.uuid4()) for _ in range(50)]
    keys += ["007", "0", "99999999999999999999999"]  # leading zero, zero, beyond 62 bits
    for i, key in enumerate(keys):
        overlap.add(key, at(i % 90))
    decoded = OverlapSet.decode(overlap.encode())
    assert len(decoded) == len(keys)
    assert all(key in decoded for key in keys)
    assert "1000500" not in decoded
    assert "7" not in decoded  # '007' is kept as a distinct key, not the number 7


def test_overlap_set_prune_drops_only_older_keys():
    overlap = OverlapSet()
    overlap.add("1", at(0))
    overlap.add("2", at(30))
    overlap.add("3", at(60))
    overlap.prune(at(30))
    assert "1" not in overlap
    assert "2" in overlap
    assert "3" in overlap


@pytest.mark.parametrize("kind", ["numeric", "uuid"])
def test_overlap_set_size_at_20000_rows_an_hour(kind):
    """The issue's budget: 20,000 activities an hour, 60 min lookback, < 256 KB."""
    rng = random.Random(4)
    overlap = OverlapSet()
    base = 8_000_000_000
    for i in range(20_000):
        key = (
            str(base + i * 3 + rng.randrange(3))
            if kind == "numeric"
            else str(uuid.UUID(int=rng.getrandbits(128)))
        )
        overlap.add(key, at(rng.random() * 60))
    encoded = overlap.encode()
    print(f"overlap set, 20,000 {kind} keys: {len(encoded)} bytes")
    assert len(encoded) < 256 * 1024


def test_first_pass_starts_at_start_date_and_sets_bookmark_and_overlap():
    state: dict = {}
    sync = new_sync(state)
    start = sync.start()
    assert start.since == T0
    assert not start.resumes_cursor
    assert sync.admit("1", at(10))
    assert sync.admit("2", at(100))
    assert not sync.admit("1", at(10))  # same key twice in a pass
    assert not sync.admit("0", at(-5))  # before start_date: never emitted
    sync.page_done("tok-1")
    assert state["cursor"]["token"] == "tok-1"
    sync.finish()
    assert "cursor" not in state
    assert state["replication_key_value"] == "2024-04-12T13:40:00Z"
    overlap = OverlapSet.decode(state["overlap"]["keys"])
    assert "2" in overlap  # inside [bookmark - lookback, bookmark]
    assert "1" not in overlap  # stamped before the next window: never re-read


def test_next_pass_starts_lookback_before_bookmark_and_skips_overlap():
    state: dict = {}
    first = new_sync(state)
    first.admit("a", at(100))
    first.finish()
    second = new_sync(state, now=at(240))
    assert second.start().since == at(40)
    assert not second.admit("a", at(100))  # re-read inside the window
    assert second.admit("late", at(90))  # committed late, stamped before the bookmark
    assert second.report.max_lateness == dt.timedelta(minutes=10)
    assert second.report.duplicates == 1
    second.finish()
    assert state["replication_key_value"] == "2024-04-12T13:40:00Z"  # never backwards


def test_bookmark_is_capped_by_run_start_and_never_moves_back():
    state: dict = {
        "replication_key": "activityDate",
        "replication_key_value": "2024-04-12T13:00:00Z",
    }
    sync = new_sync(state, now=at(90))
    sync.admit("future", at(500))
    sync.finish()
    assert state["replication_key_value"] == "2024-04-12T13:30:00Z"
    assert "future" in OverlapSet.decode(state["overlap"]["keys"])


def test_cursor_resume_keeps_window_and_trusts_the_token():
    state: dict = {}
    sync = new_sync(state)
    sync.admit("1", at(50))
    sync.page_done("tok-2")
    assert "pending" not in state["cursor"]  # interim cursors carry no keys (issue 22)
    saved = dict(state)
    resumed = new_sync(saved)
    start = resumed.start()
    assert start.resumes_cursor
    assert start.token == "tok-2"
    assert resumed.keys_missing_until == at(50)
    fallback = resumed.fall_back()
    assert fallback.since == T0  # recovery time: max(window start, 12:50 - 60 min)
    assert not fallback.resumes_cursor


def test_a_cursor_with_keys_from_an_older_run_is_still_used():
    state: dict = {}
    sync = new_sync(state)
    sync.admit("1", at(50))
    sync.page_done("tok-2")
    sync.keys_for_stop()
    resumed = new_sync(dict(state))
    assert resumed.keys_missing_until is None
    assert not resumed.admit("1", at(50))  # delivered before the stop: skipped


def _pages(sync: PartitionSync, rows: int, per_page: int, first: int = 0) -> list[bool]:
    """Admit ``rows`` new rows in pages; what page_done answered for each page."""
    asked = []
    for page_start in range(first, first + rows, per_page):
        for n in range(page_start, min(first + rows, page_start + per_page)):
            assert sync.admit(f"k{n}", at(60) + dt.timedelta(seconds=n // 100))
        asked.append(sync.page_done(f"tok-{page_start}"))
    return asked


def test_state_is_asked_for_every_10000_delivered_rows_not_every_page():
    state: dict = {}
    sync = new_sync(state)
    asked = _pages(sync, 35_000, 300)
    # pages end at 300, 600, ...: a STATE once the next page could take the rows since
    # the last one past 10,000 (9,900, 19,800, 29,700), so a kill re-sends fewer
    assert [i for i, a in enumerate(asked) if a] == [32, 65, 98]
    assert state["cursor"]["token"] == "tok-34800"  # the cursor itself moves every page
    assert len(json.dumps(state)) < 300  # no keys while the pass runs


def test_pages_of_rereads_never_ask_for_a_state():
    state: dict = {}
    first = new_sync(state)
    _pages(first, 500, 100)
    first.finish()
    again = new_sync(state, now=at(125))
    for page in range(5):
        for n in range(page * 100, page * 100 + 100):
            assert not again.admit(f"k{n}", at(60) + dt.timedelta(seconds=n // 100))
        assert not again.page_done(f"tok-{page}")


def test_the_state_that_ends_a_pass_carries_every_key_inside_the_lookback():
    state: dict = {}
    sync = new_sync(state)
    _pages(sync, 12_000, 300)
    assert not sync.page_done(None)  # the last page: finish writes that STATE
    sync.finish()
    assert "cursor" not in state
    overlap = OverlapSet.decode(state["overlap"]["keys"])
    assert len(overlap) == 12_000  # stamped 13:00:00-13:01:59, all inside the lookback
    assert all(f"k{n}" in overlap for n in range(12_000))


def test_keys_for_stop_leave_out_the_page_in_flight():
    state: dict = {}
    sync = new_sync(state)
    _pages(sync, 600, 300)
    assert sync.admit("in-flight", at(70))  # admitted, perhaps not written when stopped
    sync.keys_for_stop()
    resumed = new_sync(dict(state))
    assert resumed.start().token == "tok-300"
    assert not resumed.admit("k5", at(60))
    assert resumed.admit("in-flight", at(70))  # re-read from the cursor: sent again


def test_a_pass_resumed_from_a_keyless_cursor_says_what_its_overlap_cannot_vouch_for():
    state: dict = {}
    sync = new_sync(state)
    _pages(sync, 600, 300)  # SIGKILLed after this: the cursor has no keys
    resumed = new_sync(dict(state))
    resumed.keys_for_stop()  # a stop of the resumed pass keeps the cursor keyless
    assert resumed.admit("after", at(80))
    resumed.page_done(None)
    resumed.finish()
    # keys of rows delivered before the kill (stamped up to 13:00:05) are not in the set
    assert resumed.state["overlap"]["since"] == "2024-04-12T13:00:06Z"
    nxt = new_sync(resumed.state, now=at(130))
    assert nxt.uncovered_overlap() == (at(20), at(60.1))
    assert not nxt.admit("after", at(80))


def _cadence(sync: PartitionSync, room: int, rows: int = 9_900) -> list[int]:
    """Admit ``rows`` rows in pages of 300 with ``room`` bytes for keys (the last page asks
    for the first cadence STATE); ``report.emitted`` each time the room was asked."""
    asked: list[int] = []

    def key_room() -> int:
        asked.append(sync.report.emitted)
        return room

    for page_start in range(0, rows, 300):
        for n in range(page_start, min(rows, page_start + 300)):
            assert sync.admit(f"k{n}", at(60) + dt.timedelta(seconds=n // 100))
        sync.page_done(f"tok-{page_start}", key_room)
    return asked


def test_a_cadence_state_carries_the_keys_the_target_has_when_they_fit():
    state: dict = {}
    sync = new_sync(state)
    asked = _cadence(sync, room=10**6)
    assert asked == [9_900]  # once, at the cadence STATE, not on every page
    pending = OverlapSet.decode(state["cursor"]["pending"])
    assert len(pending) == 9_900  # every row written so far
    resumed = new_sync(dict(state))  # SIGKILLed after that STATE
    assert resumed.keys_missing_until is None
    assert not resumed.admit("k0", at(60))  # written before the kill: skipped
    resumed.page_done(None)
    resumed.finish()
    assert resumed.state["overlap"]["since"] == "2024-04-12T12:01:38Z"  # bookmark - lookback
    nxt = new_sync(resumed.state, now=at(130))
    assert nxt.uncovered_overlap() is None  # the next run re-sends nothing, says nothing
    assert not nxt.admit("k9899", at(60) + dt.timedelta(seconds=98))


def test_keys_that_do_not_fit_leave_the_cadence_state_keyless_but_written():
    state: dict = {}
    sync = new_sync(state)
    fits = new_sync({})
    _cadence(fits, room=10**6)
    needed = len(fits.state["cursor"]["pending"]) + 16  # PENDING_OVERHEAD
    _cadence(sync, room=needed - 1)
    assert "pending" not in state["cursor"]
    exact = new_sync({})
    _cadence(exact, room=needed)
    assert "pending" in exact.state["cursor"]
    none = new_sync({})
    asked = []
    for page_start in range(0, 9_900, 300):
        for n in range(page_start, page_start + 300):
            none.admit(f"k{n}", at(60))
        asked.append(none.page_done(f"tok-{page_start}", lambda: 0))
    assert asked.count(True) == 1  # the cadence STATE is asked for all the same
    assert "pending" not in none.state["cursor"]


def test_keys_never_outlive_their_cursor_nor_come_from_a_keyless_resume():
    state: dict = {}
    sync = new_sync(state)
    _cadence(sync, room=10**6)
    assert "pending" in state["cursor"]
    assert sync.admit("next", at(70))
    sync.page_done("tok-next", lambda: 10**6)  # not a cadence page: keyless again
    assert state["cursor"] == {**state["cursor"], "token": "tok-next"}
    assert "pending" not in state["cursor"]

    keyless: dict = {}
    _pages(new_sync(keyless), 600, 300)  # SIGKILLed after this: no keys
    resumed = new_sync(dict(keyless))
    asked = _cadence(resumed, room=10**6)
    assert asked == [9_900]  # asked at the cadence all the same (the writer's measure)
    assert "pending" not in resumed.state["cursor"]


def test_recovery_time_is_max_delivered_minus_lookback():
    state: dict = {}
    sync = new_sync(state, now=at(300))
    sync.admit("1", at(200))
    sync.page_done("tok")
    assert sync.recovery_time() == at(140)


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"replication_key_value": "yesterday"}, "replication_key_value"),
        ({"replication_key_value": 12}, "replication_key_value"),
        (
            {"replication_key": "updatedAt", "replication_key_value": "2024-01-01T00:00:00Z"},
            "replication_key",
        ),
        ({"overlap": {"v": 99, "keys": ""}}, "overlap.v"),
        ({"overlap": {"v": 1, "keys": "not-base64!"}}, "overlap.keys"),
        (
            {
                "cursor": {
                    "v": 1,
                    "token": "",
                    "window_start": "2024-01-01T00:00:00Z",
                    "pending": "",
                }
            },
            "cursor.token",
        ),
        ({"cursor": "abc"}, "cursor"),
    ],
)
def test_malformed_state_names_the_field(state, field):
    with pytest.raises(StateError, match=f"field '{field}'"):
        new_sync(state)


def test_lateness_warning_fires_within_20_percent_only():
    assert lateness_warning(dt.timedelta(minutes=47), LOOKBACK) is None
    text = lateness_warning(dt.timedelta(minutes=52), LOOKBACK)
    assert text is not None
    assert text.startswith(
        "rows arrived up to 52 min late; lookback is 60 min; raise lookback_minutes"
    )


def test_rows_stamped_before_the_window_are_skipped_as_re_reads():
    """If a token only sets a start position, older rows come back: they are re-reads."""
    state: dict = {}
    first = new_sync(state)
    first.admit("a", at(100))
    first.finish()
    second = new_sync(state, now=at(240))
    assert second.start().since == at(40)
    assert not second.admit("old", at(20))  # before the window: its key is long pruned
    assert second.admit("in-window", at(45))


def test_finish_writes_overlap_bounds_and_flags_a_lookback_rise():
    state: dict = {}
    first = new_sync(state)
    first.admit("a", at(100))
    first.finish()
    assert state["overlap"]["since"] == "2024-04-12T12:40:00Z"
    wider = PartitionSync(
        state,
        label="stream 'activities'",
        start_date=T0,
        lookback=dt.timedelta(minutes=90),
        run_started=lambda: at(240),
    )
    assert wider.uncovered_overlap() == (at(10), at(40))
    assert new_sync(state).uncovered_overlap() is None


def test_batch_mode_records_no_cursor():
    state: dict = {}
    sync = PartitionSync(
        state,
        label="x",
        start_date=T0,
        lookback=LOOKBACK,
        run_started=lambda: at(120),
        resumable=False,
    )
    sync.admit("1", at(10))
    sync.page_done("tok")
    assert "cursor" not in state
    sync.finish()
    assert state["replication_key_value"] == "2024-04-12T12:10:00Z"


def test_malformed_row_fields_are_a_clear_error():
    row = {
        "marketoGUID": "9",
        "activityDate": "2024-04-12T12:00:00+0000",
        "activityTypeId": 13,
        "fields": [{"id": "not-a-number", "name": "email"}],
    }
    with pytest.raises(MalformedResponse, match="requestId r1"):
        activity_record(row, type_names={}, request_id="r1")


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-04-12T12:00:07Z",
        "2024-04-12T12:00:07+0000",
        "2024-04-12T14:00:07+02:00",
        "2024-04-12T12:00:07.000Z",
        " 2024-04-12T12:00:07Z",
    ],
)
def test_every_activity_date_form_emits_one_rfc3339_utc_stamp(stamp):
    row = {"marketoGUID": "g", "activityDate": stamp, "activityTypeId": 1}
    record, when = dated_activity_record(row, type_names={}, request_id="r1")
    assert record["activityDate"] == "2024-04-12T12:00:07Z"
    assert when == dt.datetime(2024, 4, 12, 12, 0, 7, tzinfo=dt.timezone.utc)
    assert parse_datetime(record["activityDate"]) == when


@pytest.mark.parametrize(
    "stamp", ["2024-04-12T12:00:0xZ", "2024-13-12T12:00:07Z", "2024-04-12T12:00:07"]
)
def test_unparseable_activity_dates_are_a_clear_error(stamp):
    row = {"marketoGUID": "g", "activityDate": stamp, "activityTypeId": 1}
    with pytest.raises(MalformedResponse, match="requestId r1"):
        activity_record(row, type_names={}, request_id="r1")


def test_error_envelopes_of_any_shape():
    assert first_error({"errors": [{"code": 606, "message": "slow down"}]}) == ("606", "slow down")
    assert first_error({"errors": ["611"]}) == ("611", "")
    assert first_error({"success": False})[0] == "unknown"


def test_overlap_set_encoding_reused_across_pages_holds_exactly_the_set():
    """The cached encoding, partly rebuilt after each change, decodes to the set.

    Pages add keys mostly at the newest seconds, sometimes earlier (late rows), sometimes
    move a key to another second, and pruning drops whole leading seconds; the text may
    still carry keys older than a prune (never read again), and nothing else.
    """
    rng = random.Random(15)
    overlap = OverlapSet()
    keys: list[str] = []
    newest = 0.0
    pruned_before = at(-1000)
    for page in range(300):
        for _ in range(rng.randrange(0, 40)):
            late = rng.random() < 0.2
            minute = newest - rng.random() * 30 if late else newest + rng.random() * 0.5
            newest = max(newest, minute)
            if keys and rng.random() < 0.05:
                key = rng.choice(keys)  # the same key seen at another second
            elif rng.random() < 0.7:
                key = str(uuid.UUID(int=rng.getrandbits(128)))
                keys.append(key)
            else:
                key = str(rng.randrange(10**12))
                keys.append(key)
            overlap.add(key, at(minute))
        if rng.random() < 0.3:
            pruned_before = max(pruned_before, at(newest - rng.random() * 40))
            overlap.prune(pruned_before)
        if rng.random() < 0.8:  # not every page is encoded (pages of re-reads are not)
            text = overlap.encode()
            assert overlap.encode() is text  # unchanged since: the same text
            decoded = OverlapSet.decode(text)._stamps
            held = overlap._stamps
            assert all(decoded.get(key) == stamp for key, stamp in held.items()), page
            extra = {key: stamp for key, stamp in decoded.items() if key not in held}
            assert all(stamp < pruned_before.timestamp() for stamp in extra.values()), page
    fresh = OverlapSet()
    fresh.update(overlap)
    assert OverlapSet.decode(fresh.encode())._stamps == overlap._stamps
