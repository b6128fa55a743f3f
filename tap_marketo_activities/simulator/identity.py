"""Access tokens from ``/identity/oauth/token``.

As Marketo documents: a token is a UUID plus a ``:suffix``; asking again before it expires
returns the same token with its remaining lifetime; an expired token answers 602 and an unknown
one 601. Expiry uses REAL monotonic time, so a 1-second lifetime expires mid-run in a short test.
Tokens are drawn from a seeded generator, so the same seed gives the same tokens.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass


@dataclass
class _Issued:
    token: str
    expires_at: float  # time.monotonic()


class AccessTokens:
    def __init__(self, *, lifetime_s: float, seed: int = 0, suffix: str = "sj") -> None:
        self.lifetime_s = lifetime_s
        self._suffix = suffix
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._current: dict[str, _Issued] = {}  # client id -> live token
        self._expiry: dict[str, float] = {}  # every token ever issued -> expiry

    def issue(self, client_id: str) -> tuple[str, int, bool]:
        """(token, expires_in seconds, whether it is new) for a client with valid credentials."""
        now = time.monotonic()
        with self._lock:
            live = self._current.get(client_id)
            fresh = live is None or live.expires_at <= now
            if live is None or fresh:
                token = f"{uuid.UUID(int=self._rng.getrandbits(128), version=4)}:{self._suffix}"
                live = _Issued(token, now + self.lifetime_s)
                self._current[client_id] = live
                self._expiry[token] = live.expires_at
            remaining = live.expires_at - now
        # A fresh 3600 s token reports 3599 (as in Marketo's example); never report 0 for a
        # token that is still valid.
        return live.token, max(1, int(remaining)), fresh

    def check(self, token: str) -> str | None:
        """None when the token is valid, else the Marketo code: 601 unknown, 602 expired."""
        with self._lock:
            expires_at = self._expiry.get(token)
        if expires_at is None:
            return "601"
        if expires_at <= time.monotonic():
            return "602"
        return None

    def expire_all(self) -> None:
        """Make every issued token expired now (tests of 602 without waiting)."""
        now = time.monotonic()
        with self._lock:
            for token in self._expiry:
                self._expiry[token] = min(self._expiry[token], now)
            for live in self._current.values():
                live.expires_at = min(live.expires_at, now)
