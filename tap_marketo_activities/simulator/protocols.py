"""What the routes read from the running simulator, as a Protocol.

The routes (``endpoints``, ``leads``, ``bulk``) are handed the running instance on every
call; typing it as :class:`Instance` instead of ``MarketoSimulator`` keeps the arrows one
way: world -> routes -> server (the HTTP handler) -> instance (``MarketoSimulator``, which
starts the server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .clock import VirtualClock
    from .counters import CounterBook
    from .limits import Limits
    from .world import World


class Instance(Protocol):
    """The knobs and state of a running simulator that its routes read (see ``instance.py``)."""

    world: World
    clock: VirtualClock
    limits: Limits
    counter_book: CounterBook
    client_id: str
    scope: str
    long_tokens: bool
    scan_block: int
    cursor_generation: int
    stale_token_code: str
    invalid_token_code: str
    bad_since_code: str
    described_attributes: dict[int, dict[str, str | None]]
