"""The floor a tap is measured against: the same pages, with no work beyond fetching them.

Standard library only (urllib + json). Fetches a token, mints one paging token from
``--since``, then walks each chain (activities in groups of at most ten types, as the
tap forms them; lead changes; deleted leads) to its end and writes every raw result row
as one JSON line on stdout. No normalisation, no state, no dedup, no retries.

    python benchmarks/reference_client.py --base-url URL --since 2024-04-12T08:00:00Z

With ``--bulk-until``, activities up to that moment come from Bulk Extract jobs instead, as
the tap's ``backfill_method: bulk`` reads them: one export job per window of at most 31
days for every activity type (create, enqueue, poll status, download the CSV file), each
data row written as one JSON line of its raw cells (csv module); then the activities
chains from ``--handover-minutes`` before that moment through REST, as the tap's handover
does, and the other two chains through REST as before.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
import time
import urllib.parse
import urllib.request

OWN_STREAM_TYPES = {13, 37}
LEAD_FIELDS = "email,firstName,lastName,company,leadStatus,leadScore"


def get(url: str, token: str | None = None) -> dict:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def post(url: str, token: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def bulk_rows(base: str, token: str, type_ids: list[int], since: str, until: str, out) -> None:
    """Every activity of ``type_ids`` in [since, until) through export jobs of <= 31 days."""
    export = f"{base}/bulk/v1/activities/export"
    start = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(until.replace("Z", "+00:00"))
    while start < end:
        stop = min(start + dt.timedelta(days=31), end)
        body = {
            "format": "CSV",
            "fields": [
                "marketoGUID",
                "leadId",
                "activityDate",
                "activityTypeId",
                "campaignId",
                "primaryAttributeValueId",
                "primaryAttributeValue",
                "attributes",
            ],
            "filter": {
                "createdAt": {"startAt": stamp(start), "endAt": stamp(stop)},
                "activityTypeIds": type_ids,
            },
        }
        job = post(f"{export}/create.json", token, body)["result"][0]["exportId"]
        post(f"{export}/{job}/enqueue.json", token)
        while get(f"{export}/{job}/status.json", token)["result"][0]["status"] != "Completed":
            time.sleep(0.2)
        request = urllib.request.Request(f"{export}/{job}/file.json")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request) as response:
            reader = csv.reader(io.TextIOWrapper(response, encoding="utf-8", newline=""))
            header = next(reader)
            for cells in reader:
                out.write(json.dumps(dict(zip(header, cells, strict=True))) + "\n")
        start = stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--since", required=True)
    parser.add_argument("--page-size", type=int, default=300)
    parser.add_argument("--type-ids", default="", help="comma-separated; default: all but 13, 37")
    parser.add_argument("--bulk-until", help="read activities up to here through bulk jobs")
    parser.add_argument("--handover-minutes", type=int, default=60)
    args = parser.parse_args()

    base = args.base_url.rstrip("/")
    query = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": "simulator", "client_secret": "simulator"}
    )
    token = get(f"{base}/identity/oauth/token?{query}")["access_token"]
    rest = f"{base}/rest/v1"
    if args.type_ids:
        type_ids = sorted(int(i) for i in args.type_ids.split(","))
    else:
        listed = get(f"{rest}/activities/types.json", token)["result"]
        type_ids = sorted(row["id"] for row in listed if row["id"] not in OWN_STREAM_TYPES)
    out = sys.stdout
    activities_since = args.since
    if args.bulk_until:
        bulk_rows(base, token, type_ids, args.since, args.bulk_until, out)
        handover = dt.datetime.fromisoformat(args.bulk_until.replace("Z", "+00:00"))
        activities_since = stamp(handover - dt.timedelta(minutes=args.handover_minutes))
    chains = [
        (
            f"{rest}/activities.json?activityTypeIds=" + ",".join(map(str, type_ids[i : i + 10])),
            activities_since,
        )
        for i in range(0, len(type_ids), 10)
    ]
    chains += [
        (f"{rest}/activities/leadchanges.json?fields={LEAD_FIELDS}", args.since),
        (f"{rest}/activities/deletedleads.json?", args.since),
    ]
    for chain, since in chains:
        quoted = urllib.parse.quote(since)
        page_token = get(f"{rest}/activities/pagingtoken.json?sinceDatetime={quoted}", token)[
            "nextPageToken"
        ]
        while True:
            url = f"{chain}&batchSize={args.page_size}&nextPageToken={page_token}"
            body = get(url, token)
            for row in body.get("result") or ():
                out.write(json.dumps(row) + "\n")
            page_token = body.get("nextPageToken")
            if not body.get("moreResult") or not page_token:
                break


if __name__ == "__main__":
    main()
