"""Which leads changed, from activity rows (pure logic).

The types below change a lead's fields (MARKETO_LEADS.md §6): New Lead, Change Data Value,
Convert Lead, Change Score, Change Owner, Merge Leads (the winner), Change Lead Partition,
Change Revenue Stage, Change Segment. 37 Delete Lead is not here: a deleted lead cannot be
read, and ``deleted_leads`` carries it.
"""

from __future__ import annotations

import typing as t

CHANGE_TYPES = frozenset({12, 13, 21, 22, 23, 32, 100, 101, 108})
MERGE_LEADS = 32


class Merge(t.NamedTuple):
    """One lead merged away: the loser id, the winner id, when (the activity's date)."""

    loser_id: int
    winner_id: int
    merged_at: str
    marketo_guid: str


def attribute(row: dict[str, t.Any], name: str) -> t.Any:
    """An activity attribute's value by name (None when absent)."""
    for item in row.get("attributes") or ():
        if isinstance(item, dict) and item.get("name") == name:
            return item.get("value")
    return None


def merges(row: dict[str, t.Any]) -> list[Merge]:
    """The losers a Merge Leads row names in ``Merge IDs`` (every id but the winner)."""
    if row.get("activityTypeId") != MERGE_LEADS or row.get("leadId") is None:
        return []
    winner = int(row["leadId"])
    ids = str(attribute(row, "Merge IDs") or "").replace(";", ",").split(",")
    losers = sorted({int(x) for x in ids if x.strip().isdigit()} - {winner})
    when, guid = str(row.get("activityDate")), str(row.get("marketoGUID"))
    return [Merge(loser, winner, when, guid) for loser in losers]


def changed_ids(rows: t.Iterable[dict[str, t.Any]]) -> set[int]:
    """The ids of leads whose fields these rows changed."""
    return {
        int(row["leadId"])
        for row in rows
        if row.get("activityTypeId") in CHANGE_TYPES and row.get("leadId") is not None
    }
