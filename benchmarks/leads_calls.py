"""Calls the leads stream costs on a busy day: the same run with and without ``leads_stream``.

    python benchmarks/leads_calls.py [ROWS]

A generated 24-hour world (default 100,000 activities, one lead per five rows), the tap run
from the day's start as a process against the simulator, once without and once with the
leads stream, whose state says it was last run at the day's start (so its incremental path,
not its first sync, reads the day); prints the calls by endpoint of each and what the leads
stream added. The instance has no bulk updatedAt filter (1035), so leads are read by id.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tap_marketo_activities.simulator import MarketoSimulator, World

DAY = "2024-04-12T00:00:00Z"


def run(sim: MarketoSimulator, folder: Path, leads: bool) -> tuple[dict[str, int], int]:
    config = {
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "start_date": DAY,
        "leads_stream": leads,
        "max_calls_per_20s": 100,
    }
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
    with MarketoSimulator(world) as sim, tempfile.TemporaryDirectory() as tmp:
        without, _ = run(sim, Path(tmp), leads=False)
        with_leads, leads = run(sim, Path(tmp), leads=True)
    print(f"{rows} activities, {leads} leads delivered")
    for name in sorted(set(without) | set(with_leads)):
        print(f"{name:24} {without.get(name, 0):6} {with_leads.get(name, 0):6}")
    added = sum(with_leads.values()) - sum(without.values())
    print(f"calls added by the leads stream: {added}")


if __name__ == "__main__":
    main()
