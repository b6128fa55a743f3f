"""The writer keeps STATE within 5 % of the RECORD bytes, holding back what does not fit
(issue 22); a held STATE is written when a later one fits or at exit, a forced one at once."""

from __future__ import annotations

import datetime as dt
import json

from singer_sdk.singerlib import StateMessage

from tap_marketo_activities.streams.writer import (
    KEYS_RESERVE,
    LARGEST_KEYED_STATE,
    STATE_SHARE,
    BatchingWriter,
)

NOW = dt.datetime(2024, 4, 12, 12, tzinfo=dt.timezone.utc)


def lines(captured: bytes) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def records(writer: BatchingWriter, count: int) -> None:
    for n in range(count):
        writer.write_record("s", {"id": n, "pad": "x" * 400}, NOW)


def test_a_state_that_fits_is_written_after_its_records(capfdbinary):
    writer = BatchingWriter()
    records(writer, 100)
    writer.write_message(StateMessage(value={"n": 1}))
    out = lines(capfdbinary.readouterr().out)
    assert [m["type"] for m in out] == ["RECORD"] * 100 + ["STATE"]
    assert writer.state_bytes <= STATE_SHARE * writer.record_bytes


def test_a_state_over_the_share_is_held_until_one_fits_or_the_run_ends(capfdbinary):
    writer = BatchingWriter()
    records(writer, 10)  # about 4.5 KB of records: a 5 KB STATE is over 5 %
    writer.write_message(StateMessage(value={"big": "k" * 5000}))
    assert not capfdbinary.readouterr().out  # held, and the records stay in the batch
    writer.write_message(StateMessage(value={"big": "l" * 5000}))  # replaces the held one
    records(writer, 5)
    writer._flush_at_exit()  # the newest STATE, after the records before it
    out = lines(capfdbinary.readouterr().out)
    assert [m["type"] for m in out] == ["RECORD"] * 15 + ["STATE"]
    assert out[-1]["value"]["big"].startswith("l")
    records(writer, 1000)  # now a small STATE fits, and replaces nothing held
    writer.write_message(StateMessage(value={"n": 2}))
    writer._flush_at_exit()
    assert lines(capfdbinary.readouterr().out)[-1]["value"] == {"n": 2}


def test_a_forced_state_is_written_at_once_and_drops_an_older_held_one(capfdbinary):
    writer = BatchingWriter()
    records(writer, 10)
    writer.write_message(StateMessage(value={"big": "k" * 5000}))
    writer.force_state = True
    writer.write_message(StateMessage(value={"stop": "s" * 5000}))
    writer._flush_at_exit()
    out = lines(capfdbinary.readouterr().out)
    assert [m["type"] for m in out] == ["RECORD"] * 10 + ["STATE"]
    assert "stop" in out[-1]["value"]
    assert not writer.force_state  # one STATE only


def test_a_state_grown_within_its_room_is_written_at_once_and_leaves_the_reserve(capfdbinary):
    """What a cadence STATE's keys may take (``state_room``): never a STATE the share holds."""
    writer = BatchingWriter()
    records(writer, 2000)  # about 900 KB of records: 45 KB of STATE in all
    writer.write_message(StateMessage(value={"n": 0}))
    plain = len(writer.format_message(StateMessage(value={"keys": ""})))
    room = writer.state_room(plain)
    assert 5000 < room < 0.05 * writer.record_bytes / (1 + KEYS_RESERVE)
    writer.write_message(StateMessage(value={"keys": "k" * room}))  # over 4 KB, yet written
    out = lines(capfdbinary.readouterr().out)
    assert out[-1]["value"] == {"keys": "k" * room}
    # room left for KEYS_RESERVE more of its size: the pass's end and the run's last
    assert writer.state_bytes + KEYS_RESERVE * (plain + room) <= STATE_SHARE * writer.record_bytes
    assert writer.state_room(plain) < room  # what is written is spent
    assert BatchingWriter().state_room(plain) == 0  # no records yet: no room for keys
    writer.record_bytes = 10**9  # 50 MB of share: keys still never take a line past 1 MB
    assert writer.state_room(plain) == LARGEST_KEYED_STATE - plain


def test_keys_are_paid_from_the_records_since_the_last_ask_not_from_earlier_room(capfdbinary):
    """The room earlier records left stays for later STATEs (finished partitions' keys)."""
    writer = BatchingWriter()
    records(writer, 2000)
    plain = len(writer.format_message(StateMessage(value={"keys": ""})))
    assert writer.state_room(plain) > 5000  # asked, and nothing written: the room stays
    before = writer.record_bytes
    records(writer, 100)  # about 45 KB of records since: 2.3 KB of share, a third for keys
    room = writer.state_room(plain)
    earned = STATE_SHARE * (writer.record_bytes - before)
    assert 0 < room <= earned / (1 + KEYS_RESERVE) - plain
    assert STATE_SHARE * writer.record_bytes - writer.state_bytes > 40_000  # though left


def test_a_tally_may_take_what_the_share_leaves_and_is_then_written_at_once(capfdbinary):
    """A tally (about 11 bytes a second) is not paid like keys: it may use the room earlier
    records left, as long as the grown STATE is still written at once (never held)."""
    writer = BatchingWriter()
    records(writer, 2000)
    plain = len(writer.format_message(StateMessage(value={"tally": ""})))
    writer.state_room(plain)  # the cadence asks for keys first: nothing earned since
    records(writer, 10)
    keys = writer.state_room(plain)
    room = writer.tally_room(plain)
    assert keys < 5000 < room  # no room for keys, room for a tally
    assert writer.tally_room(plain) == room  # asking spends nothing
    writer.write_message(StateMessage(value={"tally": "t" * room}))
    out = lines(capfdbinary.readouterr().out)
    assert out[-1]["value"] == {"tally": "t" * room}  # written at once, not held back
    assert writer.state_bytes <= STATE_SHARE * writer.record_bytes
    assert BatchingWriter().tally_room(plain) == 0
