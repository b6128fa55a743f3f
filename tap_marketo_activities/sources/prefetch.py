"""Reading page chains ahead of the stream that emits them, several calls in flight.

The SDK emits one partition after another in one thread, and a walk needs each page's
``nextPageToken`` before it can ask for the next one: walked in turn, a run has one call
in flight and uses well under half of Marketo's 100 calls per 20 s at its usual 300-600
ms per call. Every chain of a run (a type group of ``activities``, ``lead_changes``,
``deleted_leads``) is independent, though, so each gets a fetcher thread that walks its
chain from the start its state gives at run start, while the emitting thread works
through the chains before it. The shared limiter (limits.py) caps the calls in flight
and the rate over all of them.

Nothing here writes state or output. The emitting thread takes a chain's pages in order
(:meth:`Chain.pages`) and handles each exactly as a page it fetched itself: records,
then the cursor, then STATE. A page fetched and never emitted (a killed run) is a call
spent, never a row lost; a failure the fetcher met is raised in the emitting thread when
it reaches that point of the chain, so it means what it means in a sequential walk (on
the first page of a saved cursor: a refused cursor).

A chain that runs ahead keeps its first pages in memory and writes later ones, as the
raw answer, to a temporary file; the files of all chains together hold at most
``SPOOL_LIMIT`` bytes of pages not yet emitted, beyond which fetchers wait. The chain
being emitted never waits on the files: it keeps ``MEMORY_PAGES`` in memory and its
reader frees them.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import pickle
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import requests


LOGGER = logging.getLogger(__name__)

#: Pages of a chain kept parsed in memory (the rest of its read-ahead goes to its file).
MEMORY_PAGES = 2
#: Raw bytes of pages waiting in temporary files, over all chains of a run.
SPOOL_LIMIT = 256 * 1024 * 1024
#: How often a waiting fetcher looks again whether it was cancelled.
_POLL_S = 0.5


def chain_key(stream_name: str, context: t.Mapping[str, t.Any] | None) -> str:
    """One chain per stream and partition context."""
    return json.dumps([stream_name, context], sort_keys=True, default=str)


class Start(t.Protocol):
    """Where a walk starts (``sync.incremental.Start``): a saved token, or a date to mint one."""

    since: t.Any
    token: str | None


class ChainSource(t.Protocol):
    """What a fetcher needs from the stream whose chain it walks (IncrementalStream)."""

    def mint_token(self, since: t.Any) -> str:
        """A date-based paging token (one call)."""
        ...

    def fetch_page(self, context: t.Any, token: str) -> requests.Response:
        """One page at ``token``, through the stream's request, validation and retries."""
        ...

    def next_page(self, token: str, response: requests.Response) -> str | None:
        """The token of the page after this one, or None at the end of the chain."""
        ...


@dataclass
class Plan:
    """A chain to read ahead: whose, and from where (the start its state gives)."""

    key: str
    start: Start
    source: ChainSource
    context: t.Any


@dataclass
class _Page:
    response: requests.Response | None = None  # in memory
    offset: int = 0  # else in the chain's file
    length: int = 0


@dataclass
class _Failure:
    error: Exception


class _End:
    pass


_Item = _Page | _Failure | _End


class Chain:
    """One chain's pages, fetched ahead by one thread and taken in order by the emitter."""

    def __init__(self, plan: Plan, spool: Spool, limiter: Favour) -> None:
        self.key = plan.key
        self._limiter = limiter
        self._fetching = True
        self.start = plan.start
        self._plan = plan
        self._spool = spool
        self._cond = threading.Condition()
        self._items: collections.deque[_Item] = collections.deque()
        self._in_memory = 0
        self._on_disk = 0  # raw bytes of the pages in the file, held in the spool
        self._disk_pages = 0
        self._file: t.BinaryIO | None = None
        self._file_end = 0
        self._token: str | None = None
        self._token_error: Exception | None = None
        self._token_known = False
        self._finished = False  # the fetcher delivered its end or its failure
        self.claimed = False
        self.cancelled = False
        self.thread = threading.Thread(target=self._fetch, name=f"prefetch {plan.key}", daemon=True)

    # -- the fetcher's side ------------------------------------------------------------

    def _fetch(self) -> None:
        try:
            self._walk()
        finally:
            with self._cond:
                self._fetching = False
                self._limiter.unfavour(threading.get_ident())
                if not self._finished and not self.cancelled:
                    # Never leave the emitting thread waiting on a fetcher that is gone.
                    stopped = RuntimeError("a page fetcher stopped without an answer")
                    if not self._token_known:
                        self._token_error, self._token_known = stopped, True
                    self._items.append(_Failure(stopped))
                    self._cond.notify_all()

    def _walk(self) -> None:
        source = self._plan.source
        try:
            token = self.start.token
            try:
                if token is None:
                    token = source.mint_token(self.start.since)
            except Exception as exc:
                self._set_token(None, exc)
                self._deliver(_Failure(exc))
                return
            self._set_token(token, None)
            while token is not None and not self.cancelled:
                response = source.fetch_page(self._plan.context, token)
                try:
                    token = source.next_page(token, response)
                except Exception as exc:
                    self._put(response)
                    self._deliver(_Failure(exc))
                    return
                if not self._put(response):
                    return
            self._deliver(_End())
        except Exception as exc:
            self._deliver(_Failure(exc))

    def _set_token(self, token: str | None, error: Exception | None) -> None:
        with self._cond:
            self._token, self._token_error, self._token_known = token, error, True
            self._cond.notify_all()

    def _deliver(self, item: _Failure | _End) -> None:
        with self._cond:
            self._finished = True
            if not self.cancelled:
                self._items.append(item)
                self._cond.notify_all()

    def _put(self, response: requests.Response) -> bool:
        """Queue a page in memory, or in the file, or wait; False once cancelled."""
        with self._cond:
            while not self.cancelled:
                if self._in_memory < MEMORY_PAGES:
                    self._items.append(_Page(response))
                    self._in_memory += 1
                    self._cond.notify_all()
                    return True
                if (
                    not self.claimed
                    and self._spool.pays(self._limiter.call_s)
                    and self._spool.reserve(len(response.content))
                ):
                    break
                self._cond.wait(_POLL_S)
            else:
                return False
        # The answer without its request: the request's headers hold the access token,
        # which must never reach a disk. What stays is what parsing the page needs.
        response.request = None  # type: ignore[assignment]
        blob = pickle.dumps(response, protocol=pickle.HIGHEST_PROTOCOL)
        with self._cond:
            if self.cancelled:
                self._spool.release(len(response.content))
                return False
            if self._file is None:  # closed by cancel(), which every chain's end reaches
                self._file = tempfile.TemporaryFile(prefix="tap-marketo-prefetch-")  # noqa: SIM115
            self._file.seek(self._file_end)
            self._file.write(blob)
            self._items.append(_Page(None, self._file_end, len(blob)))
            self._file_end += len(blob)
            self._on_disk += len(response.content)
            self._disk_pages += 1
            self._cond.notify_all()
        return True

    # -- the emitter's side ------------------------------------------------------------

    def token(self) -> str:
        """The chain's first token (minted by the fetcher), or the minting's failure."""
        with self._cond:
            while not self._token_known:
                self._cond.wait()
            if self._token_error is not None:
                raise self._token_error
            return t.cast("str", self._token)

    def pages(self) -> Iterator[requests.Response]:
        """The chain's pages in order; a failure the fetcher met is raised in its place."""
        with self._cond:
            self.claimed = True
            if self._fetching and self.thread.ident is not None:
                # The run now waits for this chain: its calls go first (limits.py).
                self._limiter.favour(self.thread.ident)
            self._cond.notify_all()
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                item = self._items.popleft()
                blob = self._take(item)
                self._cond.notify_all()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            # A page from the file is our own pickle of an answer, written above.
            response = item.response if item.response is not None else pickle.loads(blob)  # noqa: S301
            handed = time.monotonic()
            yield response
            self._spool.emitted(time.monotonic() - handed)

    def _take(self, item: _Item) -> bytes:
        """Account for an item leaving the queue; a page from the file is read here."""
        if not isinstance(item, _Page):
            return b""
        if item.response is not None:
            self._in_memory -= 1
            return b""
        assert self._file is not None
        self._file.seek(item.offset)
        blob = self._file.read(item.length)
        self._disk_pages -= 1
        if not self._disk_pages:
            # Everything written has been read: start the file over, so the chain being
            # emitted does not grow its file while the fetcher keeps ahead of it.
            self._spool.release(self._on_disk)
            self._on_disk = 0
            self._file.seek(0)
            self._file.truncate()
            self._file_end = 0
        return blob

    def cancel(self) -> None:
        """Stop the fetcher at its next step and drop what it read ahead."""
        with self._cond:
            self.cancelled = True
            self._items.clear()
            self._in_memory = 0
            self._spool.release(self._on_disk)
            self._on_disk = 0
            self._disk_pages = 0
            if self._file is not None:
                self._file.close()
                self._file = None
            self._cond.notify_all()
            if self.thread.ident is not None:
                self._limiter.unfavour(self.thread.ident)


class Favour(t.Protocol):
    """The part of the run's CallLimiter that ranks the chains' calls."""

    #: Mean seconds a call is in flight (None before the first).
    call_s: float | None

    def favour(self, thread_id: int) -> None:
        """Let this thread's calls go first."""
        ...

    def unfavour(self, thread_id: int) -> None:
        """End that, if this thread still has it."""
        ...


class Spool:
    """The bytes of read-ahead pages on disk, over all chains, against SPOOL_LIMIT.

    Reading a chain ahead to disk pays only when its calls are slower than emitting its
    pages: otherwise the chain, once its turn comes, keeps ahead of the emitter with its
    pages in memory, and the file would cost a second parse of each page for nothing
    (the simulator without latency; Marketo answers in 300-600 ms).
    """

    def __init__(self, limit: int = SPOOL_LIMIT) -> None:
        self.limit = limit
        self.used = 0
        #: Mean seconds the emitting thread spends on a page (moving average).
        self.emit_s: float | None = None
        self._lock = threading.Lock()

    def emitted(self, seconds: float) -> None:
        """Note how long the emitting thread took over one page."""
        mean = self.emit_s
        self.emit_s = seconds if mean is None else mean + (seconds - mean) * 0.2

    def pays(self, call_s: float | None) -> bool:
        """Whether a call takes longer than emitting a page (so reading ahead saves time).

        Unknown until both have been seen: until then, only the memory window.
        """
        return call_s is not None and self.emit_s is not None and call_s > self.emit_s

    def reserve(self, size: int) -> bool:
        """Take room for one page; False when the files are full."""
        with self._lock:
            if self.used + size > self.limit and self.used > 0:
                return False
            self.used += size
            return True

    def release(self, size: int) -> None:
        """Give back room of pages read or dropped."""
        with self._lock:
            self.used = max(0, self.used - size)


class Prefetcher:
    """The run's chains: started together, claimed by the emitting thread one by one."""

    def __init__(self, limiter: Favour, spool_limit: int = SPOOL_LIMIT) -> None:
        self._limiter = limiter
        self._spool = Spool(spool_limit)
        self._chains: dict[str, Chain] = {}
        self._order: list[str] = []
        self._lock = threading.Lock()
        self.started = False

    def start(self, plans: list[Plan]) -> None:
        """Start one fetcher per plan, in the order the run will emit them."""
        with self._lock:
            self.started = True
            for plan in plans:
                chain = Chain(plan, self._spool, self._limiter)
                self._chains[plan.key] = chain
                self._order.append(plan.key)
        for key in self._order:
            self._chains[key].thread.start()
        if plans:
            LOGGER.info("Reading %d page chains ahead, in parallel", len(plans))

    def claim(self, key: str, start: Start) -> Chain | None:
        """The chain read ahead for this walk, if it started where the walk starts.

        A chain planned from another start (the pass inherited another group's progress,
        or a backfill moved it) is dropped, and the walk goes on without it. Chains
        planned before this one and never claimed will not be (the SDK's order is the
        plan's order): they are stopped too.
        """
        with self._lock:
            chain = self._chains.pop(key, None)
            if key in self._order:
                skipped = self._order[: self._order.index(key)]
                self._order = self._order[self._order.index(key) + 1 :]
                stale = [self._chains.pop(k) for k in skipped if k in self._chains]
            else:
                stale = []
        for old in stale:
            old.cancel()
        if chain is None:
            return None
        if chain.start != start:
            chain.cancel()
            return None
        return chain

    def close(self) -> None:
        """Stop every fetcher (the run ends, or failed)."""
        with self._lock:
            chains = list(self._chains.values())
            self._chains.clear()
            self._order.clear()
        for chain in chains:
            chain.cancel()

    @contextlib.contextmanager
    def closing_on_error(self) -> Iterator[None]:
        """Stop every fetcher when the body fails: the run is ending."""
        try:
            yield
        except BaseException:
            self.close()
            raise
