"""Each stream's SCHEMA is written once per run (a target may reset a table on a new SCHEMA).

``merged_leads`` used to get two: one from the ``leads`` pass before its rows, one from the
SDK's own sync of the stream after it.
"""

from __future__ import annotations

from collections import Counter

from test_leads import FIRST_NOW, SECOND_NOW, leads_config, world


def schema_counts(messages: list[dict]) -> Counter[str]:
    return Counter(m["stream"] for m in messages if m["type"] == "SCHEMA")


def test_every_stream_schema_once_in_a_first_sync_and_in_a_run_with_merges(simulator, run_tap):
    sim = simulator(world(), now=FIRST_NOW)
    first = run_tap(leads_config(sim))
    assert first.returncode == 0, first.stderr[-2000:]
    counts = schema_counts(first.messages)
    assert counts["leads"] == 1
    assert counts["merged_leads"] == 1, "the table exists even before a merge"
    assert set(counts.values()) == {1}, counts

    sim.clock.set(SECOND_NOW)
    second = run_tap(leads_config(sim), state=first.state)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.records["merged_leads"], "the scenario merges leads"
    counts = schema_counts(second.messages)
    assert counts["merged_leads"] == 1, counts
    assert set(counts.values()) == {1}, counts
    first_row = next(i for i, m in enumerate(second.messages) if m.get("stream") == "merged_leads")
    assert second.messages[first_row]["type"] == "SCHEMA", "SCHEMA before its first row"
