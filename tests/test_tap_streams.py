"""The tap as a process against the simulator: streams, records, schemas, paging, auth."""

from __future__ import annotations

import json

import helpers
import jsonschema
import pytest
from helpers import guid_counts, sim_config

from tap_marketo_activities.records import activity_record
from tap_marketo_activities.simulator import World

START = "2024-04-12T12:00:00Z"
ALL_TYPES_BUT_OWN = None  # the simulator's default for "activities": every type but 13 and 37


def expected_guids(sim, stream, **kwargs):
    return helpers.expected_guids(sim, stream, START, **kwargs)


@pytest.fixture
def afternoon(simulator):
    return simulator(World.seed_afternoon(rows=1500, seed=11), now="2024-04-12T16:00:00Z")


def test_full_run_delivers_every_stream_exactly(afternoon, run_tap):
    sim = afternoon
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]

    for stream in ("activities", "lead_changes", "deleted_leads"):
        got = guid_counts(run.records[stream])
        assert max(got.values()) == 1, f"{stream} sent a row twice"
        assert sorted(got) == expected_guids(sim, stream), stream
        assert got, f"{stream} delivered nothing; the scenario should have rows"

    type_ids = {t["id"] for t in run.records["activity_types"]}
    assert {6, 13, 37, 100001} <= type_ids
    # the header-only token: never the deprecated query parameter
    assert sim.counters.access_token_query_uses == 0


def test_records_are_normalised_and_match_schemas(afternoon, run_tap):
    sim = afternoon
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    names = {t["id"]: t["name"] for t in run.records["activity_types"]}
    served = {r["marketoGUID"]: r for r in sim.expected("activities", since=START)}
    for stream, records in run.records.items():
        validator = jsonschema.Draft7Validator(run.schemas[stream])
        for record in records:
            validator.validate(record)
    for record in run.records["activities"]:
        assert record["activityDate"].endswith("Z")
        assert isinstance(record["attributes"], dict)
        assert record["activityTypeName"] == names[record["activityTypeId"]]
        expected = activity_record(served[record["marketoGUID"]], type_names=names, request_id="-")
        assert record == expected
    # typed attribute values survive (numbers stay numbers)
    values = [v for r in run.records["activities"] for v in r["attributes"].values()]
    assert any(isinstance(v, int) for v in values)
    assert any(r["id"] is None for r in run.records["activities"])  # id is optional
    changes = run.records["lead_changes"]
    assert all(isinstance(r["fields"], list) for r in changes)
    assert any(f["name"] == "email" for r in changes for f in r["fields"])


def test_type_groups_of_at_most_ten_are_state_partitions(afternoon, run_tap):
    sim = afternoon
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    partitions = run.state["bookmarks"]["activities"]["partitions"]
    groups = [p["context"]["activity_type_ids"] for p in partitions]
    assert len(groups) >= 3
    assert all(1 <= len(g) <= 10 for g in groups)
    flat = sorted(i for g in groups for i in g)
    assert len(flat) == len(set(flat))
    assert 13 not in flat
    assert 37 not in flat
    assert all(p["replication_key_value"].endswith("Z") for p in partitions)


def test_configured_activity_type_ids(afternoon, run_tap):
    sim = afternoon
    ids = [1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 22, 24]
    run = run_tap(sim_config(sim, activity_type_ids=ids))
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities", type_ids=ids)
    groups = [
        p["context"]["activity_type_ids"]
        for p in run.state["bookmarks"]["activities"]["partitions"]
    ]
    assert sorted(len(g) for g in groups) == [2, 10]


def test_empty_and_short_pages_are_followed(simulator, run_tap):
    sim = simulator(
        World.seed_afternoon(rows=800, seed=5), now="2024-04-12T16:00:00Z", scan_block=40
    )
    run = run_tap(sim_config(sim, activity_type_ids=[100001], page_size=7))
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities", type_ids=[100001])
    assert sim.counters.pages_served > sim.counters.rows_served / 7  # many short/empty pages


def test_long_tokens_go_out_as_post_method_override(simulator, run_tap):
    sim = simulator(
        World.seed_afternoon(rows=600, seed=3), now="2024-04-12T16:00:00Z", long_tokens=True
    )
    run = run_tap(sim_config(sim, page_size=50))
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities")
    assert sim.counters.method_override_posts > 0
    assert sim.counters.errors_by_code.get("HTTP414", 0) == 0  # we never sent a too-long GET


def test_a_414_from_the_server_is_resent_as_post(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=300, seed=3), now="2024-04-12T16:00:00Z")
    sim.inject("deletedleads.json", "414", times=1)
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.guids("deleted_leads")) == expected_guids(sim, "deleted_leads")
    assert sim.counters.method_override_posts >= 1


def test_token_expiry_mid_run(simulator, run_tap):
    sim = simulator(
        World.seed_afternoon(rows=900, seed=4),
        now="2024-04-12T16:00:00Z",
        token_lifetime_s=1,
        # Long enough a call that the run outlasts the 1-s token with its chains read in
        # parallel (prefetch.py), so the token expires while several threads use it.
        latency_s=0.2,
    )
    sim.inject("activities.json", "602", times=1)
    sim.inject("leadchanges.json", "601", times=1)
    run = run_tap(sim_config(sim, page_size=50))
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.guids("activities")) == expected_guids(sim, "activities")
    counters = sim.counters
    assert counters.tokens_issued >= 2  # the first token really expired mid-run
    assert counters.identity_calls >= 3  # and 601/602 made the tap ask again
    assert counters.access_token_query_uses == 0


@pytest.mark.parametrize(
    ("overrides", "setting", "fix"),
    [
        ({"client_secret": ""}, "client_secret", "is required"),
        ({"base_url": "ftp://example.com"}, "base_url", "must be an http(s) URL"),
        ({"start_date": "2024-04-12T12:00:00"}, "start_date", "needs a time zone"),
        ({"page_size": 301}, "page_size", "300"),
        ({"activity_type_ids": [6, 999]}, "activity_type_ids", "999"),
        (
            {"lead_change_fields": ["email", "favouriteColour"]},
            "lead_change_fields",
            "favouriteColour",
        ),
    ],
)
def test_bad_config_fails_with_one_line_naming_the_setting(
    afternoon, run_tap, overrides, setting, fix
):
    run = run_tap(sim_config(afternoon, **overrides))
    assert run.returncode != 0
    errors = run.error_lines()
    assert errors, run.stderr[-2000:]
    assert any(setting in line and fix in line for line in errors), errors
    assert "Traceback" not in run.stderr
    # Fields are checked by Marketo when lead_changes is read; everything else up front.
    stream = "lead_changes" if setting == "lead_change_fields" else "activities"
    assert not run.records.get(stream)
    assert stream not in ((run.state or {}).get("bookmarks") or {})


def test_bad_credentials_say_which_settings(afternoon, run_tap):
    run = run_tap(sim_config(afternoon, client_secret="wrong-secret-value"))
    assert run.returncode != 0
    assert any("client_id and client_secret" in line for line in run.error_lines())
    assert "wrong-secret-value" not in run.stderr
    assert "Traceback" not in run.stderr


def test_rest_endpoint_form_of_base_url_is_accepted(afternoon, run_tap):
    run = run_tap(sim_config(afternoon, base_url=afternoon.base_url + "/rest/"), args=())
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.records["deleted_leads"]


def test_discover_lists_four_streams_with_keys_and_metadata(run_tap):
    done = run_tap({"simulator": True}, args=("--discover",))
    assert done.returncode == 0, done.stderr[-2000:]
    catalog = json.loads(done.stdout)
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    core = {"activity_types", "activities", "lead_changes", "deleted_leads"}
    assert core <= set(streams)
    # Besides the four, only the per-type tables (issue 14; tests/test_typed_streams.py).
    assert all(name.startswith("activities_") for name in set(streams) - core)
    assert streams["activity_types"]["key_properties"] == ["id"]
    for name in ("activities", "lead_changes", "deleted_leads"):
        stream = streams[name]
        assert stream["key_properties"] == ["marketoGUID"]
        assert stream["replication_key"] == "activityDate"
        assert stream["replication_method"] == "INCREMENTAL"
        assert stream["schema"]["properties"]["attributes"]["type"] == ["object", "null"]
    assert "fields" in streams["lead_changes"]["schema"]["properties"]


def test_about_lists_settings_and_capabilities(run_tap):
    done = run_tap({}, args=("--about", "--format", "json"))
    assert done.returncode == 0
    about = json.loads(done.stdout)
    settings = set(about["settings"]["properties"])
    assert {
        "client_id",
        "client_secret",
        "base_url",
        "start_date",
        "activity_type_ids",
        "lead_change_fields",
        "lookback_minutes",
        "page_size",
        "simulator",
    } <= settings
    assert about["settings"]["properties"]["client_secret"].get("secret") is True
    assert {
        "catalog",
        "discover",
        "state",
        "about",
        "stream-maps",
        "schema-flattening",
        "batch",
    } <= set(about["capabilities"])
