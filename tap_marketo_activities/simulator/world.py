"""The simulated instance's data: compact columns, the scenarios that fill them, ground truth.

Each activity has an event time (``activityDate``) and a commit time (>= the event time): the
moment Marketo writes it where the API can see it. Rows are stored sorted by commit time, so

- the rows visible at virtual time ``now`` are a prefix of the arrays (``visible_end``);
- a position in a paging walk is just an index into them;
- a date-based walk ("stamped at or after ``since``") starts at the first row committed at or
  after ``since`` (nothing committed earlier can be stamped later) and goes in commit order,
  which is why a late row shows up *behind* rows stamped after it, as in the seed article.

Storage is six ``array`` columns (about 32 bytes a row); row dicts are built only when served.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zlib import crc32

from . import catalog as cat
from .clock import UTC, from_epoch, parse_datetime, to_epoch
from .generate import Campaign, _Builder
from .render import mix, primary_id, render_activity, render_lead_change

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

STREAMS = ("activities", "lead_changes", "deleted_leads")
LIST_MEMBERSHIP_MODULO = 5  # a lead belongs to a static list for one list id in five

_MASK48 = (1 << 48) - 1
_GUID_MULT = 0x9E3779B97F4B  # odd, so multiplying by it is a bijection modulo 2**48
_GUID_INVERSE = pow(_GUID_MULT, -1, 1 << 48)


@dataclass(frozen=True)
class RowInfo:
    """Ground-truth facts about one stored row (for tests; not part of the API)."""

    index: int
    marketo_guid: str
    activity_date: datetime
    committed_at: datetime
    activity_type_id: int
    lead_id: int
    campaign_id: int | None


@dataclass(frozen=True)
class Filter:
    """What a request narrows a walk to (part of a position token's fingerprint)."""

    stream: str
    type_ids: frozenset[int]
    lead_ids: frozenset[int] | None = None
    list_id: int | None = None
    asset_ids: frozenset[int] | None = None
    fields: frozenset[str] | None = None

    def fingerprint(self) -> int:
        parts = [
            self.stream,
            ",".join(map(str, sorted(self.type_ids))),
            ",".join(map(str, sorted(self.lead_ids or ()))),
            str(self.list_id),
            ",".join(map(str, sorted(self.asset_ids or ()))),
            ",".join(sorted(self.fields or ())),
        ]
        return crc32("|".join(parts).encode())


def in_list(lead_id: int, list_id: int) -> bool:
    """Static-list membership, derived (no list tables): one list in five holds a given lead."""
    return mix(lead_id, list_id) % LIST_MEMBERSHIP_MODULO == 0


class World:
    """An immutable, commit-ordered set of activities plus the facts to render and walk them."""

    # ``id`` = id_base + id_stride * commit index: unique, increasing with commit order, and past
    # Int.MAX after about a hundred rows (the SPEC warns ids may exceed it).
    id_base = 2_147_480_000
    id_stride = 37
    event: array[int]  # activityDate, epoch seconds
    commit: array[int]  # commit time, epoch seconds (sorted ascending)
    type_id: array[int]
    lead: array[int]
    campaign: array[int]  # 0: none
    aux: array[int]  # 32 random bits from which everything else about the row is derived

    def __init__(
        self,
        builder: _Builder,
        *,
        name: str,
        seed: int,
        anchor: datetime,
        default_now: datetime,
        live: bool = False,
        id_absent_fraction: float = 0.1,
    ) -> None:
        self.name = name
        self.seed = seed
        self.anchor = anchor
        self.default_now = default_now
        self.live = live
        self.id_absent_permille = int(id_absent_fraction * 1000)
        base = min(builder.event, default=0)
        keys = [(c << 32) | (e - base) for c, e in zip(builder.commit, builder.event, strict=True)]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        del keys
        self.event = array("q", map(builder.event.__getitem__, order))
        self.commit = array("q", map(builder.commit.__getitem__, order))
        self.type_id = array("I", map(builder.type_id.__getitem__, order))
        self.lead = array("I", map(builder.lead.__getitem__, order))
        self.campaign = array("I", map(builder.campaign.__getitem__, order))
        rng = builder.rng
        self.aux = array("I", (rng.getrandbits(32) for _ in order))
        self._salt = mix(seed, 99) << 16 | mix(seed, 98) & 0xFFFF
        self.fingerprint = crc32(f"{name}|{seed}|{len(order)}|{self._salt}".encode())

    # ----------------------------------------------------------------- scenarios
    @classmethod
    def seed_afternoon(
        cls,
        rows: int = 1000,
        seed: int = 7,
        *,
        id_absent_fraction: float = 0.1,
        day: date | None = None,
    ) -> World:
        """The seed article's afternoon, 2024-04-12 (UTC); the clock defaults to 14:00.

        Shares of ``rows``: 10% before the 12:00 start date (08:00-12:00); a Send Email
        campaign at 12:30 (20%) that commits within a minute; a second one at 13:45 (20%),
        stamped 13:45-13:50 and committing gradually until 14:10 (about half committed at
        14:00); background activity of every type 12:00-18:00 (50%), 3% of it committing up to
        15 minutes late. Every part scales with ``rows``.

        ``day`` moves the same afternoon (same rows, GUIDs and commit order) to another date:
        clients that size their export windows by the real clock, up to "now" (the peers in
        benchmarks/peers.py), need an afternoon that is recent.
        """
        on = day if day is not None else date(2024, 4, 12)
        midnight = datetime(on.year, on.month, on.day, tzinfo=UTC)
        rng = random.Random(seed)
        builder = _Builder(rng, leads=max(50, rows // 5))
        pre = rows // 10
        send = rows // 5
        background = rows - pre - 2 * send
        builder.add_background(
            pre,
            to_epoch(midnight + timedelta(hours=8)),
            to_epoch(midnight + timedelta(hours=12)),
            late_fraction=0.0,
            max_late_s=0,
        )
        builder.add_campaign(Campaign(midnight + timedelta(hours=12, minutes=30), send), 1)
        builder.add_campaign(
            Campaign(
                midnight + timedelta(hours=13, minutes=45),
                send,
                commit_until=midnight + timedelta(hours=14, minutes=10),
            ),
            2,
        )
        builder.add_background(
            background,
            to_epoch(midnight + timedelta(hours=12)),
            to_epoch(midnight + timedelta(hours=18)),
            late_fraction=0.03,
            max_late_s=15 * 60,
        )
        return cls(
            builder,
            name="seed-afternoon",
            seed=seed,
            anchor=midnight + timedelta(hours=12),
            default_now=midnight + timedelta(hours=14),
            id_absent_fraction=id_absent_fraction,
        )

    @classmethod
    def generate(
        cls,
        start: str | datetime = "2024-04-12T00:00:00Z",
        hours: float = 24,
        rows: int = 5000,
        seed: int = 3,
        *,
        campaigns: Iterable[Campaign | Mapping[str, Any]] = (),
        late_fraction: float = 0.2,
        max_late_minutes: float = 50,
        now: str | datetime | None = None,
        live: bool = False,
        name: str = "generated",
        id_absent_fraction: float = 0.1,
    ) -> World:
        """A generic world: ``rows`` in total over ``hours`` from ``start``.

        Campaigns (``Campaign`` objects or dicts of its fields) take their sizes out of
        ``rows``; the rest is background of every type, of which ``late_fraction`` commits up
        to ``max_late_minutes`` late (the others within 20 s). ``now`` (the clock's default)
        defaults to the end of the span.
        """
        begin = parse_datetime(start)
        plan = [c if isinstance(c, Campaign) else Campaign(**c) for c in campaigns]
        rng = random.Random(seed)
        builder = _Builder(rng, leads=max(50, rows // 5))
        for number, campaign in enumerate(plan, start=1):
            builder.add_campaign(campaign, number)
        builder.add_background(
            max(0, rows - sum(c.size for c in plan)),
            to_epoch(begin),
            to_epoch(begin + timedelta(hours=hours)),
            late_fraction=late_fraction,
            max_late_s=max_late_minutes * 60,
        )
        end = begin + timedelta(hours=hours)
        return cls(
            builder,
            name=name,
            seed=seed,
            anchor=begin,
            default_now=parse_datetime(now) if now is not None else end,
            live=live,
            id_absent_fraction=id_absent_fraction,
        )

    @classmethod
    def quickstart(
        cls, today: str | datetime | None = None, rows: int = 4000, history_days: int = 0
    ) -> World:
        """Today (UTC), anchored to the present, for the quick start.

        Deterministic for a given UTC day (the seed is the day), so two processes on the same
        day serve the same world. Background over the whole day (5% of it up to 20 minutes
        late), plus a Send Email campaign every half hour (40% of ``rows`` in all) whose rows
        are stamped over 10 minutes and commit at random moments over the next 40 minutes:
        at any moment one campaign is still committing rows stamped earlier, so running the
        quick start twice a few minutes apart shows late rows arriving. Nothing commits more
        than 40 minutes late, inside the tap's default 60-minute lookback (and below its
        48-minute warning), so the quick start demonstrates late rows, not lost ones. The
        clock follows real time (``live``).

        ``history_days`` starts the world that many days before today, with ``rows`` of
        background a day over those days, so a first sync has a long window to backfill
        (bulk, its hand-over to REST, progress lines) without a real instance.
        """
        moment = datetime.now(UTC) if today is None else parse_datetime(today)
        anchor = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        history = max(0, int(history_days))
        per_campaign = max(1, rows * 4 // 10 // 48)
        campaigns = [
            Campaign(
                anchor + timedelta(minutes=30 * h),
                per_campaign,
                spread_minutes=10,
                commit_until=anchor + timedelta(minutes=30 * h + 40),
                campaign_id=3000 + h,
            )
            for h in range(48)
        ]
        return cls.generate(
            start=anchor - timedelta(days=history),
            hours=24 * (history + 1),
            rows=rows * (history + 1),
            seed=anchor.toordinal() + 100_000 * history,
            campaigns=campaigns,
            late_fraction=0.05,
            max_late_minutes=20,
            now=None,
            live=True,
            name="quickstart",
        )

    # ----------------------------------------------------------------- row facts
    def __len__(self) -> int:
        return len(self.event)

    def guid(self, i: int) -> str:
        """A unique, UUID-shaped marketoGUID whose last 12 hex digits encode the row index."""
        h1, h2 = mix(i, self._salt), mix(i, self._salt + 1)
        low = (i * _GUID_MULT + self._salt) & _MASK48
        return f"{h1:08x}-{h2 >> 16:04x}-4{h2 >> 4 & 0xFFF:03x}-a{h1 >> 20:03x}-{low:012x}"

    def index_of_guid(self, guid: str) -> int:
        index = ((int(guid[-12:], 16) - self._salt) * _GUID_INVERSE) & _MASK48
        if not 0 <= index < len(self) or self.guid(index) != guid:
            raise KeyError(guid)
        return index

    def info(self, i: int) -> RowInfo:
        return RowInfo(
            index=i,
            marketo_guid=self.guid(i),
            activity_date=from_epoch(self.event[i]),
            committed_at=from_epoch(self.commit[i]),
            activity_type_id=self.type_id[i],
            lead_id=self.lead[i],
            campaign_id=self.campaign[i] or None,
        )

    def rows(self) -> Iterable[RowInfo]:
        """Every row's facts, in commit order (ground truth for tests)."""
        return (self.info(i) for i in range(len(self)))

    def type_ids(self) -> frozenset[int]:
        return frozenset(self.type_id)

    # ----------------------------------------------------------------- walking
    def visible_end(self, now: datetime) -> int:
        """How many rows are committed at ``now`` (they are the first ones)."""
        return bisect_right(self.commit, to_epoch(now))

    def start_position(self, since_ts: int) -> int:
        """Where a walk for rows stamped >= since begins: nothing committed before can match."""
        return bisect_left(self.commit, since_ts)

    def scan(
        self, pos: int, end: int, since_ts: int, flt: Filter, limit: int
    ) -> tuple[list[int], int]:
        """Walk rows ``pos..end`` in commit order; stop after ``limit`` matches.

        Returns the matching indices and the position after the last row looked at.
        """
        event, types = self.event, self.type_id
        wanted = flt.type_ids
        leads, list_id, assets, fields = flt.lead_ids, flt.list_id, flt.asset_ids, flt.fields
        plain = leads is None and list_id is None and assets is None and fields is None
        out: list[int] = []
        i = pos
        while i < end:
            t = types[i]
            if t in wanted and event[i] >= since_ts and (plain or self._extra(i, flt)):
                out.append(i)
                if len(out) >= limit:
                    return out, i + 1
            i += 1
        return out, i

    def _extra(self, i: int, flt: Filter) -> bool:
        lead = self.lead[i]
        if flt.lead_ids is not None and lead not in flt.lead_ids:
            return False
        if flt.list_id is not None and not in_list(lead, flt.list_id):
            return False
        if flt.asset_ids is not None and primary_id(self, i) not in flt.asset_ids:
            return False
        if flt.fields is not None and self.type_id[i] == cat.CHANGE_DATA_VALUE:
            field_name = cat.LEAD_FIELDS[self.aux[i] % len(cat.LEAD_FIELDS)][1]
            return field_name in flt.fields
        return True

    def render(self, i: int, stream: str) -> dict[str, Any]:
        if stream == "lead_changes":
            return render_lead_change(self, i)
        return render_activity(self, i)

    # ----------------------------------------------------------------- ground truth
    def expected(
        self,
        stream: str,
        now: datetime,
        *,
        type_ids: Iterable[int] | None = None,
        since: str | datetime | None = None,
        fields: Iterable[str] | None = None,
        lead_ids: Iterable[int] | None = None,
    ) -> list[dict[str, Any]]:
        """What a perfect extractor would have delivered by ``now``, rendered as served.

        ``stream``: "activities" (``type_ids`` defaults to every type but 13 and 37),
        "lead_changes" (types 12 and 13; ``fields`` defaults to every lead field) or
        "deleted_leads" (type 37). Rows committed at or before ``now`` and stamped at or after
        ``since`` (if given), in commit order.
        """
        flt = make_filter(stream, type_ids=type_ids, fields=fields, lead_ids=lead_ids)
        since_ts = to_epoch(parse_datetime(since)) if since is not None else -(2**62)
        start = self.start_position(since_ts) if since is not None else 0
        indices, _ = self.scan(start, self.visible_end(now), since_ts, flt, len(self) + 1)
        return [self.render(i, stream) for i in indices]


def make_filter(
    stream: str,
    *,
    type_ids: Iterable[int] | None = None,
    fields: Iterable[str] | None = None,
    lead_ids: Iterable[int] | None = None,
    list_id: int | None = None,
    asset_ids: Iterable[int] | None = None,
) -> Filter:
    if stream == "activities":
        types = (
            frozenset(type_ids)
            if type_ids is not None
            else frozenset(cat.DEFAULT_ACTIVITY_TYPE_IDS)
        )
        return Filter(
            stream,
            types,
            lead_ids=frozenset(lead_ids) if lead_ids is not None else None,
            list_id=list_id,
            asset_ids=frozenset(asset_ids) if asset_ids is not None else None,
        )
    if stream == "lead_changes":
        return Filter(
            stream,
            cat.LEAD_CHANGE_TYPES,
            lead_ids=frozenset(lead_ids) if lead_ids is not None else None,
            list_id=list_id,
            fields=frozenset(fields) if fields is not None else frozenset(cat.LEAD_FIELD_NAMES),
        )
    if stream == "deleted_leads":
        return Filter(stream, frozenset({cat.DELETE_LEAD}))
    raise ValueError(f"unknown stream {stream!r}; expected one of {', '.join(STREAMS)}")
