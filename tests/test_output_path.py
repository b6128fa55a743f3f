"""The tap's output path: records written in batches of whole lines, the same bytes as the SDK's."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys

import pytest
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage

from tap_marketo_activities.writer import BATCH_BYTES, BatchingWriter

EXTRACTED = dt.datetime(2024, 4, 12, 16, 0, tzinfo=dt.timezone.utc)


class Stdout:
    """sys.stdout over bytes the test can read, as the writers see it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raw = io.BytesIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(self.raw, encoding="utf-8"))

    def lines(self) -> list[dict]:
        text = self.raw.getvalue().decode()
        assert text == "" or text.endswith("\n"), "a line was cut"
        return [json.loads(line) for line in text.splitlines()]


def record(number: int, padding: int = 0) -> RecordMessage:
    row = {"marketoGUID": f"g{number}", "leadId": number, "note": "é" * padding}
    return RecordMessage(stream="activities", record=row, time_extracted=EXTRACTED)


def messages() -> list:
    return [
        SchemaMessage("activities", {"properties": {"marketoGUID": {"type": "string"}}}, ["id"]),
        *(record(i) for i in range(5)),
        StateMessage(value={"bookmarks": {"activities": {"n": 5}}}),
        *(record(i) for i in range(5, 8)),
        StateMessage(value={"bookmarks": {"activities": {"n": 8}}}),
    ]


def test_the_output_is_byte_for_byte_the_sdk_writers(monkeypatch):
    ours = Stdout(monkeypatch)
    writer = BatchingWriter()
    for message in messages():
        writer.write_message(message)
    sdks = Stdout(monkeypatch)
    sdk_writer = MsgSpecWriter()
    for message in messages():
        sdk_writer.write_message(message)
    assert ours.raw.getvalue() == sdks.raw.getvalue()
    kinds = [m["type"] for m in ours.lines()]
    assert kinds == ["SCHEMA", *["RECORD"] * 5, "STATE", *["RECORD"] * 3, "STATE"]


def test_records_are_held_until_the_state_that_covers_them(monkeypatch):
    out = Stdout(monkeypatch)
    writer = BatchingWriter()
    writer.write_message(record(1))
    writer.write_message(record(2))
    assert out.lines() == []
    writer.write_message(StateMessage(value={"n": 2}))
    assert [m["type"] for m in out.lines()] == ["RECORD", "RECORD", "STATE"]
    assert [m["record"]["marketoGUID"] for m in out.lines()[:2]] == ["g1", "g2"]


def test_many_records_go_out_in_whole_lines_before_any_state(monkeypatch):
    out = Stdout(monkeypatch)
    writer = BatchingWriter()
    count = 3 * BATCH_BYTES // 500
    for number in range(count):
        writer.write_message(record(number, padding=200))
    written = out.lines()
    assert 0 < len(written) < count
    assert [m["record"]["leadId"] for m in written] == list(range(len(written)))
    writer.flush()
    assert len(out.lines()) == count


def test_records_held_at_exit_are_written(monkeypatch):
    out = Stdout(monkeypatch)
    writer = BatchingWriter()
    writer.write_message(record(7))
    writer._flush_at_exit()
    assert [m["record"]["marketoGUID"] for m in out.lines()] == ["g7"]


def test_a_closed_pipe_at_exit_is_not_a_traceback(monkeypatch):
    class ClosedPipe(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(ClosedPipe())))
    writer = BatchingWriter()
    writer.write_message(record(1))
    writer._flush_at_exit()  # returns quietly
    with pytest.raises(BrokenPipeError):
        writer.write_message(StateMessage(value={}))
