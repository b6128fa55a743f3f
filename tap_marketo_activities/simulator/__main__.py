"""``python -m tap_marketo_activities.simulator``: serve a simulated Marketo on 127.0.0.1.

Prints the base URL as the first line of stdout (scripts read it), then serves until SIGINT or
SIGTERM. Client id and secret default to ``simulator`` / ``simulator``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from .faults import DEFAULT_KINDS, Faults
from .instance import MarketoSimulator
from .world import World

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tap_marketo_activities.simulator",
        description="Serve a simulated Marketo REST API (not a Marketo sandbox instance).",
    )
    add = parser.add_argument
    add("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    add("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    add(
        "--scenario",
        choices=("quickstart", "seed-afternoon"),
        default="quickstart",
        help="quickstart: today, live clock (default); seed-afternoon: 2024-04-12, clock 14:00",
    )
    add("--rows", type=int, default=None, help="activities in the world (default: per scenario)")
    add("--seed", type=int, default=7, help="seed-afternoon seed (quickstart seeds by the day)")
    add("--now", default=None, help="virtual now, ISO 8601 (default: per scenario)")
    add("--client-id", default="simulator")
    add("--client-secret", default="simulator")
    add("--token-lifetime", type=float, default=3600, help="access token lifetime, seconds")
    add("--rate-limit-calls", type=int, default=100, help="calls per window before 606")
    add("--rate-limit-window", type=float, default=20.0, help="rate window, seconds")
    add("--max-concurrency", type=int, default=10, help="calls in flight before 615")
    add("--daily-quota", type=int, default=50_000, help="calls per day before 607")
    add("--latency", type=float, default=0.0, help="seconds of delay added to every REST call")
    add("--long-tokens", action="store_true", help="~9 KB paging tokens (forces 414 + POST)")
    add("--scan-block", type=int, default=1000, help="rows scanned per page (empty pages)")
    add("--fault-rate", type=float, default=0.0, help="fraction of REST calls given a fault")
    add(
        "--fault-kinds",
        default=",".join(DEFAULT_KINDS),
        help="comma-separated fault kinds (Marketo codes, 500/502/503/414, reset, slow, "
        "malformed, no_result, bad_record)",
    )
    add("--fault-seed", type=int, default=1)
    add("--fault-latency", type=float, default=0.0, help="sleep of a 'slow' fault, seconds")
    add(
        "--bulk-processing-seconds",
        type=float,
        default=0.0,
        help="virtual seconds a bulk export job processes (default 0: at once)",
    )
    add(
        "--bulk-attributes",
        choices=("object", "array"),
        default="object",
        help="how export files write attributes: a JSON object or a [{name, value}] array",
    )
    add("--log-requests", action="store_true", help="log every request to stderr")
    return parser


def make_world(args: argparse.Namespace) -> World:
    if args.scenario == "seed-afternoon":
        return World.seed_afternoon(rows=args.rows or 1000, seed=args.seed)
    return World.quickstart(rows=args.rows or 4000)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    world = make_world(args)
    faults = Faults(
        seed=args.fault_seed,
        rate=args.fault_rate,
        kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
        latency_s=args.fault_latency,
    )
    sim = MarketoSimulator(
        world,
        faults=faults,
        token_lifetime_s=args.token_lifetime,
        client_id=args.client_id,
        client_secret=args.client_secret,
        rate_limit_calls=args.rate_limit_calls,
        rate_limit_window_s=args.rate_limit_window,
        max_concurrency=args.max_concurrency,
        daily_quota=args.daily_quota,
        latency_s=args.latency,
        long_tokens=args.long_tokens,
        now=args.now,
        scan_block=args.scan_block,
        host=args.host,
        port=args.port,
        log_requests=args.log_requests,
    )
    sim.bulk.processing_s = args.bulk_processing_seconds
    sim.bulk.attributes_form = args.bulk_attributes
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with sim:
        print(sim.base_url, flush=True)
        print(
            f"scenario {world.name}: {len(world)} activities generated in "
            f"{time.perf_counter() - started:.2f} s; virtual now {sim.clock.now().isoformat()}; "
            f"client id {args.client_id!r}, secret {args.client_secret!r}. Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
