"""A per-type table selected after earlier runs gets its history (issue 21, point 6).

The unified stream's type groups already hold bookmarks for every type; the new table's type
is read again from start_date in a group of its own, the log says so, the table receives
every row of its type once, and ``activities`` is not sent any row twice.
"""

from __future__ import annotations

from helpers import expected_guids, guid_counts, sim_config
from test_typed_streams import START, discover, select

from tap_marketo_activities.simulator import World

SEND_EMAIL = 6


def test_a_table_selected_after_earlier_runs_starts_from_start_date(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=2500, seed=23), now="2024-04-12T14:00:00Z")
    config = sim_config(sim, page_size=80)
    catalog = discover(run_tap, config)
    first = run_tap(config, catalog=select(catalog, {"activities"}))
    assert first.returncode == 0, first.stderr[-3000:]
    sim.clock.set("2024-04-12T14:10:00Z")
    both = select(catalog, {"activities", "activities_send_email"})
    second = run_tap(config, first.state, catalog=both)
    assert second.returncode == 0, second.stderr[-3000:]
    sent = guid_counts(second.records.get("activities_send_email", []))
    assert all(n == 1 for n in sent.values())
    assert sorted(sent) == expected_guids(sim, "activities", START, type_ids=[SEND_EMAIL])
    assert (
        "activities_send_email is selected for the first time after earlier runs: type 6 is "
        "read again from start_date (2024-04-12T12:00:00Z)"
    ) in second.stderr
    sim.clock.set("2024-04-12T14:20:00Z")
    third = run_tap(config, second.state, catalog=both)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "selected for the first time" not in third.stderr
    runs = [first, second, third]
    unified = guid_counts([r for run in runs for r in run.records.get("activities", [])])
    assert [g for g, n in unified.items() if n > 1] == []
    assert sorted(unified) == expected_guids(sim, "activities", START)
    typed = guid_counts([r for run in runs for r in run.records.get("activities_send_email", [])])
    assert [g for g, n in typed.items() if n > 1] == []
    assert sorted(typed) == expected_guids(sim, "activities", START, type_ids=[SEND_EMAIL])
