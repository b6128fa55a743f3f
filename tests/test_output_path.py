"""The tap's output path: records written in batches of whole lines, the same bytes as the SDK's."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys

import pytest
from helpers import TapRun, expected_guids, parse_messages, sim_config, write_json
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage

from tap_marketo_activities.simulator import World
from tap_marketo_activities.streams import writer as writer_module
from tap_marketo_activities.streams.writer import BATCH_BYTES, BatchingWriter

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


def test_a_record_written_without_its_message_object_is_the_same_line(monkeypatch):
    as_messages = Stdout(monkeypatch)
    writer = BatchingWriter()
    for number in range(3):
        writer.write_message(record(number, padding=number))
    writer.flush()
    direct = Stdout(monkeypatch)
    writer = BatchingWriter()
    for number in range(3):
        message = record(number, padding=number)
        writer.write_record(message.stream, message.record, EXTRACTED)
    assert direct.lines() == []  # held like any record
    writer.write_message(StateMessage(value={}))
    assert direct.raw.getvalue() == as_messages.raw.getvalue() + b'{"type":"STATE","value":{}}\n'


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


# ------------------------------------------------------------- the record path (sdk_private)

NOW = "2024-04-12T16:00:00Z"


@pytest.fixture
def afternoon(simulator):
    return simulator(World.seed_afternoon(rows=600, seed=4), now=NOW)


def discovered(run_tap, config) -> dict:
    done = run_tap(config, args=("--discover",))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def without_extraction_time(run) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "time_extracted"} for m in run.messages]


def test_the_direct_record_path_writes_what_the_sdks_path_writes(afternoon, run_tap, tmp_path):
    config = sim_config(afternoon)
    direct = run_tap(config)
    sdk_path = tmp_path / "sdk_path.py"
    sdk_path.write_text(
        "from tap_marketo_activities.streams.sdk_private import DirectRecordMessages as D\n"
        "D._unchanged_output = False\n"
        "from tap_marketo_activities.tap import TapMarketoActivities as T\nT.cli()\n"
    )
    command = [sys.executable, str(sdk_path), "--config", str(write_json(tmp_path, "c", config))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert direct.returncode == done.returncode == 0, done.stderr[-3000:]
    through_sdk = TapRun(done.returncode, parse_messages(done.stdout), done.stderr, done.stdout)
    assert len(direct.records["activities"]) > 300
    assert without_extraction_time(direct) == without_extraction_time(through_sdk)
    assert all("time_extracted" in m for m in direct.messages if m["type"] == "RECORD")


def test_stream_maps_still_rename_filter_and_alias(afternoon, run_tap):
    maps = {
        "activities": {
            "campaignId": None,
            "lead": "leadId",
            "__filter__": "activityTypeId == 6",
        },
        "deleted_leads": {"__alias__": "removed_leads"},
    }
    run = run_tap(sim_config(afternoon, stream_maps=maps))
    assert run.returncode == 0, run.stderr[-3000:]
    records = run.records["activities"]
    assert records, "no Send Email rows in the world"
    assert {r["activityTypeId"] for r in records} == {6}
    assert all("campaignId" not in r and r["lead"] == r["leadId"] for r in records)
    want = expected_guids(afternoon, "activities", "2024-04-12T12:00:00Z", type_ids=[6])
    assert sorted(r["marketoGUID"] for r in records) == sorted(want)
    assert "deleted_leads" not in run.records
    assert run.records["removed_leads"]
    assert "removed_leads" in run.schemas


def test_a_deselected_property_is_left_out(afternoon, run_tap):
    config = sim_config(afternoon)
    catalog = discovered(run_tap, config)
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == "activities":
            for item in entry["metadata"]:
                if item["breadcrumb"] == ["properties", "leadId"]:
                    item["metadata"]["selected"] = False
    run = run_tap(config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.records["activities"]
    assert all("leadId" not in r for r in run.records["activities"])
    assert all("marketoGUID" in r and "attributes" in r for r in run.records["activities"])
    assert all("leadId" in r for r in run.records["lead_changes"])


def test_flattening_still_flattens_attributes(afternoon, run_tap):
    run = run_tap(sim_config(afternoon, flattening_enabled=True, flattening_max_depth=1))
    assert run.returncode == 0, run.stderr[-3000:]
    records = run.records["activities"]
    assert records
    assert all("attributes" not in r for r in records)
    assert any(key.startswith("attributes__") for r in records for key in r)


def test_a_stop_state_between_a_record_and_its_newline_gets_a_line_of_its_own(monkeypatch):
    """A SIGTERM's STATE can land after ``write_record`` encoded a row, before its newline.

    The signal is delivered at that exact point by wrapping the encoder: the handler does
    what a clean stop does (a forced STATE, then exit). Before the fix the RECORD and the
    STATE shared one line, which a target refuses ("Extra data").
    """
    out = Stdout(monkeypatch)
    writer = BatchingWriter()
    real = writer_module.encoder

    class StopAfterEncoding:
        def encode_into(self, message, buffer, offset):
            real.encode_into(message, buffer, offset)
            writer.force_state = True
            writer.write_message(StateMessage(value={"bookmarks": {"activities": {"n": 1}}}))
            raise SystemExit(143)

    writer.write_record("activities", record(0).record, EXTRACTED)
    monkeypatch.setattr(writer_module, "encoder", StopAfterEncoding())
    with pytest.raises(SystemExit):
        writer.write_record("activities", record(1).record, EXTRACTED)
    writer._flush_at_exit()
    lines = out.lines()  # every line parses on its own
    assert [m["type"] for m in lines] == ["RECORD", "RECORD", "STATE"]
    assert [m["record"]["marketoGUID"] for m in lines[:2]] == ["g0", "g1"]
