"""How fast the simulator serves activities to a plain HTTP client.

    python benchmarks/simulator_throughput.py [--rows 1000000] [--batch-size 300]

Builds the seed-afternoon world at ``--rows``, sets the virtual clock after the last commit,
lifts the rate limit and quota (the point is the simulator's own speed, not Marketo's limits),
then walks activities.json with one ``requests`` session, one walk per group of at most ten
activity types covering every type, so each activity is served exactly once. Prints the
generation time, rows, calls and rows per second (target: >= 5,000 rows/s on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import requests

from tap_marketo_activities.simulator import MarketoSimulator, World


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--scan-block", type=int, default=1000)
    args = parser.parse_args()

    started = time.perf_counter()
    world = World.seed_afternoon(rows=args.rows, seed=args.seed)
    generation_s = time.perf_counter() - started
    print(f"generated {len(world):,} activities in {generation_s:.2f} s")

    with (
        MarketoSimulator(
            world,
            now="2024-04-13T00:00:00Z",
            rate_limit_calls=10**9,
            daily_quota=10**9,
            scan_block=args.scan_block,
        ) as sim,
        requests.Session() as session,
    ):
        token = session.get(
            sim.base_url + "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": "simulator",
                "client_secret": "simulator",
            },
            timeout=10,
        ).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        types = sorted(world.type_ids())
        groups = [types[i : i + 10] for i in range(0, len(types), 10)]
        rows = calls = 0
        started = time.perf_counter()
        for group in groups:
            page_token = session.get(
                sim.base_url + "/rest/v1/activities/pagingtoken.json",
                params={"sinceDatetime": "2024-04-12T00:00:00Z"},
                timeout=10,
            ).json()["nextPageToken"]
            while True:
                page = session.get(
                    sim.base_url + "/rest/v1/activities.json",
                    params={
                        "nextPageToken": page_token,
                        "activityTypeIds": ",".join(map(str, group)),
                        "batchSize": args.batch_size,
                    },
                    timeout=30,
                ).json()
                calls += 1
                rows += len(page["result"])
                page_token = page["nextPageToken"]
                if not page["moreResult"]:
                    break
        elapsed = time.perf_counter() - started
    assert rows == len(world), f"served {rows} of {len(world)} rows"
    print(f"served {rows:,} activities in {calls:,} calls ({len(groups)} type groups)")
    rate, call_rate = rows / elapsed, calls / elapsed
    print(f"walk time {elapsed:.1f} s: {rate:,.0f} rows/s, {call_rate:,.0f} calls/s")


if __name__ == "__main__":
    main()
