"""The run context stands alone: a test builds one without a Tap, and streams read only it.

``run.py`` is what a stream is handed instead of the Tap; these tests build it from plain
callables and objects, so its services (activity types, lateness, read-ahead, the bulk
cache, closing) are checked without a Tap, an SDK run or a server.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys

import pytest

from tap_marketo_activities.errors import ConfigError
from tap_marketo_activities.run import OWN_STREAM_TYPES, ActivityTypes, RunContext

TYPES = [{"id": i, "name": f"Type {i}"} for i in (1, 6, 12, 13, 37, 100001)]


class Recorder:
    """Stands in for the SDK's state writer and the tap's message writer."""

    def __init__(self):
        self.states = []
        self.messages = []

    def write_state(self, state):
        self.states.append(state)

    def write_message(self, message):
        self.messages.append(message)


class Limiter:
    """What the read-ahead asks of the run's call limiter."""

    call_s = None

    def favour(self, thread_id):
        pass

    def unfavour(self, thread_id):
        pass


class FakeConnection:
    def __init__(self):
        self.limiter = Limiter()


def build(configured=None, fetched=None, connect=None):
    calls = []

    def fetch():
        calls.append(1)
        return list(fetched if fetched is not None else TYPES)

    recorder = Recorder()
    run = RunContext(
        settings={"max_concurrent_calls": 5},
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        connect=connect or (lambda run: FakeConnection()),
        activity_types=ActivityTypes(fetch, configured),
        state_writer=recorder,
        message_writer=recorder,
        logger=logging.getLogger("test"),
    )
    return run, calls, recorder


def test_activity_types_are_fetched_once_at_first_use():
    run, calls, _ = build()
    assert calls == []
    assert run.activity_types.names[6] == "Type 6"
    assert [row["id"] for row in run.activity_types.rows] == [r["id"] for r in TYPES]
    run.activity_types.selected_ids()
    assert calls == [1]


def test_default_selection_leaves_out_the_types_other_streams_carry():
    run, _, _ = build()
    assert run.activity_types.selected_ids() == [1, 6, 100001]
    assert not set(run.activity_types.selected_ids()) & OWN_STREAM_TYPES


def test_configured_ids_are_checked_against_the_instance():
    run, _, _ = build(configured=[6, 12, 6])
    assert run.activity_types.selected_ids() == [6, 12]
    unknown, _, _ = build(configured=[6, 999])
    with pytest.raises(ConfigError, match="999"):
        unknown.activity_types.selected_ids()


def test_lateness_gauge_keeps_the_largest():
    run, _, _ = build()
    for minutes in (3, 11, 7):
        run.lateness.note(dt.timedelta(minutes=minutes))
    assert run.lateness.largest == dt.timedelta(minutes=11)


def test_connection_is_made_once_and_only_when_asked():
    made = []

    def connect(run):
        made.append(run)
        return FakeConnection()

    run, _, _ = build(connect=connect)
    assert not run.connected
    first = run.connection
    assert run.connection is first
    assert made == [run]
    assert run.connected


def test_read_ahead_with_no_walks_starts_empty_and_close_stops_everything():
    run, _, _ = build()
    run.start_read_ahead()
    assert run.read_ahead.started
    cache = run.bulk_exports
    assert cache is run.bulk_exports
    closed = []
    run.resources.callback(lambda: closed.append(True))
    run.close()
    assert closed == [True]


def test_writers_are_the_ones_handed_in():
    run, _, recorder = build()
    run.state_writer.write_state({"bookmarks": {}})
    run.message_writer.write_message("m")
    assert recorder.states == [{"bookmarks": {}}]
    assert recorder.messages == ["m"]


def test_discovery_builds_the_run_context_only_after_the_settings_are_checked(tmp_path):
    """A bad start_date in --discover is the settings check's one line, not a traceback.

    The SDK loads the (empty) state before discovery; the run context (which reads
    start_date) must not be built then.
    """
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"simulator": True, "start_date": "2024-01-01T10:00:00"}))
    done = subprocess.run(
        [sys.executable, "-m", "tap_marketo_activities", "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "start_date '2024-01-01T10:00:00' needs a time zone" in done.stderr
