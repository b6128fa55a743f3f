"""The ``bulk`` part of a STATE, and non-finite numbers anywhere in it, refused in one line.

An ``exportId`` is part of a request path sent with the bearer token, ``done_until`` decides
which windows are never read, ``rows_done`` how many rows are skipped: each is checked before
any call, and a STATE holding NaN, Infinity or 1e400 is refused naming the field rather than
crashing when the SDK reads back what Python would write for it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import sim_config
from test_hostile_state import FIRST_TEN, NOW, _run_with_state_text

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.simulator import World
from tap_marketo_activities.sync.state import check_state, parse_state_text

GOOD_ID = "3c5e7f9a-1b2d-4e6f-8a0b-1c2d3e4f5a6b"
LOCAL_TOMORROW = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime(
    "%Y-%m-%dT%H:%M:%SZ"
)


FIRST_GROUP = [1, 2, 3, 6, 7, 8, 9, 10, 11, 19]  # the tap's first group of the seed world


def with_bulk(bulk, ids=FIRST_TEN) -> dict:
    partition = {"context": {"activity_type_ids": ids}, "bulk": bulk}
    return {"bookmarks": {"activities": {"partitions": [partition]}}}


def job(**fields) -> dict:
    entry = {
        "exportId": GOOD_ID,
        "startAt": "2024-03-01T00:00:00Z",
        "endAt": "2024-03-31T00:00:00Z",
        "rows_done": 0,
    }
    entry.update(fields)
    return {"done_until": "2024-03-01T00:00:00Z", "job": entry}


BAD_BULK = {
    "traversal id": (job(exportId="../../rest/v1/leads"), "bulk.job.exportId"),
    "encoded slash id": (job(exportId="%2F..%2Fidentity"), "bulk.job.exportId"),
    "query in id": (job(exportId=GOOD_ID + "?x=1"), "bulk.job.exportId"),
    "shared traversal": (
        {"shared": {"2024-03-01T00:00:00Z": {"exportId": "../x", "endAt": "2024-03-02T00:00:00Z"}}},
        "bulk.shared[2024-03-01T00:00:00Z].exportId",
    ),
    "done_until 9999": ({"done_until": "9999-01-01T00:00:00Z"}, "bulk.done_until"),
    "done_until tomorrow": ({"done_until": LOCAL_TOMORROW}, "bulk.done_until"),
    "rows_done 1e12": (job(rows_done=1e12), "bulk.job.rows_done"),
    "rows_done negative": (job(rows_done=-5), "bulk.job.rows_done"),
    "rows_done true": (job(rows_done=True), "bulk.job.rows_done"),
    "39-day window": (job(endAt="2024-04-09T00:00:00Z"), "bulk.job.endAt"),
    "reversed window": (job(endAt="2024-02-01T00:00:00Z"), "bulk.job.endAt"),
    "unknown key": ({"done_untill": "2024-03-01T00:00:00Z"}, "bulk.done_untill"),
    "not an object": ("yes", "bulk"),
}

NON_FINITE = {
    "NaN bookmark": (
        '{"bookmarks": {"lead_changes": {"replication_key_value": NaN}}}',
        "stream 'lead_changes': field 'replication_key_value' is nan",
    ),
    "Infinity in a context": (
        '{"bookmarks": {"activities": {"partitions": [{"context": '
        '{"activity_type_ids": [-Infinity]}}]}}}',
        "stream 'activities': field 'partitions[0].context.activity_type_ids[0]' is -inf",
    ),
    "1e400 rows_done": (
        json.dumps(with_bulk(job())).replace('"rows_done": 0', '"rows_done": 1e400'),
        "field 'partitions[0].bulk.job.rows_done' is inf",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BULK))
def test_a_hostile_bulk_state_is_refused_naming_the_field(name):
    bulk, field = BAD_BULK[name]
    with pytest.raises(StateError) as caught:
        check_state(json.loads(json.dumps(with_bulk(bulk))))
    message = str(caught.value)
    assert "\n" not in message
    assert f"field '{field}'" in message
    assert "partition {'activity_type_ids': [1, 2" in message
    assert "remove this partition's 'bulk' entry" in message


@pytest.mark.parametrize("name", sorted(NON_FINITE))
def test_non_finite_numbers_are_refused_naming_the_field(name):
    text, fragment = NON_FINITE[name]
    with pytest.raises(StateError) as caught:
        check_state(parse_state_text(text))
    assert "\n" not in str(caught.value)
    assert fragment in str(caught.value)


def test_the_bulk_state_the_tap_writes_is_accepted():
    state = with_bulk(
        {
            **job(rows_done=1200),
            "shared": {
                "2024-03-31T00:00:00Z": {"exportId": GOOD_ID, "endAt": "2024-04-12T15:45:00Z"}
            },
        }
    )
    assert check_state(state) is state


TAP_CASES = {
    "traversal id": json.dumps(with_bulk(job(exportId="../../../identity/oauth/token?"))),
    "39-day window": json.dumps(with_bulk(job(endAt="2024-04-09T00:00:00Z"))),
    "NaN": NON_FINITE["NaN bookmark"][0],
    "1e400": NON_FINITE["1e400 rows_done"][0],
}


@pytest.mark.parametrize("name", sorted(TAP_CASES))
def test_the_tap_refuses_it_in_one_line_before_any_call(simulator, tmp_path, name):
    sim = simulator(World.seed_afternoon(rows=200, seed=1), now=NOW)
    done = _run_with_state_text(tmp_path, sim, TAP_CASES[name], name)
    errors = [line for line in done.stderr.splitlines() if "| ERROR" in line]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert sim.counters.total_calls == 0


def test_done_until_after_marketos_clock_stops_the_backfill_in_one_line(simulator, run_tap):
    """Ahead of Marketo's clock (not of this machine's): found at the first call, no window
    is skipped and the partition's state is written back unchanged."""
    sim = simulator(World.seed_afternoon(rows=300, seed=2), now=NOW)
    ahead = "2024-04-13T16:00:00Z"  # a day after the simulator's clock
    run = run_tap(
        sim_config(sim, start_date="2024-04-01T00:00:00Z"),
        with_bulk({"done_until": ahead}, FIRST_GROUP),
    )
    assert run.returncode == 1, run.stderr[-2000:]
    errors = [line for line in run.error_lines() if "unhandled error occurred" not in line]
    assert len(errors) == 1, run.stderr[-2000:]
    assert "field 'bulk.done_until' is in the future (2024-04-13T16:00:00Z)" in errors[0]
    assert "Traceback" not in run.stderr
    assert not run.records.get("activities")
