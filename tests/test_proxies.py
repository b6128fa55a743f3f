"""The environment's proxy and CA settings reach every call of a run.

The tap reads them once per run rather than per call (transport.MarketoSession); these runs
prove that a proxy set for the process is still used for the token, the paging tokens and
every page, that a host listed in NO_PROXY still bypasses it, and that REQUESTS_CA_BUNDLE
(the CA of a proxy that re-signs TLS) is what every call verifies against.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
import urllib3
from helpers import expected_guids, sim_config

from tap_marketo_activities.errors import untrusted_certificate
from tap_marketo_activities.simulator import World

NOW = "2024-04-12T16:00:00Z"


class ForwardingProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy on 127.0.0.1 that counts the calls it relays."""

    daemon_threads = True

    def __init__(self, upstream: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.paths: list[str] = []
        #: Where to relay: the absolute URL of each request (a forward proxy), or this
        #: origin (a TLS front of a plain-HTTP server).
        self.upstream = upstream
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Relay(BaseHTTPRequestHandler):
    server: ForwardingProxy
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        # A forward proxy is sent the absolute URL; a front, the path.
        target = urlsplit(
            self.path if self.server.upstream is None else self.server.upstream + self.path
        )
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


def serving(server: ForwardingProxy):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def proxy():
    yield from serving(ForwardingProxy())


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


def certificate(folder, ip: str):
    """A self-signed certificate (its own CA) for ``ip``, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes this test's certificate")
    cert, key = folder / f"cert-{ip}.pem", folder / f"key-{ip}.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={ip}"),
            *("-addext", f"subjectAltName=IP:{ip}"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_front_of(sim, cert, key):
    """``sim`` behind HTTPS on 127.0.0.1 with this certificate: (base_url, running server)."""
    server = ForwardingProxy(upstream=sim.base_url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in serving(server):
        yield f"https://127.0.0.1:{running.server_address[1]}"


@pytest.fixture
def tls_front(afternoon, tmp_path):
    """The simulator behind HTTPS on 127.0.0.1, with a certificate of a CA no one trusts."""
    cert, key = certificate(tmp_path, "127.0.0.1")
    for base_url in tls_front_of(afternoon, cert, key):
        yield base_url, cert


def test_every_call_verifies_tls_against_requests_ca_bundle(afternoon, tls_front, run_tap):
    base_url, ca = tls_front
    config = sim_config(afternoon, base_url=base_url)
    trusted = run_tap(config, env={"REQUESTS_CA_BUNDLE": str(ca), "NO_PROXY": "127.0.0.1"})
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    delivered = sorted(r["marketoGUID"] for r in trusted.records["activities"])
    assert delivered == expected_guids(afternoon, "activities", "2024-04-12T12:00:00Z")
    untrusted = run_tap(config, env={"REQUESTS_CA_BUNDLE": "", "NO_PROXY": "127.0.0.1"})
    assert untrusted.returncode != 0
    assert "The TLS certificate of 127.0.0.1 is not trusted (" in untrusted.stderr
    assert "set REQUESTS_CA_BUNDLE" in untrusted.stderr
    assert "Retrying" not in untrusted.stderr  # a certificate does not get better by waiting
    assert "Traceback" not in untrusted.stderr
    assert not untrusted.records
    assert not untrusted.states


def test_a_certificate_for_another_host_points_at_base_url(afternoon, tmp_path, run_tap):
    cert, key = certificate(tmp_path, "127.0.0.2")
    for base_url in tls_front_of(afternoon, cert, key):
        env = {"REQUESTS_CA_BUNDLE": str(cert), "NO_PROXY": "127.0.0.1"}
        run = run_tap(sim_config(afternoon, base_url=base_url), env=env)
    assert run.returncode != 0
    assert "The TLS certificate of 127.0.0.1 is not trusted (" in run.stderr
    assert "issued for another host: check that base_url names your instance" in run.stderr
    assert "Traceback" not in run.stderr
    assert not run.records


def test_a_ca_bundle_that_is_not_there_is_named(afternoon, run_tap):
    run = run_tap(sim_config(afternoon), env={"REQUESTS_CA_BUNDLE": "/nonexistent/ca.pem"})
    assert run.returncode != 0
    assert "REQUESTS_CA_BUNDLE names /nonexistent/ca.pem, which does not exist" in run.stderr
    assert "Traceback" not in run.stderr
    assert not run.records


def test_only_a_certificate_that_does_not_verify_stops_a_run():
    assert untrusted_certificate(requests.exceptions.SSLError("EOF in violation"), "h") is None
    assert untrusted_certificate(requests.exceptions.ConnectionError("refused"), "h") is None
    failure = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED]")
    failure.verify_code, failure.verify_message = 19, "self-signed certificate in chain"
    nested = urllib3.exceptions.MaxRetryError(
        None,
        "/identity/oauth/token?client_secret=s3cret",
        reason=urllib3.exceptions.SSLError(failure),
    )
    refusal = untrusted_certificate(requests.exceptions.SSLError(nested), "h.mktorest.com")
    assert refusal is not None
    assert str(refusal) == (
        "The TLS certificate of h.mktorest.com is not trusted (self-signed certificate in "
        "chain). If a proxy on your network re-signs TLS, set REQUESTS_CA_BUNDLE to a PEM file "
        "with its CA certificate."
    )
