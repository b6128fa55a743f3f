"""Generating a world's rows: the background mix, campaigns (sends), and the builder.

A scenario (``World.seed_afternoon``, ``generate``, ``quickstart``) adds background activity
and campaigns to a :class:`_Builder`; ``World`` then sorts the rows by commit time and
freezes them into columns (``world.py``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

from . import catalog as cat
from .clock import parse_datetime, to_epoch

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence
    from datetime import datetime

#: Background mix: (type id, weight). Web and email engagement dominate, as in real instances.
BACKGROUND_MIX: tuple[tuple[int, float], ...] = (
    (1, 18),
    (2, 4),
    (3, 3),
    (6, 2),
    (7, 8),
    (8, 1),
    (9, 1),
    (10, 8),
    (11, 4),
    (12, 4),
    (13, 10),
    (19, 1),
    (21, 1),
    (22, 6),
    (23, 1),
    (24, 3),
    (25, 1),
    (27, 1),
    (32, 0.5),
    (34, 0.5),
    (37, 1.5),
    (46, 3),
    (47, 1),
    (104, 2),
    (110, 1),
    (113, 1),
    (114, 0.5),
    (115, 0.5),
    (123, 1),
    (145, 1),
    (100001, 2),
)


@dataclass(frozen=True)
class Campaign:
    """A batch send: ``size`` rows stamped over ``spread_minutes`` from ``at``.

    Each row commits ``commit_minutes`` at most after its stamp, or, when ``commit_until`` is
    given, at a uniformly random moment between its stamp and ``commit_until`` (the seed
    article's 13:45 send that is half committed at 14:00).
    """

    at: datetime | str
    size: int
    type_id: int = cat.SEND_EMAIL
    spread_minutes: float = 5.0
    commit_minutes: float = 1.0
    commit_until: datetime | str | None = None
    campaign_id: int | None = None


@dataclass
class _Builder:
    """Collects generated rows (unsorted) before they are frozen into a World."""

    rng: random.Random
    leads: int
    # arrays, not lists: a million rows stay a few dozen MB while they are generated
    event: array[int] = field(default_factory=lambda: array("q"))
    commit: array[int] = field(default_factory=lambda: array("q"))
    type_id: array[int] = field(default_factory=lambda: array("I"))
    lead: array[int] = field(default_factory=lambda: array("I"))
    campaign: array[int] = field(default_factory=lambda: array("I"))

    def add_background(
        self,
        count: int,
        start: int,
        end: int,
        *,
        late_fraction: float,
        max_late_s: float,
        prompt_s: float = 20.0,
        mix_: Sequence[tuple[int, float]] = BACKGROUND_MIX,
    ) -> None:
        rng, span = self.rng, max(1, end - start)
        types = [t for t, _ in mix_]
        cumulative = list(accumulate(w for _, w in mix_))
        total = cumulative[-1]
        for k in range(count):
            if k < len(types) and count >= len(types):
                type_id = types[k]  # every type appears at least once
            else:
                type_id = types[bisect_right(cumulative, rng.random() * total)]
            event = start + int(rng.random() * span)
            if rng.random() < late_fraction:
                delay = rng.random() * max_late_s
            else:
                delay = rng.random() * prompt_s
            self._add(event, event + int(delay), type_id, self._campaign_for_background())

    def _campaign_for_background(self) -> int:
        rng = self.rng
        return 1000 + int(rng.random() * 20) if rng.random() < 0.4 else 0

    def add_campaign(self, campaign: Campaign, number: int) -> None:
        rng = self.rng
        start = to_epoch(parse_datetime(campaign.at))
        spread = campaign.spread_minutes * 60
        until = to_epoch(parse_datetime(campaign.commit_until)) if campaign.commit_until else None
        campaign_id = campaign.campaign_id or 2000 + number
        for _ in range(campaign.size):
            event = start + int(rng.random() * spread)
            if until is not None and until > event:
                commit = event + int(rng.random() * (until - event))
            else:
                commit = event + int(rng.random() * campaign.commit_minutes * 60)
            self._add(event, commit, campaign.type_id, campaign_id)

    def _add(self, event: int, commit: int, type_id: int, campaign: int) -> None:
        self.event.append(event)
        self.commit.append(commit)
        self.type_id.append(type_id)
        self.lead.append(1000 + int(self.rng.random() * self.leads))
        self.campaign.append(campaign)
