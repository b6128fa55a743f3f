"""HTTP for the simulator: a threaded ``http.server`` on 127.0.0.1 answering for the running
instance (``instance.py``'s ``MarketoSimulator``, seen here through :class:`Served`).

Order of checks on a REST call (identity calls skip all but the scripted faults):
1. request line over 8192 bytes -> HTTP 414, no body (Marketo's URI limit is 8 KB);
2. a scripted fault for this path (``inject``), else a random one (``Faults``);
3. the access token: ``Authorization: Bearer`` or the deprecated ``?access_token=`` (accepted,
   counted); missing or unknown -> 601, expired -> 602;
4. concurrency (615), trailing-window rate (606), daily quota (607), in that order;
5. ``latency_s`` of real sleep (while the call counts as in flight), then the endpoint.
Every answer carries the VIRTUAL clock in its ``Date`` header: the tap takes the server's Date
as the moment its run started.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import time
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from . import bulk
from . import catalog as cat
from .endpoints import ROUTES, ApiError, Params
from .faults import HTTP_STATUS_KINDS, Faults, FaultScript
from .leads import ROUTES as LEAD_ROUTES
from .protocols import Instance

if TYPE_CHECKING:
    from .bulk_files import FileAnswer
    from .identity import AccessTokens

MAX_REQUEST_LINE = 8192
MAX_BODY = 1024 * 1024  # Marketo's 1 MB body limit (413 above it)
IDENTITY_PATH = "/identity/oauth/token"
JSON_TYPE = "application/json;charset=UTF-8"
_GATEWAY_PAGES = {
    "500": "Internal Server Error",
    "502": "Bad Gateway",
    "503": "Service Unavailable",
    "504": "Gateway Timeout",
}


class Served(Instance, Protocol):
    """What the handler reads from the running instance, beyond what its routes read."""

    client_secret: str
    faults: Faults
    script: FaultScript
    tokens: AccessTokens
    bulk: bulk.BulkExports
    rate_limit_calls: int
    rate_limit_window_s: float
    max_concurrency: int
    daily_quota: int
    latency_s: float
    log_requests: bool

    def next_request_id(self) -> str:
        """A Marketo-shaped requestId, stamped with the virtual clock."""
        ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handler threads must not hold up stop()
    allow_reuse_address = True
    request_queue_size = 128
    sim: Served

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is normal (a killed tap); say nothing."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MarketoSimulator/1"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections end eventually
    server: _Server
    _raw_body: bytes = b""

    # ------------------------------------------------------------ http.server hooks
    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header: the VIRTUAL now (RFC 7231 IMF-fixdate)."""
        del timestamp
        return format_datetime(self.server.sim.clock.now(), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sim.log_requests:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------ dispatch
    def _dispatch(self) -> None:
        sim = self.server.sim
        url = urlsplit(self.path)
        path = url.path
        sim.counter_book.call(path)
        if len(self.requestline.encode("latin-1", "replace")) > MAX_REQUEST_LINE:
            self._discard_body()
            self.close_connection = True
            sim.counter_book.error("HTTP414")
            self._send(414, b"", "text/plain")
            return
        params: Params = parse_qs(url.query, keep_blank_values=True)
        form, content_type = self._form_body()
        if form is None:
            return
        override = self.command == "POST" and params.get("_method", [""])[-1].upper() == "GET"
        params.pop("_method", None)
        if override:
            sim.counter_book.add("method_override_posts")
        for name, values in form.items():
            params.setdefault(name, []).extend(values)
        if path == IDENTITY_PATH:
            self._identity(params)
            return
        is_bulk = path.startswith("/bulk/")
        if not path.startswith("/rest/") and not is_bulk:
            sim.counter_book.error("HTTP404")
            self._send(404, b"Not Found", "text/plain")
            return
        in_flight = sim.limits.enter()
        sim.counter_book.concurrency(in_flight)
        try:
            if is_bulk:
                self._bulk(path, params, in_flight)
            else:
                self._rest(path, params, in_flight, override, content_type)
        finally:
            sim.limits.leave()

    def _rest(
        self, path: str, params: Params, in_flight: int, override: bool, content_type: str
    ) -> None:
        sim = self.server.sim
        book = sim.counter_book
        kind = self._draw_fault(path)
        if kind is not None and kind not in ("no_result", "bad_record"):
            return
        if not self._authorized(params):
            return
        if self.command == "POST" and not override:
            self._error("605")
            return
        has_body = self.headers.get("Content-Length", "0") != "0"
        if override and has_body and "x-www-form-urlencoded" not in content_type:
            self._error("612")
            return
        if not self._within_limits(in_flight):
            return
        handler = ROUTES.get(path) or LEAD_ROUTES.get(path)
        if handler is None:
            self._error("610")
            return
        try:
            body = handler(sim, params)
        except ApiError as exc:
            self._error(exc.code, exc.message)
            return
        if kind == "no_result":
            book.error("no_result", injected="no_result")
            body = {"success": True}
        elif kind == "bad_record":
            book.error("bad_record", injected="bad_record")
            result = body.setdefault("result", [])
            if not result:
                result.append({"leadId": 1000, "activityTypeId": 1, "attributes": []})
            result[0].pop("marketoGUID", None)
            result[0].pop("activityDate", None)
        self._json(200, body)

    def _identity(self, params: Params) -> None:
        sim = self.server.sim
        book = sim.counter_book
        book.add("identity_calls")
        kind = sim.script.take(IDENTITY_PATH)
        if kind == "no_result":
            book.error("no_result", injected="no_result")
            self._json(200, {}, envelope=False)
            return
        if kind is not None and kind not in ("slow", "bad_record"):
            self._fault(kind)
            return
        if kind == "slow":
            book.injected_only("slow")
            time.sleep(sim.faults.slow_s)

        def one(name: str) -> str | None:
            values = params.get(name)
            return values[-1] if values else None

        if one("grant_type") != "client_credentials":
            book.error("HTTP400")
            self._json(
                400,
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"},
                envelope=False,
            )
            return
        if one("client_id") != sim.client_id or one("client_secret") != sim.client_secret:
            book.error("HTTP401")
            self._json(
                401,
                {"error": "invalid_client", "error_description": "Bad client credentials"},
                envelope=False,
            )
            return
        token, expires_in, fresh = sim.tokens.issue(sim.client_id)
        if fresh:
            book.add("tokens_issued")
        self._json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": expires_in,
                "scope": sim.scope,
            },
            envelope=False,
        )

    def _draw_fault(self, path: str) -> str | None:
        """The fault for this call; already answered unless None, no_result or bad_record."""
        sim = self.server.sim
        injected = sim.script.take(path)
        kind = injected if injected is not None else sim.faults.draw()
        if kind == "slow":
            sim.counter_book.injected_only("slow")
            time.sleep(sim.faults.slow_s)
            return None
        if kind is not None and kind not in ("no_result", "bad_record"):
            self._fault(kind)
        return kind

    def _authorized(self, params: Params) -> bool:
        """Check the access token; answer 601/602 and return False when it fails."""
        sim = self.server.sim
        token = self._access_token(params)
        if token is None:
            self._error("601", "Access token not specified", enforced=True)
            return False
        problem = sim.tokens.check(token)
        if problem is not None:
            self._error(problem, enforced=True)
            return False
        return True

    def _within_limits(self, in_flight: int) -> bool:
        """Concurrency, rate and daily quota (615, 606, 607); then the configured latency."""
        sim = self.server.sim
        if in_flight > sim.max_concurrency:
            self._error("615", enforced=True)
            return False
        if not sim.limits.admit_rate(sim.rate_limit_calls, sim.rate_limit_window_s):
            message = cat.error_message(
                "606", calls=sim.rate_limit_calls, window=_number(sim.rate_limit_window_s)
            )
            self._error("606", message, enforced=True)
            return False
        if not sim.limits.admit_quota(sim.daily_quota, sim.clock.now()):
            self._error("607", cat.error_message("607", quota=sim.daily_quota), enforced=True)
            return False
        if sim.latency_s > 0:
            time.sleep(sim.latency_s)
        return True

    def _bulk(self, path: str, params: Params, in_flight: int) -> None:
        """Bulk export calls: same faults, token and limits as REST; JSON bodies; files."""
        sim = self.server.sim
        target = bulk.route(path)
        kind = self._draw_fault(path)
        if kind is not None and kind not in ("no_result", "bad_record"):
            return
        if not self._authorized(params) or not self._within_limits(in_flight):
            return
        expected_method = "GET" if target and target[0] in ("status", "file", "list") else "POST"
        if target is None or self.command != expected_method:
            self._error("610")
            return
        action, export_id = target
        exports, owner = sim.bulk, sim.client_id
        if export_id is not None and export_id in exports.vanished:
            self._json(404, {"message": "Not Found"})  # a job whose retention has ended
            return
        try:
            if action == "file":
                assert export_id is not None
                answer = exports.file(sim, owner, export_id, self.headers.get("Range"))
                self._send_file(answer)
                return
            if action == "create":
                body = exports.create(sim, owner, self._raw_body)
            elif action == "leads_create":
                body = exports.leads_create(sim, owner, self._raw_body)
            elif action == "list":
                body = exports.listing(sim, owner, params)
            else:
                assert export_id is not None
                body = getattr(exports, action)(sim, owner, export_id)
        except bulk.BulkError as exc:
            self._error(exc.code, exc.message)
            return
        if kind == "no_result":
            sim.counter_book.error("no_result", injected="no_result")
            body = {"success": True}
        self._json(200, body)

    def _send_file(self, answer: FileAnswer) -> None:
        """Stream a byte range from disk; a ``break_after`` answer stops early and resets."""
        book = self.server.sim.counter_book
        if answer.path is None:
            book.error("HTTP404")
            self._send(404, b"Not Found", "text/plain")
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", "text/csv;charset=UTF-8")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(answer.length))
        if answer.status == 206:
            self.send_header("Content-Range", f"bytes {answer.start}-{answer.end}/{answer.total}")
        self.end_headers()
        left = answer.length if answer.break_after is None else answer.break_after
        if answer.status == 206:
            book.add("bulk_range_answers")
        with answer.path.open("rb") as source:
            source.seek(answer.start)
            while left > 0:
                chunk = source.read(min(left, 1 << 16))
                if not chunk:
                    break
                self.wfile.write(chunk)
                book.add("bulk_bytes_served", len(chunk))
                left -= len(chunk)
        if answer.break_after is not None:
            book.error("reset", injected="broken_download")
            self.wfile.flush()
            self._fault("drop")

    # ------------------------------------------------------------ pieces
    def _access_token(self, params: Params) -> str | None:
        header = self.headers.get("Authorization", "")
        query = params.pop("access_token", None)
        if query:
            self.server.sim.counter_book.add("access_token_query_uses")
        if header[:7].lower() == "bearer " and header[7:].strip():
            return header[7:].strip()
        return query[-1] if query else None

    def _form_body(self) -> tuple[Params | None, str]:
        """The form-encoded body of a POST ({} when none); None when already answered (413)."""
        content_type = self.headers.get("Content-Type", "")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self.server.sim.counter_book.error("HTTP413")
            self._send(413, b"", "text/plain")
            return None, content_type
        raw = self.rfile.read(length) if length else b""
        self._raw_body = raw
        if raw and "x-www-form-urlencoded" in content_type:
            return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True), content_type
        return {}, content_type

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)

    def _fault(self, kind: str) -> None:
        book = self.server.sim.counter_book
        if kind in ("reset", "drop"):
            if kind == "reset":
                book.error("reset", injected="reset")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "malformed":
            book.error("malformed", injected="malformed")
            rid = self.server.sim.next_request_id()
            self._send(200, f'{{"requestId":"{rid}","success":tr'.encode(), JSON_TYPE)
            return
        if kind in HTTP_STATUS_KINDS:
            book.error(f"HTTP{kind}", injected=kind)
            if kind == "414":
                self._send(414, b"", "text/plain")
                return
            page = _GATEWAY_PAGES.get(kind, "Error")
            html = f"<html><body><h1>{kind} {page}</h1></body></html>".encode()
            self._send(int(kind), html, "text/html")
            return
        self._error(kind, injected=True)

    def _error(
        self,
        code: str,
        message: str | None = None,
        *,
        injected: bool = False,
        enforced: bool = False,
    ) -> None:
        book = self.server.sim.counter_book
        book.error(code, injected=code if injected else None, enforced=enforced)
        text = message or cat.error_message(code)
        if injected and code == "606":
            sim = self.server.sim
            text = cat.error_message(
                "606", calls=sim.rate_limit_calls, window=_number(sim.rate_limit_window_s)
            )
        elif injected and code == "607":
            text = cat.error_message("607", quota=self.server.sim.daily_quota)
        self._json(200, {"success": False, "errors": [{"code": code, "message": text}]})

    def _json(self, status: int, body: dict[str, Any], *, envelope: bool = True) -> None:
        if envelope:
            body = {"requestId": self.server.sim.next_request_id(), **body}
        self._send(status, json.dumps(body, separators=(",", ":")).encode(), JSON_TYPE)

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload:
            self.wfile.write(payload)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
