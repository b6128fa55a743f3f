"""Per-type activity tables: discovery, typed columns, one read for both shapes, resumes."""

from __future__ import annotations

import json
import signal

import pytest
from helpers import (
    TAP,
    expected_guids,
    guid_counts,
    kill_after_records,
    sim_config,
    write_json,
)

from tap_marketo_activities.simulator import World
from tap_marketo_activities.streams.schemas import COMMON_FIELDS
from tap_marketo_activities.streams.typed import (
    EXTRA_ATTRIBUTES,
    Column,
    NotOfType,
    TypeLayout,
    clash_key,
    coerce,
    snake_case,
    stream_names,
    type_layout,
    typed_record,
)
from tap_marketo_activities.sync.incremental import STATE_EVERY_ROWS

START = "2024-04-12T12:00:00Z"
FIVE = {  # five per-type tables, one of them a custom type
    "activities_send_email": 6,
    "activities_email_delivered": 7,
    "activities_open_email": 10,
    "activities_click_email": 11,
    "activities_attend_webinar": 100001,
}
WALK = ("activities.json", "pagingtoken.json")


# ---------------------------------------------------------------------------- pure rules
def test_snake_case_rule():
    assert snake_case("Campaign Run ID") == "campaign_run_id"
    assert snake_case("  Click   Link (URL)!") == "click_link_url"
    assert snake_case("Çlíck Émail") == "click_email"
    assert snake_case("日本") == ""


def test_stream_names_are_collision_safe_and_stable():
    types = [
        {"id": 100002, "name": "Attend-Webinar"},
        {"id": 6, "name": "Send Email"},
        {"id": 100001, "name": "Attend Webinar"},
        {"id": 100003, "name": "会議"},
    ]
    names = stream_names(types)
    assert names == {
        6: "activities_send_email",
        100001: "activities_attend_webinar",  # the lowest id keeps the plain name
        100002: "activities_attend_webinar_100002",
        100003: "activities_type_100003",
    }
    assert stream_names(reversed(types)) == names  # order of types.json does not matter


def test_columns_never_collide_with_common_fields_or_each_other():
    layout = type_layout(
        {
            "id": 1,
            "name": "X",
            "primaryAttribute": {"name": "ID", "dataType": "integer"},
            "attributes": [
                {"name": "Step ID", "dataType": "integer"},
                {"name": "step-id", "dataType": "string"},
                {"name": "Extra Attributes", "dataType": "string"},
            ],
        },
        "activities_x",
        reserved=["id", "marketoGUID", EXTRA_ATTRIBUTES],
    )
    assert [c.name for c in layout.columns] == [
        "id_attribute",
        "step_id",
        "step_id_attribute",
        "extra_attributes_attribute",
    ]


def test_stream_names_stay_distinct_against_suffixed_names():
    # "Foo" id 6 would take "activities_foo_6", the plain name of "Foo 6" (id 3).
    types = [{"id": 1, "name": "Foo"}, {"id": 3, "name": "Foo 6"}, {"id": 6, "name": "foo"}]
    names = stream_names(types)
    assert names == {1: "activities_foo", 3: "activities_foo_6", 6: "activities_foo_6_2"}
    later = stream_names([*types, {"id": 9, "name": "FOO_6_2"}])
    assert {k: later[k] for k in names} == names  # a new type moves no existing name
    assert later[9] == "activities_foo_6_2_9"
    assert len({clash_key(n) for n in later.values()}) == len(later)


def test_columns_stay_distinct_after_targets_fold_names():
    # What eight of Marketo's types carry: the common leadId and an attribute "Lead ID".
    layout = type_layout(
        {
            "id": 1,
            "name": "X",
            "attributes": [
                {"name": "Lead ID", "dataType": "integer"},
                {"name": "campaign_id", "dataType": "integer"},
                {"name": "Activity Date", "dataType": "datetime"},
                {"name": "LEAD-ID attribute", "dataType": "string"},
            ],
        },
        "activities_x",
        reserved=[*COMMON_FIELDS, EXTRA_ATTRIBUTES],
    )
    names = [c.name for c in layout.columns]
    assert names == [
        "lead_id_attribute",
        "campaign_id_attribute",
        "activity_date_attribute",
        "lead_id_attribute_attribute",  # its own name was taken, so it gets the suffix
    ]
    every = [*COMMON_FIELDS, EXTRA_ATTRIBUTES, *names]
    assert len({clash_key(n) for n in every}) == len(every)
    assert len({n.upper() for n in every}) == len(every)


def test_clash_key_folds_like_targets():
    assert clash_key("leadId") == clash_key("lead_id") == clash_key("LEAD ID") == "leadid"
    # target-snowflake's normalise_casing makes marketoGUID "marketoguid", the SDK "marketo_guid".
    assert clash_key("marketoGUID") == clash_key("marketoguid") == clash_key("Marketo GUID")


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (2**63, "integer"),
        (str(2**63), "integer"),
        (-(2**63) - 1, "integer"),
        (1e19, "integer"),
        ("NaN", "integer"),
        ("inf", "integer"),
        ("NaN", "float"),
        ("-Infinity", "currency"),
        ("1e400", "float"),
        (10**400, "float"),
    ],
)
def test_numbers_no_warehouse_column_holds_are_misfits(value, data_type):
    with pytest.raises(NotOfType):
        coerce(value, data_type)
    assert coerce(2**63 - 1, "integer") == 2**63 - 1
    assert coerce(str(-(2**63)), "integer") == -(2**63)


@pytest.mark.parametrize(
    ("value", "data_type", "expected"),
    [
        ("12", "integer", 12),
        (12.0, "integer", 12),
        ("3.5", "float", 3.5),
        ("19.99", "currency", 19.99),
        ("true", "boolean", True),
        (False, "boolean", False),
        ("2024-04-12", "date", "2024-04-12"),
        ("2024-04-12T10:00:00+0200", "datetime", "2024-04-12T08:00:00Z"),
        ("a@b.c", "email", "a@b.c"),
        (7, "string", "7"),
        ("anything", "someNewType", "anything"),
        ("", "integer", None),
    ],
)
def test_values_take_their_columns_type(value, data_type, expected):
    assert coerce(value, data_type) == expected


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        ("abc", "integer"),
        ("1.5", "integer"),
        (True, "integer"),
        ("maybe", "boolean"),
        ("12/04/2024", "date"),
        ("noon", "datetime"),
        ("x", "float"),
    ],
)
def test_values_that_do_not_fit_are_refused(value, data_type):
    with pytest.raises(NotOfType):
        coerce(value, data_type)


def test_misfits_and_undescribed_attributes_go_to_extra_attributes():
    layout = TypeLayout(
        10,
        "activities_open_email",
        [
            Column("mailing_id", "Mailing ID", "integer", primary=True),
            Column("step_id", "Step ID", "integer"),
            Column("platform", "Platform", "string"),
        ],
    )
    misfits = []
    row = typed_record(
        {
            "marketoGUID": "g1",
            "primaryAttributeValueId": 55,
            "primaryAttributeValue": "Email 55",
            "attributes": {"Step ID": "seven", "Platform": "iOS", "Browser": "Safari"},
        },
        layout,
        common=["marketoGUID"],
        columns_in_schema={"marketoGUID", "mailing_id", "step_id"},
        on_misfit=lambda column, value: misfits.append((column.name, value)),
    )
    # Platform has a column the catalog does not know yet; Browser no column at all.
    assert row == {
        "marketoGUID": "g1",
        "mailing_id": 55,
        "step_id": None,
        EXTRA_ATTRIBUTES: {"Step ID": "seven", "Platform": "iOS", "Browser": "Safari"},
    }
    assert misfits == [("step_id", "seven")]


# ---------------------------------------------------------------------------- end to end
def discover(run_tap, config):
    done = run_tap(config, args=("--discover",))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def select(catalog, names):
    """The catalog with exactly ``names`` selected."""
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in names
    return catalog


def walk_calls(sim, before=None):
    """Calls of the activity walk (paging tokens and pages) since ``before``."""
    before = before or {}
    return {
        path: n - before.get(path, 0)
        for path, n in sim.counters.calls_by_path.items()
        if path.endswith(WALK) and n - before.get(path, 0)
    }


def typed_guids(run, name):
    return sorted(r["marketoGUID"] for r in run.records.get(name, []))


@pytest.fixture
def afternoon(simulator):
    return simulator(World.seed_afternoon(rows=2000, seed=21), now="2024-04-12T16:00:00Z")


def test_discovery_lists_a_typed_table_per_type_off_by_default(afternoon, run_tap):
    catalog = discover(run_tap, sim_config(afternoon))
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert {"activities", "lead_changes", "deleted_leads", "activity_types"} <= set(streams)
    assert set(FIVE) <= set(streams)
    assert "activities_attend_webinar" in streams  # a custom type
    for name, entry in streams.items():
        if name.startswith("activities_"):
            root = next(m for m in entry["metadata"] if m["breadcrumb"] == [])["metadata"]
            assert root.get("selected-by-default") is False, name
            assert entry["key_properties"] == ["marketoGUID"]
            assert entry["replication_key"] == "activityDate"
    props = streams["activities_send_email"]["schema"]["properties"]
    assert props["mailing_id"]["type"] == ["integer", "null"]
    assert props["campaign_run_id"]["type"] == ["integer", "null"]
    assert props["activityDate"]["format"] == "date-time"
    opened = streams["activities_open_email"]["schema"]["properties"]
    assert opened["is_mobile_device"]["type"] == ["boolean", "null"]
    assert opened["platform"]["type"] == ["string", "null"]
    new_lead = streams["activities_new_lead"]["schema"]["properties"]
    assert new_lead["created_date"]["format"] == "date"
    assert streams["activities_attend_webinar"]["schema"]["properties"]["minutes_attended"][
        "type"
    ] == ["integer", "null"]


def test_five_typed_tables_cost_what_the_unified_stream_costs(simulator, run_tap):
    world = World.seed_afternoon(rows=3000, seed=22)
    typed_sim = simulator(world, now="2024-04-12T16:00:00Z")
    catalog = select(discover(run_tap, sim_config(typed_sim)), set(FIVE))
    before = walk_calls(typed_sim)
    typed = run_tap(sim_config(typed_sim, page_size=100), catalog=catalog)
    assert typed.returncode == 0, typed.stderr[-3000:]

    unified_sim = simulator(world, now="2024-04-12T16:00:00Z")
    config = sim_config(unified_sim, page_size=100, activity_type_ids=sorted(FIVE.values()))
    unified_catalog = select(discover(run_tap, config), {"activities"})
    unified_before = walk_calls(unified_sim)
    unified = run_tap(config, catalog=unified_catalog)
    assert unified.returncode == 0, unified.stderr[-3000:]

    typed_calls = walk_calls(typed_sim, before)
    assert typed_calls == walk_calls(unified_sim, unified_before)
    assert sum(typed_calls.values()) > 2
    assert "activities" not in typed.records
    for name, type_id in FIVE.items():
        want = expected_guids(typed_sim, "activities", START, type_ids=[type_id])
        assert want, name
        assert typed_guids(typed, name) == want, name
        for record in typed.records[name]:
            assert record["activityTypeId"] == type_id
            assert "attributes" not in record
    sent = typed.records["activities_send_email"][0]
    assert isinstance(sent["mailing_id"], int)
    assert sent["mailing_id"] == sent["primaryAttributeValueId"]


def test_both_shapes_at_once_still_read_once(afternoon, run_tap):
    config = sim_config(afternoon, page_size=100)
    catalog = select(discover(run_tap, config), {"activities", *FIVE})
    before = walk_calls(afternoon)
    both = run_tap(config, catalog=catalog)
    assert both.returncode == 0, both.stderr[-3000:]
    calls_both = walk_calls(afternoon, before)

    before = walk_calls(afternoon)
    unified = run_tap(config, catalog=select(catalog, {"activities"}))
    assert unified.returncode == 0
    assert walk_calls(afternoon, before) == calls_both
    assert sorted(both.guids("activities")) == sorted(unified.guids("activities"))
    for name, type_id in FIVE.items():
        from_unified = sorted(
            r["marketoGUID"]
            for r in unified.records["activities"]
            if r["activityTypeId"] == type_id
        )
        assert typed_guids(both, name) == from_unified


def test_two_runs_with_late_commits_deliver_each_table_exactly_once(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=2500, seed=23), now="2024-04-12T14:00:00Z")
    config = sim_config(sim, page_size=80)
    catalog = select(discover(run_tap, config), set(FIVE))
    first = run_tap(config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    sim.clock.set("2024-04-12T14:10:00Z")  # the 13:45 send commits its last rows
    second = run_tap(config, first.state, catalog=catalog)
    assert second.returncode == 0, second.stderr[-3000:]
    late = len(second.records.get("activities_send_email", []))
    assert late > 0, "the second run should bring the send's late rows"
    for name, type_id in FIVE.items():
        rows = first.records.get(name, []) + second.records.get(name, [])
        counts = guid_counts(rows)
        assert all(n == 1 for n in counts.values()), f"{name}: a row was sent twice"
        assert sorted(counts) == expected_guids(sim, "activities", START, type_ids=[type_id])


def test_a_type_described_differently_between_runs_keeps_working(afternoon, run_tap):
    sim = afternoon
    webinar = FIVE["activities_attend_webinar"]
    sim.described_attributes[webinar] = {"Platform": None, "Minutes Attended": "boolean"}
    config = sim_config(sim)
    old_catalog = select(discover(run_tap, config), {"activities_attend_webinar"})
    first = run_tap(config, catalog=old_catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = first.records["activities_attend_webinar"]
    assert rows
    assert all("platform" not in r for r in rows)
    assert any("Platform" in r[EXTRA_ATTRIBUTES] for r in rows)
    misfit = [r for r in rows if "Minutes Attended" in r[EXTRA_ATTRIBUTES]]
    assert misfit, "integers announced as boolean must be kept as text"
    assert all(isinstance(r[EXTRA_ATTRIBUTES]["Minutes Attended"], str) for r in misfit)
    warnings = [line for line in first.stderr.splitlines() if "is not a boolean" in line]
    assert len(warnings) == 1, warnings  # once per column and run

    # The admin fixes the type: a fresh discovery has the new column; the old catalog still runs.
    sim.described_attributes.clear()
    new_catalog = select(discover(run_tap, config), {"activities_attend_webinar"})
    schema = next(
        s for s in new_catalog["streams"] if s["tap_stream_id"] == "activities_attend_webinar"
    )["schema"]
    assert schema["properties"]["platform"]["type"] == ["string", "null"]
    again = run_tap(config, catalog=new_catalog)
    assert again.returncode == 0, again.stderr[-3000:]
    assert any(r.get("platform") for r in again.records["activities_attend_webinar"])
    assert all(
        isinstance(r.get("minutes_attended"), (int, type(None)))
        for r in again.records["activities_attend_webinar"]
    )
    stale = run_tap(config, catalog=old_catalog)
    assert stale.returncode == 0, stale.stderr[-3000:]
    assert stale.records["activities_attend_webinar"]


def test_a_killed_run_resumes_each_table_without_loss(simulator, run_tap, tmp_path):
    page_size = 40
    sim = simulator(World.seed_afternoon(rows=1500, seed=24), now="2024-04-12T16:00:00Z")
    config = sim_config(sim, page_size=page_size)
    catalog = select(discover(run_tap, config), set(FIVE))
    config_path = write_json(tmp_path, "config.json", config)
    catalog_path = write_json(tmp_path, "catalog.json", catalog)
    command = [*TAP, "--config", str(config_path), "--catalog", str(catalog_path)]
    killed, code = kill_after_records(command, 300)
    assert code == -signal.SIGKILL
    states = [m["value"] for m in killed if m["type"] == "STATE"]
    # STATE comes every 10,000 rows of a partition (issue 22): before 300 rows there may be
    # none, and the next run starts over, re-sending what the killed one sent.
    resumed = run_tap(config, states[-1] if states else None, catalog=catalog)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    partitions = len(resumed.state["bookmarks"]["activities"]["partitions"])
    for name, type_id in FIVE.items():
        rows = [m["record"] for m in killed if m["type"] == "RECORD" and m["stream"] == name]
        rows += resumed.records.get(name, [])
        counts = guid_counts(rows)
        want = set(expected_guids(sim, "activities", START, type_ids=[type_id]))
        assert want <= set(counts), f"{name} lost {len(want - set(counts))} rows"
        assert sum(n - 1 for n in counts.values()) <= min(300, STATE_EVERY_ROWS * partitions)


def test_selecting_only_the_unified_stream_changes_nothing(afternoon, run_tap):
    plain = run_tap(sim_config(afternoon))
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert not [s for s in plain.records if s.startswith("activities_")]
    assert not [s for s in plain.schemas if s.startswith("activities_")]
    assert sorted(plain.guids("activities")) == expected_guids(afternoon, "activities", START)
    # Listing the typed tables reuses the one types.json call every run makes.
    assert afternoon.counters.calls_by_path["/rest/v1/activities/types.json"] == 1
