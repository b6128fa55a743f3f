"""The leads stream: every lead the activities say changed, read by id with its current values.

Ground truth is the simulator's lead database, which is the fold of the activities visible at
the virtual time: a Change Data Value sets a standard field, Change Score the custom score
field (``updatedAt`` does not move), Change Owner the owner, Merge Leads removes the losers,
Delete Lead the lead.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
import requests
from helpers import TAP, kill_after_records, sim_config, write_json
from openapi_shapes import SHAPE_BY_PATH, assert_shape

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator.clock import parse_datetime
from tap_marketo_activities.simulator.leads import FIELDS, database
from tap_marketo_activities.streams.leads import feed
from tap_marketo_activities.streams.leads.schema import (
    Field,
    choose,
    conform,
    fields_from_describe,
    fields_from_describe2,
    lead_schema,
)

# Written out, not imported: the test must fail if the tap stops reading one of these.
CHANGE_TYPES = {12, 13, 21, 22, 23, 32, 100, 101, 108}
START = "2023-01-01T00:00:00Z"  # before every lead of the world was created
FIRST_NOW, SECOND_NOW = "2024-04-12T14:00:00Z", "2024-04-12T17:00:00Z"


def world() -> World:
    return World.seed_afternoon(rows=1500, seed=11)


def changed(sim: MarketoSimulator, since: str, now: str) -> dict[int, set[int]]:
    """{lead id: change types} of rows stamped at or after ``since`` and committed by ``now``."""
    out: dict[int, set[int]] = {}
    cut, until = parse_datetime(since), parse_datetime(now)
    for row in sim.world.rows():
        visible = row.committed_at <= until and row.activity_date >= cut
        if visible and row.activity_type_id in CHANGE_TYPES:
            out.setdefault(row.lead_id, set()).add(row.activity_type_id)
    return out


def leads_config(sim: MarketoSimulator, **overrides) -> dict:
    return sim_config(
        sim,
        leads_stream=True,
        start_date=START,
        bulk_poll_seconds=0.05,
        backfill_method="rest",  # the activities' own backfill is another test file's
        max_calls_per_20s=100,
        **overrides,
    )


# ------------------------------------------------------------------------ pure parts
def test_every_data_type_gets_its_json_type():
    kinds = {
        "string": ["string", "null"],
        "text": ["string", "null"],
        "email": ["string", "null"],
        "phone": ["string", "null"],
        "url": ["string", "null"],
        "reference": ["string", "null"],
        "integer": ["integer", "null"],
        "score": ["integer", "null"],
        "percent": ["number", "null"],
        "float": ["number", "null"],
        "currency": ["number", "null"],
        "boolean": ["boolean", "null"],
        "date": ["string", "null"],
        "datetime": ["string", "null"],
        "lead_function": ["string", "null"],
    }
    schema = lead_schema([Field("id", "integer"), *(Field(k, k) for k in kinds)])
    assert schema["properties"]["id"] == {"type": ["integer"]}
    assert schema["required"] == ["id"]
    for kind, json_type in kinds.items():
        assert schema["properties"][kind]["type"] == json_type, kind
    assert schema["properties"]["date"]["format"] == "date"
    assert schema["properties"]["datetime"]["format"] == "date-time"


def test_values_are_conformed_to_their_schema():
    assert conform("71", "integer") == 71
    assert conform(99.5, "percent") == 99.5
    assert conform("34.66", "currency") == 34.66
    assert conform("true", "boolean") is True
    assert conform(False, "boolean") is False
    assert conform(503, "reference") == "503"
    assert conform("", "string") is None
    assert conform(None, "datetime") is None


def test_describe_and_describe2_give_the_same_rest_names():
    v2 = [{"name": "API Lead", "fields": [{"name": "email", "dataType": "email"}]}]
    v1 = [
        {"id": 48, "displayName": "Email", "dataType": "email", "rest": {"name": "email"}},
        {"id": 99, "displayName": "SOAP only", "dataType": "string"},
    ]
    assert fields_from_describe2(v2) == fields_from_describe(v1) == [Field("email", "email")]


def test_lead_fields_chooses_and_names_unknown_fields():
    fields = [Field("id", "integer"), Field("email", "email"), Field("city", "string")]
    assert choose(fields, None) == fields
    assert choose(fields, ["city"]) == [Field("id", "integer"), Field("city", "string")]
    with pytest.raises(ValueError, match="nickname"):
        choose(fields, ["city", "nickname"])


def test_merge_ids_name_the_losers_and_the_winner():
    row = {
        "activityTypeId": 32,
        "leadId": 7,
        "activityDate": "2024-04-12T13:00:00Z",
        "marketoGUID": "g",
        "attributes": [{"name": "Merge IDs", "value": "7,9,11"}],
    }
    assert [(m.loser_id, m.winner_id) for m in feed.merges(row)] == [(9, 7), (11, 7)]
    assert feed.changed_ids([row, {"activityTypeId": 1, "leadId": 3}]) == {7}


# ------------------------------------------------------------------------ the simulator
@pytest.fixture
def sim():
    with MarketoSimulator(world(), now=FIRST_NOW) as simulator:
        yield simulator


@pytest.fixture
def session(sim):
    with requests.Session() as s:
        token = s.get(
            sim.base_url + "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            },
            timeout=5,
        ).json()["access_token"]
        s.headers["Authorization"] = f"Bearer {token}"
        yield s


def test_describe2_has_custom_fields_of_every_data_type(sim, session):
    body = session.get(sim.base_url + "/rest/v1/leads/describe2.json", timeout=5).json()
    assert_shape(body, SHAPE_BY_PATH["/rest/v1/leads/describe2.json"])
    fields = body["result"][0]["fields"]
    kinds = {f["dataType"] for f in fields}
    assert kinds >= {"string", "text", "email", "phone", "url", "reference", "integer"}
    assert kinds >= {"score", "percent", "float", "currency", "boolean", "date", "datetime"}
    assert [f["name"] for f in fields] == [name for name, *_ in FIELDS]


def test_leads_by_id_get_and_post_method_get_agree_and_drop_unknown_ids(sim, session):
    db = database(sim).at(sim.clock.now())
    ids = sorted(db)[:3]
    values = ",".join(map(str, [*ids, 1]))  # lead 1 does not exist: silently dropped
    url = sim.base_url + "/rest/v1/leads.json"
    query = {"filterType": "id", "filterValues": values, "fields": "email,behaviorScore"}
    got = session.get(url, params=query, timeout=5).json()
    posted = session.post(url, params={"_method": "GET"}, data=query, timeout=5).json()
    assert got == {**posted, "requestId": got["requestId"]}
    assert_shape(got, SHAPE_BY_PATH["/rest/v1/leads.json"])
    assert [r["id"] for r in got["result"]] == ids
    assert got["result"][0] == {
        "id": ids[0],
        "email": db[ids[0]]["email"],
        "behaviorScore": db[ids[0]]["behaviorScore"],
    }
    too_many = ",".join(str(1000 + k) for k in range(301))
    answer = session.get(url, params={"filterType": "id", "filterValues": too_many}, timeout=5)
    assert answer.json()["errors"][0]["code"] == "1003"
    unknown = {**query, "fields": "nickname"}
    assert session.get(url, params=unknown, timeout=5).json()["errors"][0]["code"] == "1006"


def test_a_change_score_does_not_move_updated_at(sim):
    scores = [r for r in sim.world.rows() if r.activity_type_id == 22]
    row = scores[0]
    before = database(sim).at(row.committed_at - timedelta(seconds=1)).get(row.lead_id)
    after = database(sim).at(row.committed_at)[row.lead_id]
    assert before is not None
    assert after["behaviorScore"] != before["behaviorScore"]
    assert after["updatedAt"] == before["updatedAt"]


# ------------------------------------------------------------------------ the tap
def assert_current(records: list[dict], sim: MarketoSimulator) -> None:
    """Each record is the lead as the simulator holds it now (reference ids as text)."""
    truth = database(sim).at(sim.clock.now())
    references = [name for name, _, kind, _ in FIELDS if kind == "reference"]
    for record in records:
        lead = dict(truth[record["id"]])
        lead.update({name: str(lead[name]) for name in references if lead[name] is not None})
        assert record == lead, record["id"]


def test_no_leads_stream_and_no_describe_unless_asked_for(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "leads" not in run.records
    assert "/rest/v1/leads/describe2.json" not in sim.counters.calls_by_path


def test_first_run_then_next_run_deliver_every_changed_lead_once_with_its_values(
    simulator, run_tap
):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    truth = database(sim).at(sim.clock.now())
    ids = [r["id"] for r in first.records["leads"]]
    assert sorted(ids) == sorted(truth), "the first sync is every lead, each once"
    assert_current(first.records["leads"], sim)
    assert "/rest/v1/leads.json" not in sim.counters.calls_by_path, "bulk, not REST"
    assert first.state["bookmarks"]["leads"] == {
        "replication_key_value": FIRST_NOW,
        "reconciled_at": FIRST_NOW,  # a first sync reads every lead
    }
    assert set(first.schemas["leads"]["properties"]) == {name for name, *_ in FIELDS}
    bookmark = first.state["bookmarks"]["leads"]["replication_key_value"]

    sim.clock.set(SECOND_NOW)
    sim.reset_counters()
    second = run_tap(leads_config(sim), state=first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    calls = sim.counters.calls_by_path
    assert calls["/rest/v1/leads/describe2.json"] == 1
    truth = database(sim).at(sim.clock.now())
    since = (parse_datetime(bookmark) - timedelta(minutes=60)).isoformat()
    window = changed(sim, since, SECOND_NOW)
    kinds = set().union(*window.values())
    assert calls["/rest/v1/leads.json"] == -(-len(window) // 300), "one call per 300 leads"
    assert {13, 22, 23, 32} <= kinds, "the scenario has every kind of change"
    ids = [r["id"] for r in second.records["leads"]]
    assert len(ids) == len(set(ids)), "each lead once"
    assert set(ids) == {lead for lead in window if lead in truth}
    assert_current(second.records["leads"], sim)
    gone = {lead for lead in window if lead not in truth}
    assert gone, "the scenario deletes or merges away a lead that changed"
    assert "no longer exist (deleted or merged away)" in second.stderr
    # Merges: a row per loser, its winner re-read with the merge applied
    merges = second.records["merged_leads"]
    assert merges
    for merge in merges:
        assert merge["loserId"] not in truth
        assert merge["winnerId"] not in truth or merge["winnerId"] in ids
    # the next run reads from its own bookmark: nothing new, nothing re-read outside it
    assert second.state["bookmarks"]["leads"]["replication_key_value"] > bookmark


def test_a_run_killed_while_writing_leads_loses_none(simulator, run_tap, tmp_path):
    sim = simulator(world(), now=SECOND_NOW)
    config = write_json(tmp_path, "config.json", leads_config(sim))
    whole = run_tap(leads_config(sim))
    assert whole.returncode == 0, whole.stderr[-2000:]
    before_leads = sum(
        len(rows) for name, rows in whole.records.items() if name not in ("leads", "merged_leads")
    )
    written, code = kill_after_records([*TAP, "--config", str(config)], before_leads + 25)
    assert code != 0
    killed_leads = [m for m in written if m["type"] == "RECORD" and m["stream"] == "leads"]
    assert 0 < len(killed_leads) < len(whole.records["leads"])
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    assert "replication_key_value" not in state["bookmarks"].get("leads", {})
    assert state["bookmarks"]["leads"]["bulk"]["done_until"] > START, "resumes after a window"
    resumed = run_tap(leads_config(sim), state=state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    delivered = Counter(r["id"] for r in [*(m["record"] for m in killed_leads)])
    delivered.update(r["id"] for r in resumed.records["leads"])
    assert set(delivered) == {r["id"] for r in whole.records["leads"]}


def test_lead_fields_narrows_the_schema_and_names_a_wrong_field(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    run = run_tap(leads_config(sim, lead_fields=["email", "behaviorScore"]))
    assert run.returncode == 0, run.stderr[-2000:]
    assert set(run.schemas["leads"]["properties"]) == {"id", "email", "behaviorScore"}
    assert all(set(r) == {"id", "email", "behaviorScore"} for r in run.records["leads"])
    wrong = run_tap(leads_config(sim, lead_fields=["email", "nickname"]))
    assert wrong.returncode != 0
    assert "lead_fields names fields this instance does not have: nickname" in wrong.stderr
    assert "Traceback" not in wrong.stderr, wrong.stderr[-2000:]


def test_falls_back_to_describe_when_describe2_fails(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    sim.inject("/leads/describe2.json", "610", times=50)
    run = run_tap(leads_config(sim))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "describe2.json failed" in run.stderr
    assert set(run.schemas["leads"]["properties"]) < {name for name, *_ in FIELDS}
    assert run.records["leads"]
    json.dumps(run.records["leads"])


def test_with_the_bulk_updated_at_filter_the_next_run_exports_what_changed(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "no bulk updatedAt filter (1035)" not in first.stderr  # the first sync does not ask
    sim.bulk.lead_updated_at_filter = True
    sim.clock.set(SECOND_NOW)
    sim.reset_counters()
    second = run_tap(leads_config(sim), state=first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    db = database(sim)
    truth = db.at(sim.clock.now())
    since = parse_datetime(FIRST_NOW) - timedelta(minutes=60)
    touched = {lead for lead, ts in db.touched.items() if ts >= since.timestamp()} & set(truth)
    by_feed = {lead for lead in changed(sim, since.isoformat(), SECOND_NOW) if lead in truth}
    ids = [r["id"] for r in second.records["leads"]]
    assert len(ids) == len(set(ids)), "each lead once"
    assert set(ids) == touched | by_feed
    assert by_feed <= touched, "every change the activities show moves the filter's updatedAt"
    assert_current(second.records["leads"], sim)
    # only the ids the activities name and the export lacks (gone ones) are asked by REST
    assert sim.counters.calls_by_path.get("/rest/v1/leads.json", 0) <= 1
    assert "no longer exist (deleted or merged away)" in second.stderr


def test_without_the_filter_the_probe_answers_1035_and_activities_name_the_leads(
    simulator, run_tap
):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    sim.clock.set(SECOND_NOW)
    second = run_tap(leads_config(sim), state=first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "no bulk updatedAt filter (1035)" in second.stderr
    assert second.records["leads"]
    assert_current(second.records["leads"], sim)


def test_a_leads_state_that_is_not_a_date_names_the_field(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    state = {"bookmarks": {"leads": {"created_until": "last tuesday"}}}
    run = run_tap(leads_config(sim), state=state)
    assert run.returncode != 0
    assert "field 'created_until' is 'last tuesday', not an ISO 8601 date-time" in run.stderr
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert not run.records["leads"]
