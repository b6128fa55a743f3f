"""The floor a tap is measured against: the same pages, with no work beyond fetching them.

Standard library only (urllib + json). Fetches a token, mints one paging token from
``--since``, then walks each chain (activities in groups of at most ten types, as the
tap forms them; lead changes; deleted leads) to its end and writes every raw result row
as one JSON line on stdout. No normalisation, no state, no dedup, no retries.

    python benchmarks/reference_client.py --base-url URL --since 2024-04-12T08:00:00Z
"""

from __future__ import annotations

import argparse
import json
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--since", required=True)
    parser.add_argument("--page-size", type=int, default=300)
    parser.add_argument("--type-ids", default="", help="comma-separated; default: all but 13, 37")
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
    since = urllib.parse.quote(args.since)
    chains = [
        f"{rest}/activities.json?activityTypeIds=" + ",".join(map(str, type_ids[i : i + 10]))
        for i in range(0, len(type_ids), 10)
    ]
    chains += [
        f"{rest}/activities/leadchanges.json?fields={LEAD_FIELDS}",
        f"{rest}/activities/deletedleads.json?",
    ]
    out = sys.stdout
    for chain in chains:
        page_token = get(f"{rest}/activities/pagingtoken.json?sinceDatetime={since}", token)[
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
