"""A backfill through the Bulk Extract API versus through REST pages: calls, wall time, memory.

Builds a world of ``--rows`` activities over ``--days`` days, serves it from the simulator with
Marketo's rate limit and daily quota lifted (we measure the two paths, not the 100-calls-per-
20-s budget), and runs the tap as a process twice, reading ``activities`` only (selected by
catalog) from the first day to now into a pipe:

- ``backfill_method: bulk``: one export job per 31 days for every activity type, shared by
  the type groups; Range downloads to a temporary file, SHA-256, streaming CSV parse into the
  REST record shape; then the REST walk of the last lookback hour (the handover);
- ``backfill_method: rest``: REST pages, as before this feature.

Calls are what the simulator counted (identity calls aside); peak memory is the tap process's
VmHWM. The simulator writes a job's file as the job "processes" (``processing_s = 0``), polled
every second here (``bulk_poll_seconds: 1``); on Marketo each job also waits minutes in the
queue and processing, which this wall time does not include.

    python benchmarks/bulk_vs_rest.py [--rows 1000000] [--rest-rows 1000000] [--days 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator import catalog as cat

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
# Peak RSS as /proc reports it for this process image (VmHWM). Not ru_maxrss: on Linux that
# survives exec, so a child forked from this big parent would report the parent's size.
REPORT = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('MAXRSS', line.split()[1], file=sys.stderr)\n"
    "atexit.register(_peak)\n"
)
TAP_CHILD = REPORT + ("from tap_marketo_activities.tap import TapMarketoActivities as T\nT.cli()\n")


def api_calls(sim: MarketoSimulator) -> int:
    counters = sim.counters
    return counters.total_calls - counters.identity_calls


def run_child(command: list[str]) -> tuple[int, float, int, str]:
    """Run a child, counting its records as they stream by (never holding its output)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert child.stdout is not None
        records = sum(
            1
            for line in child.stdout
            if line.startswith(b'{"marketoGUID"') or b'"type":"RECORD"' in line[:40]
        )
        returncode = child.wait()
        elapsed = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read().decode()
    if returncode != 0:
        raise SystemExit(f"child failed ({returncode}):\n{stderr[-3000:]}")
    maxrss_kb = next(
        int(line.split()[1]) for line in stderr.splitlines() if line.startswith("MAXRSS")
    )
    return records, elapsed, maxrss_kb, stderr


def catalog_for_activities(config_path: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tap_marketo_activities",
            "--config",
            str(config_path),
            "--discover",
        ],
        capture_output=True,
        check=True,
    )
    catalog = json.loads(done.stdout)
    for entry in catalog["streams"]:
        selected = entry["tap_stream_id"] == "activities"
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = selected
    return catalog


def measure(rows: int, days: int, *, method: str) -> dict[str, float]:
    hours = 24 * days
    started = time.perf_counter()
    world = World.generate(
        start=START, hours=hours, rows=rows, seed=11, late_fraction=0.02, max_late_minutes=20
    )
    print(
        f"  world: {rows:,} rows over {days} days, built in {time.perf_counter() - started:.1f} s"
    )
    now = START + dt.timedelta(hours=hours, minutes=30)
    with (
        MarketoSimulator(
            world, now=now, rate_limit_calls=10**9, daily_quota=10**9, scan_block=10**6
        ) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        sim.bulk.quota_bytes = 10**12
        config = {
            "base_url": sim.base_url,
            "client_id": "simulator",
            "client_secret": "simulator",
            "start_date": START.isoformat(),
            "max_calls_per_20s": 100,
            "rate_limit_window_seconds": 1,
            "backfill_method": method,
            "bulk_poll_seconds": 1,
        }
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(config))
        catalog_path = Path(tmp) / "catalog.json"
        catalog_path.write_text(json.dumps(catalog_for_activities(config_path)))
        sim.reset_counters()
        command = [
            sys.executable,
            "-c",
            TAP_CHILD,
            "--config",
            str(config_path),
            "--catalog",
            str(catalog_path),
        ]
        records, elapsed, maxrss_kb, stderr = run_child(command)
        calls = api_calls(sim)
        expected = len(sim.expected("activities", type_ids=cat.DEFAULT_ACTIVITY_TYPE_IDS))
        summary = next((line for line in stderr.splitlines() if "Run summary" in line), "")
        print("  " + summary.split("| ")[-1])
    print(
        f"  {method}: {records:,} records (of {expected:,} committed), {calls:,} API calls, "
        f"{elapsed:.1f} s, peak RSS {maxrss_kb / 1024:.0f} MB"
    )
    return {"records": records, "calls": calls, "seconds": elapsed, "rss_mb": maxrss_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rest-rows", type=int, default=None, help="default: --rows; 0 skips REST")
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    print("bulk:")
    bulk = measure(args.rows, args.days, method="bulk")
    rest_rows = args.rows if args.rest_rows is None else args.rest_rows
    if not rest_rows:
        return
    print("REST:")
    rest = measure(rest_rows, args.days, method="rest")
    scaled = rest["calls"] * args.rows / rest_rows
    print(
        f"\nbulk used {bulk['calls']:,} calls for {bulk['records']:,} records; REST "
        f"{rest['calls']:,} for {rest['records']:,} (about {scaled:,.0f} at {args.rows:,} rows, "
        f"calls scale linearly); bulk/REST calls = {bulk['calls'] / scaled:.3%}"
    )


if __name__ == "__main__":
    main()
