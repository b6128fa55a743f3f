"""New Lead (type 12) rows: in lead_changes by default, in activities only when asked for.

Marketo serves New Lead both from /activities.json and from /activities/leadchanges.json, with
the same marketoGUID. A warehouse that loads both streams would count each new lead twice, so
the activities stream leaves type 12 out by default, as it leaves out 13 (lead changes) and 37
(deletions); lead_changes carries New Lead with its fields. Listing 12 in activity_type_ids
brings it back to activities.
"""

from __future__ import annotations

import json

from helpers import sim_config

from tap_marketo_activities.simulator import World

NEW_LEAD = 12


def type_guids(records, type_id):
    return {r["marketoGUID"] for r in records if r["activityTypeId"] == type_id}


def test_by_default_no_marketo_guid_arrives_in_two_streams(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=11), now="2024-04-12T16:00:00Z")
    run = run_tap(sim_config(sim))
    assert run.returncode == 0, run.stderr[-2000:]
    assert type_guids(run.records["lead_changes"], NEW_LEAD), "the scenario has new leads"
    assert not type_guids(run.records["activities"], NEW_LEAD)
    both = set(run.guids("activities")) & set(run.guids("lead_changes"))
    assert not both, f"{len(both)} marketoGUIDs in both streams, e.g. {sorted(both)[:3]}"
    partitions = run.state["bookmarks"]["activities"]["partitions"]
    assert not any(NEW_LEAD in p["context"]["activity_type_ids"] for p in partitions)


def test_listing_12_reads_new_leads_in_activities_as_well(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=1500, seed=11), now="2024-04-12T16:00:00Z")
    run = run_tap(sim_config(sim, activity_type_ids=[6, NEW_LEAD]))
    assert run.returncode == 0, run.stderr[-2000:]
    in_activities = type_guids(run.records["activities"], NEW_LEAD)
    assert in_activities
    assert in_activities == type_guids(run.records["lead_changes"], NEW_LEAD)


def test_about_says_where_new_leads_go(run_tap):
    about = run_tap({}, args=("--about", "--format=json"))
    assert about.returncode == 0, about.stderr[-2000:]
    description = json.loads(about.stdout)["settings"]["properties"]["activity_type_ids"][
        "description"
    ]
    assert "minus 12 and 13 (New Lead, Change Data Value: in lead_changes)" in description
    assert "List 12 to have New Lead in both streams" in description
