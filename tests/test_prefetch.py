"""Page chains read ahead in parallel (prefetch.py): output, cursors and limits stay right.

The end-to-end tests run the tap as a process against the simulator answering every call
after a short latency, so several chains are in flight together; the unit tests drive a
Chain with pages built in memory, to reach the temporary-file path and the failure paths.
"""

from __future__ import annotations

import random
import signal
import threading
import typing as t

import pytest
import requests
from helpers import (
    assert_kills_lost_nothing,
    expected_guids,
    guid_counts,
    killed_runs,
    sigterm_after_records,
    sim_config,
    write_json,
)

from tap_marketo_activities.errors import MalformedResponse, MarketoError
from tap_marketo_activities.simulator import World
from tap_marketo_activities.sources.prefetch import Chain, Plan, Prefetcher, Spool
from tap_marketo_activities.sync.incremental import Start
from tap_marketo_activities.wire.auth import MarketoAuthenticator
from tap_marketo_activities.wire.limits import CallLimiter, RunStats

STREAMS = ("activities", "lead_changes", "deleted_leads")
SINCE = "2024-04-12T12:00:00Z"
# Three type groups of activities (23 default types) plus lead_changes and deleted_leads.
CHAINS = 5


def parallel_config(sim, **overrides):
    """Small pages so that every chain has several; three calls at once at most."""
    return sim_config(sim, page_size=40, max_concurrent_calls=3, **overrides)


def assert_valid_singer(messages: list[dict]) -> None:
    """Every RECORD after its stream's SCHEMA; every STATE's cursors name emitted pages."""
    schemas: set[str] = set()
    for message in messages:
        if message["type"] == "SCHEMA":
            schemas.add(message["stream"])
        elif message["type"] == "RECORD":
            assert message["stream"] in schemas, f"RECORD of {message['stream']} before SCHEMA"


def test_chains_are_read_in_parallel_and_every_row_arrives_once(simulator, run_tap):
    sim = simulator(
        World.seed_afternoon(rows=2400, seed=4), now="2024-04-12T16:00:00Z", latency_s=0.05
    )
    run = run_tap(parallel_config(sim, metrics_log_level="INFO"))  # the timers below
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Reading {CHAINS} page chains ahead" in run.stderr
    counters = sim.counters
    assert 1 < counters.peak_concurrency <= 3
    assert not counters.enforced_by_code.get("606")
    assert not counters.enforced_by_code.get("615")
    assert_valid_singer(run.messages)
    for stream in STREAMS:
        counts = guid_counts(run.records[stream])
        assert sorted(counts) == expected_guids(sim, stream, SINCE), stream
        assert set(counts.values()) == {1}, f"{stream}: a row was sent twice"
    assert "Traceback" not in run.stderr
    # The SDK's request metric is logged for pages read ahead too.
    timers = [line for line in run.stderr.splitlines() if '"http_request_duration"' in line]
    assert any('"endpoint":"/v1/activities/deletedleads.json"' in line for line in timers)


def test_the_rate_limit_holds_with_calls_in_parallel(simulator, run_tap):
    """Chains in parallel stay under our own limit, so Marketo's (the same here) never trips."""
    sim = simulator(
        World.seed_afternoon(rows=2400, seed=5),
        now="2024-04-12T16:00:00Z",
        latency_s=0.02,
        rate_limit_calls=15,
        rate_limit_window_s=1,
    )
    run = run_tap(parallel_config(sim, max_calls_per_20s=15, rate_limit_window_seconds=1))
    assert run.returncode == 0, run.stderr[-3000:]
    counters = sim.counters
    assert counters.rest_calls > 45  # three windows' worth at least: the limit was binding
    assert not counters.enforced_by_code, counters.enforced_by_code
    assert "Retrying" not in run.stderr
    for stream in STREAMS:
        assert sorted(run.guids(stream)) == expected_guids(sim, stream, SINCE), stream


def test_sigkill_while_chains_run_ahead_loses_nothing(simulator, run_tap, tmp_path):
    """Pages fetched ahead and not emitted are lost calls, never rows: STATE names emitted pages."""
    rng = random.Random(15)
    page_size = 40
    for trial in range(4):
        sim = simulator(
            World.seed_afternoon(rows=1600, seed=20 + trial),
            now="2024-04-12T16:00:00Z",
            latency_s=0.03,
        )
        config = parallel_config(sim)
        config_path = write_json(tmp_path, f"config{trial}.json", config)
        messages, state, kills = killed_runs(
            config_path,
            tmp_path,
            f"s{trial}",
            lambda: rng.randrange(1, 1200),
            check=assert_valid_singer,
        )
        final = run_tap(config, state)
        assert final.returncode == 0, final.stderr[-2000:]
        messages += final.messages
        assert_kills_lost_nothing(
            sim,
            messages,
            final.state,
            since=SINCE,
            page_size=page_size,
            kills=kills,
            label=f"trial {trial}",
        )


def test_a_cursor_refused_while_read_ahead_falls_back_and_loses_nothing(
    simulator, run_tap, tmp_path
):
    """The run stops inside lead_changes (607); the next run reads that chain ahead from its
    cursor while it emits activities, Marketo refuses the cursor, and the refusal is handled
    when lead_changes' turn comes: the recovery time, every row."""
    sim = simulator(
        World.seed_afternoon(rows=2400, seed=9), now="2024-04-12T16:00:00Z", latency_s=0.02
    )
    config = parallel_config(sim)
    want = {stream: set(expected_guids(sim, stream, SINCE)) for stream in STREAMS}
    # Marketo's daily quota (607) runs out at lead_changes' second page: a clean stop,
    # which writes the STATE of what the target has, lead_changes' cursor included.
    sim.inject("leadchanges.json", "607", times=100, after=1)
    stopped = run_tap(config)
    assert stopped.returncode != 0
    written = stopped.messages
    sim.script.clear()
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    cursor = state["bookmarks"]["lead_changes"]["cursor"]
    assert "pending" in cursor  # a clean stop's STATE carries the keys
    del cursor["pending"]  # as a SIGKILL after a cadence STATE leaves it: the harder case
    sim.reject_cursors()
    resumed = run_tap(config, state)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Marketo refused the saved cursor of stream 'lead_changes'" in resumed.stderr
    assert f"Reading {CHAINS} page chains ahead" in resumed.stderr
    for stream in STREAMS:
        got = {
            m["record"]["marketoGUID"]
            for m in written
            if m["type"] == "RECORD" and m["stream"] == stream
        }
        got |= set(resumed.guids(stream))
        assert want[stream] <= got, f"{stream} lost {len(want[stream] - got)} rows"


def test_sigterm_while_fetchers_are_in_flight_stops_at_once(simulator, run_tap, tmp_path):
    """Fetchers are daemon threads, stopped with the run: exit 143, a state that resumes."""
    sim = simulator(
        World.seed_afternoon(rows=2400, seed=12), now="2024-04-12T16:00:00Z", latency_s=0.1
    )
    config = parallel_config(sim)
    code, written, stderr = sigterm_after_records(
        write_json(tmp_path, "config.json", config), 200, timeout=30
    )
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Stopped by SIGTERM" in stderr
    assert "Traceback" not in stderr
    assert sim.counters.peak_concurrency > 1
    state = [m["value"] for m in written if m["type"] == "STATE"][-1]
    resumed = run_tap(config, state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for stream in STREAMS:
        delivered = {
            m["record"]["marketoGUID"]
            for m in written + resumed.messages
            if m["type"] == "RECORD" and m["stream"] == stream
        }
        assert set(expected_guids(sim, stream, SINCE)) <= delivered, stream


def test_one_call_at_a_time_walks_as_before(simulator, run_tap):
    sim = simulator(World.seed_afternoon(rows=600, seed=4), now="2024-04-12T16:00:00Z")
    run = run_tap(sim_config(sim, max_concurrent_calls=1))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "page chains ahead" not in run.stderr
    assert sim.counters.peak_concurrency == 1
    for stream in STREAMS:
        assert sorted(run.guids(stream)) == expected_guids(sim, stream, SINCE), stream


# -- a chain on its own ---------------------------------------------------------------------


def page(number: int, more: bool = True) -> requests.Response:
    """A Marketo answer built in memory (the chain keeps or files it as it would a real one)."""
    response = requests.Response()
    response.status_code = 200
    response.url = "http://127.0.0.1/rest/v1/activities.json"
    body = (
        f'{{"success":true,"requestId":"r{number}","nextPageToken":"t{number + 1}",'
        f'"moreResult":{"true" if more else "false"},"result":[{{"n":{number}}}]}}'
    )
    response._content = body.encode()  # how requests holds a read body
    return response


class FakeSource:
    """A chain of ``pages`` pages; a failure can be put on the mint or on a page."""

    def __init__(self, pages: int, fail_at: int | None = None, fail_mint: bool = False) -> None:
        self.pages = pages
        self.fail_at = fail_at
        self.fail_mint = fail_mint
        self.fetched = 0

    def mint_token(self, since: t.Any) -> str:
        if self.fail_mint:
            msg = "pagingtoken.json refused"
            raise MarketoError(msg)
        return "t0"

    def fetch_page(self, context: t.Any, token: str) -> requests.Response:
        number = int(token[1:])
        if number == self.fail_at:
            msg = f"page {number} refused"
            raise MarketoError(msg)
        self.fetched += 1
        return page(number, more=number + 1 < self.pages)

    def next_page(self, token: str, response: requests.Response) -> str | None:
        body = response.json()
        return body["nextPageToken"] if body["moreResult"] else None


class Favours:
    """The limiter as a chain sees it: calls take a second (so reading ahead to disk pays)."""

    call_s = 1.0

    def __init__(self) -> None:
        self.favoured: int | None = None

    def favour(self, thread_id: int) -> None:
        self.favoured = thread_id

    def unfavour(self, thread_id: int) -> None:
        if self.favoured == thread_id:
            self.favoured = None


def start_chain(source: FakeSource, spool: Spool, favours: Favours | None = None) -> Chain:
    plan = Plan(key="k", start=Start(since=None), source=source, context=None)  # type: ignore[arg-type]
    chain = Chain(plan, spool, favours or Favours())
    chain.thread.start()
    return chain


def numbers(chain: Chain) -> list[int]:
    return [response.json()["result"][0]["n"] for response in chain.pages()]


def test_a_chain_read_ahead_goes_to_its_file_and_comes_back_in_order():
    spool = Spool(limit=10**9)
    spool.emitted(0.01)  # pages are emitted faster than calls are answered: reading ahead pays
    source = FakeSource(pages=30)
    chain = start_chain(source, spool)
    chain.thread.join(timeout=30)  # the whole chain is read before anyone emits it
    assert not chain.thread.is_alive()
    assert spool.used > 0  # pages beyond the memory window wait on disk
    assert chain.token() == "t0"
    assert numbers(chain) == list(range(30))
    assert spool.used == 0
    chain.cancel()


def test_a_chain_is_not_read_ahead_to_disk_when_calls_are_faster_than_emitting():
    spool = Spool(limit=10**9)
    spool.emitted(5.0)  # the emitter takes longer over a page than a call (1 s) takes
    source = FakeSource(pages=20)
    chain = start_chain(source, spool)
    try:
        with pytest.raises(TimeoutError):
            wait_until(lambda: source.fetched == 20, seconds=1.0)
        assert spool.used == 0
        assert numbers(chain) == list(range(20))
    finally:
        chain.cancel()


def test_a_full_spool_stops_the_fetcher_until_the_chain_is_emitted():
    spool = Spool(limit=1)  # room for one page on disk
    spool.emitted(0.01)
    source = FakeSource(pages=20)
    chain = start_chain(source, spool)
    try:
        with pytest.raises(TimeoutError):
            wait_until(lambda: source.fetched == 20, seconds=1.0)
        assert source.fetched < 20
        assert numbers(chain) == list(range(20))  # once claimed, it no longer waits on disk
    finally:
        chain.cancel()


def test_the_fetchers_failure_is_raised_where_it_happened():
    chain = start_chain(FakeSource(pages=10, fail_at=4), Spool())
    pages = chain.pages()
    got = [next(pages).json()["result"][0]["n"] for _ in range(4)]
    assert got == [0, 1, 2, 3]
    with pytest.raises(MarketoError, match="page 4 refused"):
        next(pages)
    chain.cancel()


def test_a_failed_mint_is_raised_by_token():
    chain = start_chain(FakeSource(pages=3, fail_mint=True), Spool())
    with pytest.raises(MarketoError, match=r"pagingtoken\.json refused"):
        chain.token()
    chain.cancel()


def test_a_malformed_page_is_delivered_then_the_walk_stops():
    class LoopingSource(FakeSource):
        def next_page(self, token: str, response: requests.Response) -> str | None:
            msg = "same nextPageToken"
            raise MalformedResponse(msg)

    source = LoopingSource(pages=10)
    chain = start_chain(source, Spool())
    pages = chain.pages()
    assert next(pages).json()["result"][0]["n"] == 0
    with pytest.raises(MalformedResponse):
        next(pages)
    assert source.fetched == 1
    chain.cancel()


def test_the_emitted_chain_is_favoured_and_cancel_ends_the_fetcher():
    favours = Favours()
    spool = Spool(limit=1)
    chain = start_chain(FakeSource(pages=1000), spool, favours)
    pages = chain.pages()
    next(pages)
    assert favours.favoured == chain.thread.ident
    chain.cancel()
    chain.thread.join(timeout=10)
    assert not chain.thread.is_alive()
    assert favours.favoured is None
    assert spool.used == 0


def test_a_chain_planned_from_another_start_is_dropped():
    prefetcher = Prefetcher(Favours(), spool_limit=1)
    first = Plan("a", Start(since=None, token="x"), FakeSource(pages=50), None)  # type: ignore[arg-type]
    second = Plan("b", Start(since=None, token="t0"), FakeSource(pages=50), None)  # type: ignore[arg-type]
    prefetcher.start([first, second])
    try:
        assert prefetcher.claim("a", Start(since=None, token="y")) is None
        chain = prefetcher.claim("b", Start(since=None, token="t0"))
        assert chain is not None
        assert numbers(chain) == list(range(50))
        chain.cancel()
    finally:
        prefetcher.close()


def wait_until(condition: t.Callable[[], bool], seconds: float) -> None:
    done = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise TimeoutError


# -- the limiter and the token, shared by threads ------------------------------------------


def test_the_limiter_caps_calls_in_flight_and_counts_every_call_from_many_threads():
    stats = RunStats()
    limiter = CallLimiter(max_calls=10_000, window_s=20, max_concurrent=3, stats=stats)
    lock = threading.Lock()
    flying, peak = 0, 0
    release = threading.Event()

    def call() -> None:
        nonlocal flying, peak
        with limiter.slot():
            with lock:
                flying += 1
                peak = max(peak, flying)
            release.wait(0.002)
            with lock:
                flying -= 1
        stats.count(stats.calls, "activities.json")

    def worker() -> None:
        for _ in range(40):
            call()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert peak == 3
    assert stats.calls["activities.json"] == 320


def test_a_favoured_thread_is_never_kept_out_by_the_others():
    """Other threads stop short of the window's last places; the favoured one still gets one."""
    stats = RunStats()
    limiter = CallLimiter(max_calls=6, window_s=60, max_concurrent=6, stats=stats)
    limiter.call_s = 20.0  # one call every 20 s: three more calls in the window
    limiter.favour(threading.get_ident())
    started = threading.Event()

    def other() -> None:
        with limiter.slot():
            started.set()

    for _ in range(3):  # three places the others may use
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=10)
    blocked = threading.Thread(target=other, daemon=True)
    started.clear()
    blocked.start()
    blocked.join(timeout=1.0)
    assert blocked.is_alive()  # the fourth would take a place the favoured thread needs
    with limiter.slot():  # the favoured thread is admitted at once
        pass
    limiter.unfavour(threading.get_ident())  # nobody favoured: the other may go
    blocked.join(timeout=10)
    assert not blocked.is_alive()


# -- the token, shared by threads -----------------------------------------------------------


def test_a_refusal_of_an_older_token_keeps_the_renewed_one():
    auth = MarketoAuthenticator(
        identity_url="http://127.0.0.1:9/identity", client_id="a", client_secret="b", timeout=1
    )
    auth.access_token = "new"
    auth.last_refreshed = auth_now()
    auth.expires_in = 3600
    auth.invalidate("Bearer old")  # another thread's call, sent before the renewal
    assert auth.access_token == "new"
    prepared = auth(requests.Request("GET", "http://127.0.0.1:9/x").prepare())
    assert prepared.headers["Authorization"] == "Bearer new"
    auth.invalidate("Bearer new")
    assert auth.access_token is None


def auth_now():
    import datetime as dt  # noqa: PLC0415

    return dt.datetime.now(dt.timezone.utc)
