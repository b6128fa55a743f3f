"""What the tap costs per record, how busy it keeps the call budget, and how its memory grows.

One command, three tables (see benchmarks/README.md for what each measures and why):

    python benchmarks/run_all.py            # everything, ~4 min on 2 cores, under 10 when busy
    python benchmarks/run_all.py --quick    # smaller worlds, no 1,000,000-row run

The simulator runs in this process (a thread); the tap and the reference client run as
their own processes, whose CPU comes from ``os.wait4`` and peak RSS from peak.py. Their
stdout is read here line by line only to count RECORD and STATE bytes (the tap's CPU does
not include that). Ratios are measured within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from peak import MARKER
from peers import peers

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.simulator.generate import Campaign

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference_client.py"
#: Every measured process runs under peak.py, which reports its own peak RSS.
PEAK = [sys.executable, str(HERE / "peak.py")]
#: How the tap is started; a variant appends Python lines before ``T.cli()``.
TAP_SETUP = "from tap_marketo_activities.tap import TapMarketoActivities as T"
VARIANTS: dict[str, str] = {"tap": ""}
#: In a variant, the lines before this marker run before the tap is imported.
BEFORE_IMPORT = "#<import>"
#: With ``--ab``: the same tap with one switch changed, measured in the same run.
AB_VARIANTS: dict[str, str] = {
    "tap, SDK's recursive conforming": (
        "from singer_sdk.helpers.conform import TypeConformanceLevel\n"
        "from tap_marketo_activities.streams.walk import IncrementalStream as S\n"
        "S.TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.RECURSIVE"
    ),
    "tap, SDK's standard writer": (
        "from singer_sdk.singerlib.encoding import SimpleSingerWriter\n"
        "import tap_marketo_activities.tap as m; m.BatchingWriter = SimpleSingerWriter"
    ),
    "tap, SDK's msgspec writer (a write per message)": (
        "from singer_sdk.contrib.msgspec import MsgSpecWriter\n"
        "import tap_marketo_activities.tap as m; m.BatchingWriter = MsgSpecWriter"
    ),
    "tap, SDK's record path": (
        "from tap_marketo_activities.streams.sdk_private import DirectRecordMessages as D\n"
        "D._unchanged_output = False"
    ),
    "tap, pages parsed by requests": (
        "import tap_marketo_activities.wire.envelope as e; e._UTF8 = frozenset()"
    ),
    "tap, no gc.freeze": f"import gc; gc.freeze = lambda: None\n{BEFORE_IMPORT}",
    "tap, each type group parsing the export": (
        "import tap_marketo_activities.sources.bulk.cache as c\n"
        "c.ExportCache.rows = lambda self, path, **kw: c.numbered_rows(path, **kw)"
    ),
    "tap, a RecordMessage per record": (
        "import tap_marketo_activities.streams.sdk_private as s; s.BatchingWriter = type(None)"
    ),
    "tap, proxies looked up per call": (
        "import requests\n"
        "import tap_marketo_activities.wire.transport as tr; tr.MarketoSession = requests.Session"
    ),
}


@dataclass
class ProcessCost:
    """What one process cost and wrote."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    records: int
    record_bytes: int
    state_lines: int
    #: STATE lines whose cursor carries keys (``"pending"``: a cadence STATE's keys fit).
    keyed_states: int
    #: STATE lines carrying a tally instead (``"tally"``: the keys did not fit, their tally did).
    tallied_states: int
    state_bytes: int
    largest_state: int
    returncode: int
    stderr_tail: str

    def per_record_us(self) -> float:
        return self.cpu_s / max(1, self.records) * 1e6


def measure(command: list[str], *, raw_rows: bool = False) -> ProcessCost:
    """Run ``command``; count its Singer output (or raw JSON lines) and read its rusage."""
    records = record_bytes = state_lines = state_bytes = largest = keyed = tallied = 0
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
        assert process.stdout is not None
        for line in process.stdout:
            if raw_rows or line.startswith((b'{"type":"RECORD"', b'{"type": "RECORD"')):
                records += 1
                record_bytes += len(line)
            elif line.startswith((b'{"type":"STATE"', b'{"type": "STATE"')):
                state_lines += 1
                keyed += b'"pending":' in line
                tallied += b'"tally":' in line
                state_bytes += len(line)
                largest = max(largest, len(line))
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    tail = text[-2000:]
    peak_kb = next(
        (int(line[len(MARKER) :]) for line in text.splitlines() if line.startswith(MARKER)),
        usage.ru_maxrss,  # includes the forked benchmark's own size: see peak.py
    )
    return ProcessCost(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak_kb / 1024,
        records=records,
        record_bytes=record_bytes,
        state_lines=state_lines,
        keyed_states=keyed,
        tallied_states=tallied,
        state_bytes=state_bytes,
        largest_state=largest,
        returncode=process.returncode,
        stderr_tail=tail,
    )


def compile_bytecode(checkouts: list[Path]) -> None:
    """Compile each measured checkout's package, as ``pip install`` does for a user.

    An editable install has no bytecode until a run writes it, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as on our machines) no run ever does: every tap
    process would compile the package again, about 0.25 s (4 us a record at 60,000 rows)
    that no installed tap pays. ``compileall`` writes the ``__pycache__`` folders anyway.
    """
    for checkout in checkouts:
        package = checkout / "tap_marketo_activities"
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def tap_command(config: dict, directory: Path, variant: str = "") -> list[str]:
    path = directory / f"config-{abs(hash(json.dumps(config, sort_keys=True)))}.json"
    path.write_text(json.dumps(config))
    prefix, _, variant = variant.rpartition(BEFORE_IMPORT)
    code = f"{prefix}\n{TAP_SETUP}\n{variant}\nT.cli()"
    return [*PEAK, "-c", code, "--config", str(path)]


def run_tap(config: dict, directory: Path, variant: str = "") -> ProcessCost:
    cost = measure(tap_command(config, directory, variant))
    if cost.returncode != 0:
        print(cost.stderr_tail, file=sys.stderr)
        msg = f"tap exited {cost.returncode}"
        raise SystemExit(msg)
    return cost


def base_config(sim: MarketoSimulator, start_date: str, **extra: object) -> dict:
    return {
        "base_url": sim.base_url,
        "client_id": "simulator",
        "client_secret": "simulator",
        "start_date": start_date,
        "max_calls_per_20s": 100,
        "rate_limit_window_seconds": 1,
        **extra,
    }


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


# --------------------------------------------------------------------------- worlds


def quiet_world(rows: int) -> tuple[World, str, str]:
    """The seed afternoon: background over six hours, two sends; read from 08:00."""
    return World.seed_afternoon(rows=rows, seed=1), "2024-04-12T20:00:00Z", "2024-04-12T08:00:00Z"


def busy_hour_world(sends: int) -> tuple[World, str, str]:
    """``sends`` Send Email rows stamped over 50 minutes, inside one 60-minute lookback."""
    world = World.generate(
        start="2024-04-12T12:00:00Z",
        hours=1,
        rows=sends + sends // 15,
        seed=5,
        campaigns=[Campaign("2024-04-12T12:05:00Z", sends, spread_minutes=50)],
        late_fraction=0.05,
        max_late_minutes=10,
        name="busy-hour",
    )
    return world, "2024-04-12T13:30:00Z", "2024-04-12T11:00:00Z"


def busy_day_world(rows: int) -> tuple[World, str, str]:
    """~41,700 rows an hour (1,000,000 a day), 30 % of them in a send every 2.4 hours."""
    hours = rows / (1_000_000 / 24)
    sends = max(1, round(hours / 2.4))
    campaigns = [
        Campaign(
            f"2024-04-12T{int(2.4 * i):02d}:{int(2.4 * i % 1 * 60):02d}:00Z",
            int(rows * 0.3 / sends),
            spread_minutes=30,
        )
        for i in range(sends)
    ]
    world = World.generate(
        start="2024-04-12T00:00:00Z",
        hours=hours,
        rows=rows,
        seed=9,
        campaigns=campaigns,
        late_fraction=0.05,
        max_late_minutes=20,
        name="busy-day",
    )
    return world, "2024-04-13T02:00:00Z", "2024-04-11T23:00:00Z"


# --------------------------------------------------------------------------- the tables


#: The bulk row: activities up to a settle margin before now through export jobs (the tap's
#: backfill_method bulk, stream_pass.SETTLE), then REST from the lookback before that point.
BULK_SETTLE_MINUTES = 15
BULK_CONFIG = {"backfill_method": "bulk", "bulk_poll_seconds": 0.2}


def emit_cost(args: argparse.Namespace, directory: Path) -> None:
    worlds = {
        f"quiet ({args.quiet_rows:,} rows)": (quiet_world(args.quiet_rows), False),
        f"busy hour ({args.busy_sends:,} sends)": (busy_hour_world(args.busy_sends), False),
        f"quiet, bulk backfill ({args.quiet_rows:,} rows)": (quiet_world(args.quiet_rows), True),
    }
    rows: list[list[str]] = []
    startups: list[str] = []
    for label, ((world, now, start), bulk) in worlds.items():
        unlimited = {"rate_limit_calls": 10**9, "daily_quota": 10**9, "scan_block": 10**6}
        reference_command = [
            sys.executable,
            str(REFERENCE),
            "--base-url",
            "",
            "--since",
            start,
        ]
        extra: dict[str, object] = {}
        if bulk:
            until = datetime.fromisoformat(now.replace("Z", "+00:00")) - timedelta(
                minutes=BULK_SETTLE_MINUTES
            )
            reference_command += ["--bulk-until", until.strftime("%Y-%m-%dT%H:%M:%SZ")]
            extra = BULK_CONFIG
        with MarketoSimulator(world, now=now, **unlimited) as sim:
            sim.bulk.quota_bytes = 10**12
            reference_command[3] = sim.base_url
            reference: list[ProcessCost] = []
            taps: dict[str, list[ProcessCost]] = {name: [] for name in VARIANTS}
            # Start-up: the same process reading from the simulator's now (no rows).
            idle_command = [*reference_command[:5], now]
            idle_ref: list[float] = []
            idle_tap: list[float] = []
            for _ in range(args.repeat):
                reference.append(measure(reference_command, raw_rows=True))
                for name, variant in VARIANTS.items():
                    config = base_config(sim, start, **extra)
                    taps[name].append(run_tap(config, directory, variant))
                idle_ref.append(measure(idle_command, raw_rows=True).cpu_s)
                idle_tap.append(run_tap(base_config(sim, now, **extra), directory).cpu_s)
        best_ref = min(reference, key=ProcessCost.per_record_us)
        ref_net = (best_ref.cpu_s - min(idle_ref)) / best_ref.records * 1e6
        startups.append(f"{label}: reference {min(idle_ref):.2f} s, tap {min(idle_tap):.2f} s")
        rows.append(
            [
                label,
                "reference client",
                f"{best_ref.records:,}",
                f"{best_ref.records / best_ref.wall_s:,.0f}",
                f"{best_ref.per_record_us():.1f}",
                "1.00x",
                f"{ref_net:.1f}",
                "1.00x",
                f"{best_ref.peak_rss_mb:.0f}",
                f"{best_ref.record_bytes / 1e6:.1f}",
                "",
                "",
            ]
        )
        for name, costs in taps.items():
            best = min(costs, key=ProcessCost.per_record_us)
            rows.append(
                [
                    label,
                    name,
                    f"{best.records:,}",
                    f"{best.records / best.wall_s:,.0f}",
                    f"{best.per_record_us():.1f}",
                    f"{best.per_record_us() / best_ref.per_record_us():.2f}x",
                    f"{(best.cpu_s - min(idle_tap)) / best.records * 1e6:.1f}",
                    f"{(best.cpu_s - min(idle_tap)) / best.records * 1e6 / ref_net:.2f}x",
                    f"{best.peak_rss_mb:.0f}",
                    f"{best.record_bytes / 1e6:.1f}",
                    f"{best.state_bytes / 1e6:.2f} ({best.state_lines:,} lines, "
                    f"{best.keyed_states} keyed, {best.tallied_states} tallied)",
                    f"{100 * best.state_bytes / max(1, best.record_bytes):.1f} %",
                ]
            )
    print(f"## Emit cost (no latency, best of {args.repeat})\n")
    print_table(
        [
            "world",
            "client",
            "records",
            "records/s",
            "CPU us/record",
            "vs reference",
            "less start-up",
            "vs reference",
            "peak RSS MB",
            "RECORD MB",
            "STATE MB",
            "STATE/RECORD",
        ],
        rows,
    )
    print(
        "Start-up (CPU of the same command reading from the simulator's now, no rows; "
        "taken off in 'less start-up', best of the runs): " + "; ".join(startups) + "\n"
    )


def latency_bound(args: argparse.Namespace, directory: Path) -> None:
    """Five page chains at Marketo's pace: the tap as configured, and one call at a time.

    Both runs read the same world in the same benchmark run, so their ratio holds on a
    busy machine; the second shows what reading chains ahead buys.
    """
    world = World.generate(
        start="2024-04-12T12:00:00Z", hours=6, rows=args.latency_rows, seed=11, name="latency"
    )
    # 30 activity types: three groups of ten, plus lead_changes and deleted_leads = 5 chains.
    type_ids = sorted(world.type_ids() - {13, 37})[:30]
    rows = []
    for label, concurrent in (("up to 5 in flight", 5), ("one at a time", 1)):
        with MarketoSimulator(
            world, now="2024-04-12T19:00:00Z", latency_s=args.latency, daily_quota=10**9
        ) as sim:
            config = base_config(
                sim,
                "2024-04-12T11:00:00Z",
                activity_type_ids=type_ids,
                max_calls_per_20s=100,
                max_concurrent_calls=concurrent,
                rate_limit_window_seconds=20,
            )
            cost = run_tap(config, directory)
            counters = sim.counters
        calls = counters.rest_calls
        budget = cost.wall_s / 20 * 100
        rows.append(
            [
                f"{label} (max_concurrent_calls {concurrent})",
                f"{cost.records:,}",
                f"{calls:,}",
                f"{cost.wall_s:.1f}",
                f"{calls / cost.wall_s * 20:.1f}",
                f"{100 * calls / budget:.0f} %",
                str(counters.peak_concurrency),
                str(
                    counters.enforced_by_code.get("606", 0)
                    + counters.enforced_by_code.get("615", 0)
                ),
            ]
        )
    print(f"## Latency-bound rate ({args.latency * 1000:.0f} ms a call, budget 100 per 20 s)\n")
    print_table(
        [
            "tap",
            "records",
            "REST calls",
            "wall s",
            "calls/20 s",
            "budget used",
            "max in flight",
            "606/615 provoked",
        ],
        rows,
    )


def memory(args: argparse.Namespace, directory: Path) -> None:
    rows: list[list[str]] = []
    results: dict[int, ProcessCost] = {}
    for size in args.memory_rows:
        world, now, start = busy_day_world(size)
        with MarketoSimulator(
            world, now=now, rate_limit_calls=10**9, daily_quota=10**9, scan_block=10**6
        ) as sim:
            cost = run_tap(base_config(sim, start), directory)
        results[size] = cost
        del world
        rows.append(
            [
                f"{size:,}",
                f"{cost.records:,}",
                f"{cost.wall_s:.1f}",
                f"{cost.per_record_us():.1f}",
                f"{cost.peak_rss_mb:.0f}",
                f"{cost.peak_rss_mb / results[args.memory_rows[0]].peak_rss_mb:.2f}x",
                f"{cost.state_bytes / 1e6:,.1f} ({cost.state_lines:,} lines, "
                f"{cost.keyed_states} keyed, {cost.tallied_states} tallied)",
                f"{cost.largest_state / 1e6:.2f}",
                f"{100 * cost.state_bytes / max(1, cost.record_bytes):.1f} %",
            ]
        )
    print("## Memory: first sync of a busy day's rows (~41,700 an hour)\n")
    print_table(
        [
            "rows",
            "records",
            "wall s",
            "CPU us/record",
            "peak RSS MB",
            "vs smallest",
            "STATE MB",
            "largest STATE MB",
            "STATE/RECORD",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small worlds, no 1M-row run")
    parser.add_argument("--only", choices=["emit", "latency", "memory", "peers"], action="append")
    parser.add_argument("--repeat", type=int, default=2, help="emit runs; the best is shown")
    parser.add_argument("--latency", type=float, default=0.45, help="seconds a call")
    parser.add_argument("--ab", action="store_true", help="also the switch-by-switch variants")
    parser.add_argument("--baseline", action="append", help="also the tap of this checkout")
    args = parser.parse_args()
    if args.ab:
        VARIANTS.update(AB_VARIANTS)
    for path in args.baseline or ():
        # Another checkout's tap (e.g. a git worktree of main), measured in the same run.
        VARIANTS[f"tap at {path}"] = f"import sys; sys.path.insert(0, {path!r})\n{BEFORE_IMPORT}"
    args.quiet_rows = 20_000 if args.quick else 60_000
    args.busy_sends = 20_000 if args.quick else 60_000
    args.latency_rows = 6_000 if args.quick else 24_000
    args.memory_rows = [20_000, 100_000] if args.quick else [100_000, 1_000_000]
    if args.quick:
        args.repeat = 1

    compile_bytecode([HERE.parent, *(Path(path) for path in args.baseline or ())])
    started = time.perf_counter()
    print(
        f"# tap-marketo-activities benchmarks: {platform.python_version()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    only = set(args.only or ["emit", "latency", "memory", "peers"])
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if "emit" in only:
            emit_cost(args, directory)
        if "latency" in only:
            latency_bound(args, directory)
        if "memory" in only:
            memory(args, directory)
    if "peers" in only:  # Stitch's and Airbyte's extractors, installed once (peers.py)
        peers(rows=20_000 if args.quick else 60_000)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
