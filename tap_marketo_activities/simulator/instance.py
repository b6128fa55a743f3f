"""The simulated Marketo instance: world, clock, limits, faults, counters, and its knobs.

``MarketoSimulator`` owns everything a run talks to and starts the HTTP server
(``server.py``) on 127.0.0.1 inside ``with``; the routes and the handler see it through the
Protocols in ``protocols.py`` and ``server.py``, so the arrows point one way.
"""

from __future__ import annotations

import threading
from itertools import count
from typing import TYPE_CHECKING, Any

from . import bulk
from .clock import VirtualClock, parse_datetime
from .counters import CounterBook, Counters
from .faults import Faults, FaultScript
from .identity import AccessTokens
from .limits import Limits
from .server import _Handler, _Server
from .world import World

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from types import TracebackType


class MarketoSimulator:
    """A running (inside ``with``) simulated Marketo instance; every knob is a plain attribute."""

    def __init__(
        self,
        world: World | None = None,
        *,
        faults: Faults | None = None,
        token_lifetime_s: float = 3600,
        client_id: str = "simulator",
        client_secret: str = "simulator",  # noqa: S107 (the simulator's documented secret)
        rate_limit_calls: int = 100,
        rate_limit_window_s: float = 20.0,
        max_concurrency: int = 10,
        daily_quota: int = 50_000,
        latency_s: float = 0.0,
        long_tokens: bool = False,
        now: str | datetime | None = None,
        scan_block: int = 1000,
        host: str = "127.0.0.1",
        port: int = 0,
        scope: str = "simulator@example.com",
        seed: int = 0,
        stale_token_code: str = "1003",  # noqa: S107 (an error code, not a secret)
        invalid_token_code: str = "1003",  # noqa: S107 (an error code, not a secret)
        bad_since_code: str = "1001",
        log_requests: bool = False,
    ) -> None:
        self.world = world if world is not None else World.seed_afternoon()
        self.faults = faults if faults is not None else Faults()
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_limit_calls = rate_limit_calls
        self.rate_limit_window_s = rate_limit_window_s
        self.max_concurrency = max_concurrency
        self.daily_quota = daily_quota
        self.latency_s = latency_s
        self.long_tokens = long_tokens
        self.scan_block = scan_block
        self.scope = scope
        self.stale_token_code = stale_token_code
        self.invalid_token_code = invalid_token_code
        self.bad_since_code = bad_since_code
        self.log_requests = log_requests
        #: How types.json describes attributes, per type id: attribute name -> the dataType
        #: to announce instead, or None to leave it out of the description (rows keep it).
        #: Models an admin editing a custom type between two runs.
        self.described_attributes: dict[int, dict[str, str | None]] = {}
        self.cursor_generation = 0
        start = now if now is not None else (None if self.world.live else self.world.default_now)
        self.clock = VirtualClock(start, ticking=self.world.live)
        self.tokens = AccessTokens(lifetime_s=token_lifetime_s, seed=seed)
        self.limits = Limits()
        self.script = FaultScript()
        self.counter_book = CounterBook()
        self.bulk = bulk.BulkExports()
        self._request_ids = count(0x1607C + seed)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> MarketoSimulator:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.sim = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.bulk.close()

    def __enter__(self) -> MarketoSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running: use `with MarketoSimulator(...)`")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; REST is under ``/rest``, identity under ``/identity``."""
        return f"http://{self._host}:{self.port}"

    # ------------------------------------------------------------ knobs and ground truth
    @property
    def token_lifetime_s(self) -> float:
        return self.tokens.lifetime_s

    @token_lifetime_s.setter
    def token_lifetime_s(self, value: float) -> None:
        self.tokens.lifetime_s = value

    @property
    def counters(self) -> Counters:
        """A frozen snapshot; see ``counters.py`` for the keys."""
        return self.counter_book.snapshot()

    def reset_counters(self) -> None:
        self.counter_book.reset(in_flight=self.limits.in_flight)

    def inject(self, path_suffix: str, kind: str, times: int = 1, after: int = 0) -> None:
        """The next ``times`` calls whose path ends with ``path_suffix`` answer with ``kind``.

        ``after`` lets that many matching calls through first (e.g. ``after=1`` on the
        identity path fails a token renewal, not the first token).
        """
        self.script.add(path_suffix, kind, times, after)

    def reject_cursors(self) -> None:
        """Refuse every position token issued before now (``stale_token_code``)."""
        self.cursor_generation += 1

    def set_quota(self, used: int) -> None:
        """Set today's quota usage (today by the virtual clock, in CST)."""
        self.limits.set_quota(used, self.clock.now())

    def expire_tokens(self) -> None:
        """Expire every access token now (the next REST call with one gets 602)."""
        self.tokens.expire_all()

    def expected(
        self,
        stream: str,
        type_ids: Iterable[int] | None = None,
        since: str | datetime | None = None,
        fields: Iterable[str] | None = None,
        lead_ids: Iterable[int] | None = None,
    ) -> list[dict[str, Any]]:
        """What a perfect extractor would have delivered by ``clock.now()`` (see World)."""
        return self.world.expected(
            stream,
            self.clock.now(),
            type_ids=type_ids,
            since=parse_datetime(since) if since is not None else None,
            fields=fields,
            lead_ids=lead_ids,
        )

    # ------------------------------------------------------------ used by the handler
    def next_request_id(self) -> str:
        millis = int(self.clock.now().timestamp() * 1000)
        return f"{next(self._request_ids) & 0xFFFFF:x}#{millis:x}"
