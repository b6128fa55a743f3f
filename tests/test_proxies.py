"""The environment's HTTP proxy carries every call of a run, and NO_PROXY still exempts a host.

The tap works the proxies out once per origin rather than per call (transport.MarketoSession);
these runs prove that a proxy set for the process is still used for the token, the paging
tokens and every page, and that a host listed in NO_PROXY still bypasses it.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from helpers import expected_guids, sim_config

from tap_marketo_activities.simulator import World

NOW = "2024-04-12T16:00:00Z"


class ForwardingProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy on 127.0.0.1 that counts the calls it relays."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.paths: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Relay(BaseHTTPRequestHandler):
    server: ForwardingProxy
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        target = urlsplit(self.path)  # a proxy is sent the absolute URL
        with self.server._lock:
            self.server.paths.append(target.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response_only(answer.status)  # the upstream's own Date, not ours
        for name, value in answer.getheaders():
            if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = _relay

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy():
    server = ForwardingProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def afternoon(simulator):
    return simulator(World.seed_afternoon(rows=6000, seed=6), now=NOW)


def test_every_call_of_a_run_goes_through_the_environments_proxy(afternoon, proxy, run_tap):
    run = run_tap(
        sim_config(afternoon),
        env={"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    delivered = sorted(r["marketoGUID"] for r in run.records["activities"])
    assert delivered == expected_guids(afternoon, "activities", "2024-04-12T12:00:00Z")
    counters = afternoon.counters
    relayed_pages = [p for p in proxy.paths if p.endswith("/activities.json")]
    assert len(relayed_pages) > 3  # several pages: the proxy is used after the first call too
    assert len(proxy.paths) == counters.rest_calls + counters.identity_calls


def test_a_host_in_no_proxy_is_not_proxied(afternoon, proxy, run_tap):
    run = run_tap(
        sim_config(afternoon),
        env={
            "HTTP_PROXY": proxy.url,
            "http_proxy": proxy.url,
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        },
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.records["activities"]
    assert proxy.paths == []
