"""How fast the tap turns Marketo pages into Singer messages, and what each part costs.

Serves a seed-afternoon world from the simulator with Marketo's limits lifted (so the
numbers measure the tap, not the 100-calls-per-20-s budget), runs the tap as a process
reading every stream into a pipe, and prints rows/s and the tap's CPU per row, as shipped
(the SDK's standard message writer) and with the SDK's optional msgspec writer, in the same
run so the ratio is meaningful on a noisy 2-core machine. (The msgspec writer saved about
2% of the tap's CPU here, not enough to add a dependency: most of the cost is the SDK's
per-record schema conformance.)

    pip install -e . --group bench      # the msgspec writer is an optional SDK extra
    python benchmarks/tap_throughput.py [--rows 200000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tap_marketo_activities.simulator import MarketoSimulator, World

WRITERS = {
    "standard (shipped)": "from tap_marketo_activities.tap import TapMarketoActivities as T",
    "msgspec": (
        "from singer_sdk.contrib.msgspec import MsgSpecWriter\n"
        "from tap_marketo_activities.tap import TapMarketoActivities as T\n"
        "T.message_writer_class = MsgSpecWriter"
    ),
}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(config_path: Path, setup: str) -> tuple[int, float, float, str]:
    code = f"{setup}\nT.cli()"
    cpu_before = child_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "--config", str(config_path)],
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    cpu = child_cpu() - cpu_before
    records = sum(1 for line in done.stdout.splitlines() if b'"type":"RECORD"' in line)
    summary = next(
        (line for line in done.stderr.decode().splitlines() if "Run summary" in line), ""
    )
    return records, elapsed, cpu, summary.split("| ", 2)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    world = World.seed_afternoon(rows=args.rows, seed=1)
    print(f"world: {args.rows:,} rows generated in {time.perf_counter() - started:.1f} s")
    with (
        MarketoSimulator(
            world, now="2024-04-12T20:00:00Z", rate_limit_calls=10**9, scan_block=10**6
        ) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = {
            "base_url": sim.base_url,
            "client_id": "simulator",
            "client_secret": "simulator",
            "start_date": "2024-04-12T08:00:00Z",
            "max_calls_per_20s": 100,
            "rate_limit_window_seconds": 1,
        }
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(config))
        wall: dict[str, list[float]] = {name: [] for name in WRITERS}
        cpu_per_row: dict[str, list[float]] = {name: [] for name in WRITERS}
        for _ in range(args.repeat):
            for name, setup in WRITERS.items():
                records, elapsed, cpu, summary = run_once(config_path, setup)
                wall[name].append(records / elapsed)
                cpu_per_row[name].append(cpu / records * 1e6)
                print(
                    f"{name:>18}: {records:,} records in {elapsed:.1f} s = "
                    f"{records / elapsed:,.0f} rows/s; tap CPU {cpu:.1f} s "
                    f"({cpu / records * 1e6:.0f} us/row)"
                )
        print(f"last run: {summary}")
        print("\nbest of each (wall rows/s includes the simulator sharing the 2 cores):")
        for name in WRITERS:
            print(
                f"  {name:>18}: {max(wall[name]):,.0f} rows/s, "
                f"tap CPU {min(cpu_per_row[name]):.0f} us/row"
            )
        ratio = min(cpu_per_row["standard (shipped)"]) / min(cpu_per_row["msgspec"])
        print(f"tap CPU per row, standard writer / msgspec writer: {ratio:.2f}x")


if __name__ == "__main__":
    main()
