"""Calls the leads stream costs on a busy day: the same run with and without ``leads_stream``.

    python benchmarks/leads_calls.py [ROWS]

A generated 24-hour world (default 100,000 activities, one lead per five rows), the tap run
as a process against the simulator, once without and once with the leads stream, whose state
says it was last run at the day's start (so its incremental path, not its first sync, reads
the day); prints the calls by endpoint of each and what the leads stream added. The instance
has no bulk updatedAt filter (1035), so leads are read by id.

Both streams start where a previous run at the day's start left them: the leads feed from its
bookmark minus the lookback, the activities walk from ``start_date`` set to that same time
(what its bookmark at the day's start minus the lookback gives). Two selections:

- default: ``activities`` leaves 12 New Lead and 13 Change Data Value to ``lead_changes``, so
  the feed reads those two types itself and takes the others from the activities walk;
- every type: ``activity_type_ids`` lists every type, 12 and 13 included: the walk carries
  every change type and the feed makes no activity call of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator.catalog import DEFAULT_ACTIVITY_TYPE_IDS

DAY = "2024-04-12T00:00:00Z"
#: the day's start minus the default 60-minute lookback: where both walks begin
WALKS_FROM = "2024-04-11T23:00:00Z"


def run(
    sim: MarketoSimulator, folder: Path, leads: bool, types: list[int] | None
) -> tuple[dict[str, int], int]:
    config = {
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "start_date": WALKS_FROM,
        "leads_stream": leads,
        "max_calls_per_20s": 100,
    }
    if types:
        config["activity_type_ids"] = types
    path = folder / f"config-{leads}.json"
    path.write_text(json.dumps(config))
    state = folder / "state.json"
    # reconciled at the day's start too: the periodic reconciliation is not due (its bulk
    # cost is in the README), so the run measures the change feed alone
    leads_state = {"replication_key_value": DAY, "reconciled_at": DAY}
    state.write_text(json.dumps({"bookmarks": {"leads": leads_state}}))
    extra = ["--state", str(state)] if leads else []
    sim.reset_counters()
    done = subprocess.run(
        [sys.executable, "-m", "tap_marketo_activities", "--config", str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    records = sum('"stream":"leads"' in line.replace(" ", "") for line in done.stdout.splitlines())
    calls = {k.rsplit("/", 1)[-1]: v for k, v in sim.counters.calls_by_path.items()}
    return calls, records


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    world = World.generate(rows=rows, hours=24, late_fraction=0.03, max_late_minutes=15)
    every = sorted({*DEFAULT_ACTIVITY_TYPE_IDS, 12, 13})
    with MarketoSimulator(world) as sim, tempfile.TemporaryDirectory() as tmp:
        for label, types in (("default activity types", None), ("every type walked", every)):
            without, _ = run(sim, Path(tmp), leads=False, types=types)
            with_leads, leads = run(sim, Path(tmp), leads=True, types=types)
            print(f"{label}: {rows} activities, {leads} leads delivered")
            for name in sorted(set(without) | set(with_leads)):
                print(f"  {name:24} {without.get(name, 0):6} {with_leads.get(name, 0):6}")
            added = sum(with_leads.values()) - sum(without.values())
            print(f"  calls added by the leads stream: {added}")


if __name__ == "__main__":
    main()
