"""The leads feed takes the change types from the activities walk of the same run.

Where ``activities`` walks a change type (New Lead, Change Data Value, Change Score, Merge
Leads...) from where the feed needs it, the feed makes no ``/activities.json`` call of its
own for it (sync/lead_changes.py, streams/leads/changes.py). The simulator counts the
``/activities.json`` calls by their ``activityTypeIds``: a call whose types are not one of
the activities partitions is the feed's.

End to end: the real tap process against the simulator, as tests/test_leads.py.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import typing as t
from datetime import timedelta

import pytest
from helpers import DEFAULT_ACTIVITY_TYPES, TAP, parse_messages, sim_config, write_json
from test_leads import CHANGE_TYPES, FIRST_NOW, SECOND_NOW, assert_current, leads_config, world
from test_typed_streams import discover, select

from tap_marketo_activities.errors import StateError
from tap_marketo_activities.records import parse_datetime
from tap_marketo_activities.simulator.catalog import DEFAULT_ACTIVITY_TYPE_IDS
from tap_marketo_activities.simulator.clock import parse_datetime as sim_time
from tap_marketo_activities.simulator.leads import database
from tap_marketo_activities.streams.leads import changes
from tap_marketo_activities.sync.lead_changes import LeadChanges
from tap_marketo_activities.sync.leads_state import check_leads_state

# 12 and 13 too (the catalog's default list leaves 13 to lead_changes): every change type
if t.TYPE_CHECKING:
    from tap_marketo_activities.simulator import MarketoSimulator

ALL_TYPES = sorted({*DEFAULT_ACTIVITY_TYPE_IDS, 12, 13})
#: the change types the simulated instance lists
PRESENT = sorted(CHANGE_TYPES & set(ALL_TYPES))
THIRD_NOW = "2024-04-12T18:10:00Z"  # after the last row of the world is committed
FROM_WALK = "leads: change types taken from the activities chains: "


def changed_leads(sim: MarketoSimulator, *, since: str, after: str | None, until: str) -> set:
    """Leads with a change row stamped at or after ``since``, committed in (after, until]."""
    cut, until_t = sim_time(since), sim_time(until)
    after_t = sim_time(after) if after else None
    return {
        row.lead_id
        for row in sim.world.rows()
        if row.activity_type_id in CHANGE_TYPES
        and row.activity_date >= cut
        and row.committed_at <= until_t
        and (after_t is None or row.committed_at > after_t)
    }


def feed_calls(sim: MarketoSimulator, state: dict) -> dict[str, int]:
    """``/activities.json`` calls whose types are not an activities partition's: the feed's."""
    partitions = state["bookmarks"].get("activities", {}).get("partitions", [])
    walked = {",".join(map(str, sorted(p["context"]["activity_type_ids"]))) for p in partitions}
    calls = sim.counters.activity_calls_by_types
    return {types: n for types, n in calls.items() if types not in walked}


def feed_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if FROM_WALK in line)


def first_and_second(sim, run_tap, config, catalog=None):
    first = run_tap(config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set(SECOND_NOW)
    sim.reset_counters()
    second = run_tap(config, state=first.state, catalog=catalog)
    assert second.returncode == 0, second.stderr[-2000:]
    return first, second


def assert_window_delivered(sim, run, since: str, until: str) -> None:
    """Each lead changed from ``since`` that still exists arrives once, with its values."""
    truth = database(sim).at(sim.clock.now())
    ids = [r["id"] for r in run.records["leads"]]
    assert len(ids) == len(set(ids)), "each lead once"
    window = changed_leads(sim, since=since, after=None, until=until)
    assert set(ids) == {lead for lead in window if lead in truth}
    assert_current(run.records["leads"], sim)


# ----------------------------------------------------------------------------- end to end
def test_with_every_change_type_walked_the_feed_makes_no_activity_call(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim, activity_type_ids=ALL_TYPES)
    _, second = first_and_second(sim, run_tap, config)
    since = (sim_time(FIRST_NOW) - timedelta(minutes=60)).isoformat()
    assert_window_delivered(sim, second, since, SECOND_NOW)
    assert second.records["merged_leads"], "the window has merges (Merge Leads rows)"
    assert feed_calls(sim, second.state) == {}, "no activity call of the feed's own"
    assert feed_line(second.stderr).endswith("; read with calls of its own: none")
    # The activities walk itself is unchanged: every row once.
    guids = [r["marketoGUID"] for r in second.records["activities"]]
    assert len(guids) == len(set(guids))

    # The next run too (each type from where its group of the walk reached, feed_types):
    # still no call of its own, and every lead changed since the second run arrives.
    sim.clock.set(THIRD_NOW)
    sim.reset_counters()
    third = run_tap(config, state=second.state)
    assert third.returncode == 0, third.stderr[-2000:]
    assert feed_calls(sim, third.state) == {}
    truth = database(sim).at(sim.clock.now())
    ids = {r["id"] for r in third.records["leads"]}
    new = changed_leads(sim, since=START_OF_WORLD, after=SECOND_NOW, until=THIRD_NOW)
    assert new, "the scenario changes leads after the second run"
    assert {lead for lead in new if lead in truth} <= ids, "nothing changed since is lost"
    assert_current(third.records["leads"], sim)
    leads_state = third.state["bookmarks"]["leads"]
    assert (
        leads_state["replication_key_value"]
        > second.state["bookmarks"]["leads"]["replication_key_value"]
    )


START_OF_WORLD = "2024-04-12T00:00:00Z"


def test_types_left_out_of_activities_are_read_by_the_feed(simulator, run_tap):
    """By default activities leaves 12 and 13 to lead_changes: the feed reads those two."""
    sim = simulator(world(), now=FIRST_NOW)
    _, second = first_and_second(sim, run_tap, leads_config(sim))
    since = (sim_time(FIRST_NOW) - timedelta(minutes=60)).isoformat()
    assert_window_delivered(sim, second, since, SECOND_NOW)
    assert set(feed_calls(sim, second.state)) == {"12,13"}
    line = feed_line(second.stderr)
    assert line.endswith("; read with calls of its own: 12, 13"), line
    walked = sorted(set(PRESENT) - {12, 13})
    assert f"chains: {', '.join(map(str, walked))};" in line


def test_with_activities_not_selected_the_feed_reads_every_type(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim)
    catalog = select(discover(run_tap, config), {"leads", "merged_leads", "activity_types"})
    _, second = first_and_second(sim, run_tap, config, catalog=catalog)
    assert "activities" not in second.records
    since = (sim_time(FIRST_NOW) - timedelta(minutes=60)).isoformat()
    assert_window_delivered(sim, second, since, SECOND_NOW)
    assert set(feed_calls(sim, second.state)) == {",".join(map(str, PRESENT))}
    assert FROM_WALK + "none;" in feed_line(second.stderr)


def test_a_run_that_fails_after_activities_loses_no_changed_lead(simulator, run_tap):
    """Activities' bookmarks move on, the leads' does not: the next run reads those types
    itself from the leads' own positions (the walk now starts later than it needs)."""
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim, activity_type_ids=ALL_TYPES)
    first = run_tap(config)
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set(SECOND_NOW)
    sim.inject("/v1/leads.json", "1003")  # the leads read by id fails
    failed = run_tap(config, state=first.state)
    assert failed.returncode != 0
    assert not failed.records["leads"]
    state = failed.state
    assert state["bookmarks"]["activities"] != first.state["bookmarks"]["activities"]
    assert state["bookmarks"]["leads"] == first.state["bookmarks"]["leads"]

    sim.clock.set(THIRD_NOW)
    sim.reset_counters()
    resumed = run_tap(config, state=state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    since = (sim_time(FIRST_NOW) - timedelta(minutes=60)).isoformat()
    assert_window_delivered(sim, resumed, since, THIRD_NOW)
    assert feed_calls(sim, resumed.state), "the walk started too late: the feed read itself"
    assert "; read with calls of its own: none" not in feed_line(resumed.stderr)


def terminate_after_activities(command: list[str], records: int) -> list[dict]:
    """Run the tap; SIGTERM it after ``records`` activities RECORDs; the messages written."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, seen = [], 0
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            compact = line.replace(" ", "")
            seen += '"type":"RECORD"' in compact and '"stream":"activities"' in compact
            if seen >= records:
                process.send_signal(signal.SIGTERM)
                break
        lines += process.stdout.readlines()
    finally:
        process.wait(timeout=60)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return parse_messages("".join(lines))


def test_a_walk_resumed_from_its_cursor_covers_nothing(simulator, run_tap, tmp_path):
    """Its pages hold only the rows after the cursor: the feed reads that group's types."""
    sim = simulator(world(), now=FIRST_NOW)
    config = leads_config(sim, activity_type_ids=ALL_TYPES, page_size=20)
    first = run_tap(config)
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set(SECOND_NOW)
    command = [*TAP, "--config", str(write_json(tmp_path, "c.json", config))]
    command += ["--state", str(write_json(tmp_path, "s.json", first.state))]
    stopped = terminate_after_activities(command, 30)
    state = [m["value"] for m in stopped if m["type"] == "STATE"][-1]
    partitions = state["bookmarks"]["activities"]["partitions"]
    assert any("cursor" in p for p in partitions), "the stop saved a cursor"
    assert state["bookmarks"]["leads"] == first.state["bookmarks"]["leads"]

    sim.reset_counters()
    resumed = run_tap(config, state=state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "from its saved cursor" in resumed.stderr
    since = (sim_time(FIRST_NOW) - timedelta(minutes=60)).isoformat()
    assert_window_delivered(sim, resumed, since, SECOND_NOW)
    cursors = [p["context"]["activity_type_ids"] for p in partitions if "cursor" in p]
    read = {int(i) for types in feed_calls(sim, resumed.state) for i in types.split(",")}
    assert read >= {i for types in cursors for i in types} & set(PRESENT) != set()


def test_a_feed_types_entry_that_is_not_a_date_names_the_field(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    state = {"bookmarks": {"leads": {"replication_key_value": FIRST_NOW, "feed_types": {"22": 5}}}}
    run = run_tap(sim_config(sim, leads_stream=True), state=state)
    assert run.returncode != 0
    assert "field 'feed_types.22' is '5', not an ISO 8601 date-time" in run.stderr
    assert "Traceback" not in run.stderr, run.stderr[-2000:]


# ----------------------------------------------------------------------------- pure parts
T0 = dt.datetime(2024, 4, 12, 12, tzinfo=dt.timezone.utc)


def at(minutes: int) -> dt.datetime:
    return T0 + timedelta(minutes=minutes)


def row(type_id: int, lead: int, minutes: int, **more) -> dict:
    when = at(minutes).strftime("%Y-%m-%dT%H:%M:%SZ")
    guid = f"{type_id}-{lead}-{minutes}"
    return {"activityTypeId": type_id, "leadId": lead, "activityDate": when, "marketoGUID": guid}


def collector() -> LeadChanges:
    walk = LeadChanges()
    walk.watch({13, 22, 32}, whole={32})
    return walk


def test_only_a_fresh_pass_read_to_its_end_covers_its_types():
    walk = collector()
    walk.page([row(13, 1, 5), row(22, 2, 6), row(6, 3, 7), "not a row"])
    assert walk.coverage(13, at(0)) is None, "no pass has ended"
    walk.pass_done([13, 6], since=at(-10), reached=at(7), fresh=False)  # a resumed cursor
    assert walk.coverage(13, at(0)) is None
    walk.pass_done([13, 6], since=at(-10), reached=at(7), fresh=True)
    assert walk.coverage(13, at(0)) == walk.coverage(13, at(-10))
    assert walk.coverage(13, at(0)).reached == at(7)
    assert walk.coverage(13, at(-11)) is None, "the pass began after what is needed"
    assert walk.coverage(22, at(0)) is None, "22 was not in that pass's group"
    assert walk.coverage(6, at(0)) is None, "6 is not watched"
    assert walk.leads(13, at(0)) == {1}
    assert walk.leads(13, at(6)) == set(), "stamped before what is asked"
    assert walk.leads(6, at(0)) == set()


def test_rows_of_every_pass_are_kept_and_merges_whole():
    walk = collector()
    merge = row(32, 7, 3)
    merge["attributes"] = [{"name": "Merge IDs", "value": "7,9"}]
    walk.page([row(22, 1, 1), row(22, 1, 4), merge])
    walk.page([row(22, 2, 2), merge])  # a re-read (the overlap): kept once
    assert walk.leads(22, at(3)) == {1}
    assert walk.leads(22, at(0)) == {1, 2}
    assert walk.rows(32, at(0)) == [merge]
    assert walk.rows(22, at(0)) == [], "only the types asked for whole"
    walk.watch(set())
    walk.page([row(22, 5, 9)])
    assert walk.leads(22, at(0)) == {1, 2}, "nothing is kept once nobody watches"


def test_the_furthest_covering_pass_wins():
    walk = collector()
    walk.pass_done([22], since=at(-60), reached=at(10), fresh=True)
    walk.pass_done([22], since=at(-5), reached=at(30), fresh=True)
    assert walk.coverage(22, at(-10)).reached == at(10), "only the first began that early"
    assert walk.coverage(22, at(0)).reached == at(30), "both did: the one that read further"
    assert walk.any_coverage(22).reached == at(30)


def test_gather_reads_only_uncovered_types_in_groups_of_ten():
    walk = collector()
    walk.watch({13, 22, 32, *range(200, 212)}, whole={32})
    merge = row(32, 7, 3)
    merge["attributes"] = [{"name": "Merge IDs", "value": "7;9"}]
    walk.page([row(22, 1, 1), merge])
    walk.pass_done([22, 32], since=at(-60), reached=at(10), fresh=True)
    walk.pass_done([13], since=at(30), reached=at(50), fresh=True)  # began too late
    asked = []

    def read(types, since):
        asked.append((types, since))
        yield [row(13, 4, 20), row(13, 5, -30)]  # 5: before 13's own start

    starts = {22: at(-20), 32: at(-20), 13: at(-20), **{i: at(-40) for i in range(200, 212)}}
    found = changes.gather(starts, walk, read)
    assert found.from_walk == [22, 32]
    assert [types for types, _ in asked] == [[13, *range(200, 209)], [209, 210, 211]]
    assert asked[0][1] == at(-40), "a group reads from its earliest start"
    assert found.changed == {1, 4, 7}, "7: the merge winner"
    assert [(m.loser_id, m.winner_id) for m in found.merges] == [(9, 7)]
    assert found.reached[22] == at(10)
    assert found.reached[13] == at(50), "read after every walk: as far as its group's walk"
    assert found.latest == at(50)


def test_positions_keep_the_types_behind_the_bookmark():
    before = {"13": at(-5).isoformat()}
    reached = {22: at(10), 32: at(30)}
    kept = changes.positions(reached, before, at(0), at(30), [13, 22, 32, 100])
    assert kept == {
        "13": "2024-04-12T11:55:00Z",  # not moved this run: where it was
        "22": "2024-04-12T12:10:00Z",
        "100": "2024-04-12T12:00:00Z",  # the old bookmark it was read from
    }
    starts = changes.type_since([13, 22, 32], at(20), kept, timedelta(minutes=60))
    assert starts == {13: at(-65), 22: at(-50), 32: at(20)}
    assert changes.type_since([22], at(-90), kept, timedelta(minutes=60)) == {22: at(-90)}


@pytest.mark.parametrize(
    ("positions", "field"),
    [("x", "feed_types"), ({"lead": FIRST_NOW}, "feed_types.lead"), ({"22": "x"}, "feed_types.22")],
)
def test_feed_types_are_checked(positions, field):
    now = parse_datetime(SECOND_NOW)
    state = {"replication_key_value": FIRST_NOW, "feed_types": positions}
    with pytest.raises(StateError, match=f"field '{field}'"):
        check_leads_state(state, now)
    check_leads_state({"feed_types": {"22": FIRST_NOW}}, now)


def test_default_types_leave_12_and_13_to_the_feed():
    assert {12, 13} & set(DEFAULT_ACTIVITY_TYPES) == set()
