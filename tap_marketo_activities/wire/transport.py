"""The wire to one Marketo instance: base URLs, the per-run connection, and the adapter.

Marketo's limits are per instance, not per stream, so every stream of a run shares one
:class:`MarketoConnection` (token, session, limiter, quota budget, counters). The
:class:`MarketoAdapter` is mounted on that session, the pattern requests documents for
transport behaviour, so it sees every call whichever SDK path sends it (paged walks,
one-off calls) and the SDK keeps its own request loop, retries and request metrics.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import os
import threading
import time
import typing as t
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import resolve_proxies
from typing_extensions import override

from tap_marketo_activities.errors import ConfigError
from tap_marketo_activities.wire.auth import MarketoAuthenticator
from tap_marketo_activities.wire.limits import CallLimiter, DailyBudget, RunStats, WaitNotice

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

# Marketo's documented URI limit is 8 KB; stay a little under it for the request line.
MAX_URI_BYTES = 8000
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def split_base_url(base_url: str) -> tuple[str, str]:
    """Return (REST root, identity root) from any form a user may paste.

    Accepts the instance root (``https://123-ABC-456.mktorest.com``), the REST
    endpoint as Admin > Web Services shows it (``.../rest``), the identity endpoint
    (``.../identity``), and a simulator's ``http://127.0.0.1:PORT``. The message of a
    refusal never repeats the URL: it may hold a user name and password.
    """
    parts = urlsplit(base_url.strip())  # urlsplit lowercases the scheme
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        problem = (
            f"starts with '{parts.scheme}:'"
            if parts.scheme and parts.scheme.isascii() and parts.scheme.isalnum()
            else "has no scheme or host"
        )
        msg = (
            "base_url must be an http(s) URL such as https://123-ABC-456.mktorest.com; "
            f"this one {problem}."
        )
        raise ConfigError(msg)
    path = parts.path.rstrip("/")
    for suffix in ("/rest/v1", "/rest", "/identity"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    root = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return f"{root}/rest", f"{root}/identity"


def is_loopback_http(base_url: str) -> bool:
    """Plain HTTP is allowed only to a loopback simulator (127.0.0.0/8, ::1, localhost)."""
    parts = urlsplit(base_url.strip())
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> None:
    """Refuse a base_url the credentials must never be sent to, judged on the parsed URL.

    The scheme is compared after parsing (``HTTP://``, `` http://`` are plain HTTP too):
    the identity call puts ``client_secret`` in the query string, so plain HTTP is only
    for a simulator on this machine. A user name or password in the URL is refused
    without being repeated.
    """
    split_base_url(base_url)
    parts = urlsplit(base_url.strip())
    if "@" in parts.netloc:
        msg = (
            "base_url must not contain a user name or password (Marketo takes client_id and "
            "client_secret instead); give just https://<munchkin-id>.mktorest.com."
        )
        raise ConfigError(msg)
    if parts.scheme == "http" and not is_loopback_http(base_url):
        msg = (
            "base_url must use https: (plain http is accepted only for a simulator on this "
            "machine, such as http://127.0.0.1:PORT)."
        )
        raise ConfigError(msg)


def endpoint_name(url: str) -> str:
    """Short endpoint label for counters and messages: 'activities.json', ..."""
    path = urlsplit(url).path
    return path.rsplit("/", 1)[-1] or path


def method_override_url(url: str) -> tuple[str, str]:
    """(URL, form body) of Marketo's documented ``POST ...?_method=GET`` form of a GET.

    Marketo refuses request lines over 8 KB (HTTP 414); long paging tokens and type
    lists get there. The same call with its query moved into a form body is accepted.
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "_method=GET", "")), parts.query


def is_too_long(url: str) -> bool:
    """True when a GET's request line would pass Marketo's URI limit."""
    parts = urlsplit(url)
    return len(parts.path.encode()) + 1 + len(parts.query.encode()) > MAX_URI_BYTES


def as_method_override(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A prepared GET rewritten into the ``POST ...?_method=GET`` form (after a 414)."""
    url, body = method_override_url(str(request.url))
    override = request.copy()
    override.method = "POST"
    override.url = url
    override.headers["Content-Type"] = FORM_CONTENT_TYPE
    override.prepare_body(data=body, files=None)
    return override


class MarketoConnection:
    """Per-run connection to one Marketo instance, shared by every stream."""

    def __init__(
        self,
        config: Mapping[str, t.Any],
        logger: logging.Logger,
        read_usage: t.Callable[[], int] | None = None,
    ) -> None:
        self.rest_url, self.identity_url = split_base_url(config["base_url"])
        self.logger = logger
        self.timeout = int(config["request_timeout"])
        self.max_tries = int(config["max_retries"]) + 1
        self.retry_base_s = float(config["retry_base_seconds"])
        self.window_s = float(config["rate_limit_window_seconds"])
        self.stats = RunStats()
        self.limiter = CallLimiter(
            max_calls=int(config["max_calls_per_20s"]),
            window_s=self.window_s,
            max_concurrent=int(config["max_concurrent_calls"]),
            stats=self.stats,
            notice=WaitNotice(logger),
        )
        self.budget = DailyBudget(config.get("max_daily_calls"), read_usage)
        self.auth = MarketoAuthenticator(
            identity_url=self.identity_url,
            client_id=str(config.get("client_id") or ""),
            client_secret=str(config.get("client_secret") or ""),
            timeout=self.timeout,
            max_tries=self.max_tries,
            retry_base_s=self.retry_base_s,
            on_retry=self._count_retry,
        )
        # TLS verification stays on (requests' default); plain HTTP is only ever
        # accepted for a loopback simulator, where there is no TLS to verify.
        self.session = MarketoSession()
        adapter = MarketoAdapter(self)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.run_started: dt.datetime | None = None
        self._clock_lock = threading.Lock()

    def _count_retry(self, cause: str) -> None:
        self.stats.count(self.stats.retries, cause)

    def observe(self, response: requests.Response) -> None:
        """Note the moment the run started, by the server's clock: it stamps the rows.

        The local clock is used only when the answer has no ``Date`` header; a skewed
        local clock must not cap bookmarks in a different time than Marketo's.
        """
        if self.run_started is not None:
            return
        with self._clock_lock:  # the first answer of any thread sets it, once
            if self.run_started is None:
                self.run_started = server_time(response)

    def now(self) -> dt.datetime:
        """The run's start by the server's clock, or the local clock before any call."""
        return self.run_started or dt.datetime.now(dt.timezone.utc)


def server_time(response: requests.Response) -> dt.datetime:
    """The server's clock from an answer's ``Date`` header, else the local clock."""
    server = None
    header = response.headers.get("Date")
    if header:
        try:
            server = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            server = None
    if server is not None and server.tzinfo is None:
        server = server.replace(tzinfo=dt.timezone.utc)
    return server or dt.datetime.now(dt.timezone.utc)


#: Where the adapter leaves the seconds a call took once the limiter let it go.
CALL_SECONDS = "_marketo_call_seconds"


class MarketoSession(requests.Session):
    """A session that reads the environment's proxy and CA settings once, as requests would.

    The SDK sends through ``Session.send``, which reads ``HTTP(S)_PROXY``, ``ALL_PROXY`` and
    ``NO_PROXY`` anew on every call (three walks of ``os.environ``, about 1 us of every
    record's cost at 300 rows a call) and never reads ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` (only ``Session.request`` does). The process environment does not
    change during a run: the proxies for an origin are worked out once, and the CA bundle
    named there is what every call verifies against, as for a plain ``requests.get``.
    Proxies or ``verify`` passed to ``send`` explicitly are used as they are.
    """

    def __init__(self) -> None:
        super().__init__()
        self._origin_proxies: dict[str, dict[str, str]] = {}
        if self.trust_env:
            for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                bundle = os.environ.get(variable)
                if not bundle:
                    continue
                if not os.path.exists(bundle):
                    msg = (
                        f"{variable} names {bundle}, which does not exist: give the path of a "
                        "PEM file with the CA certificates to trust, or unset it."
                    )
                    raise ConfigError(msg)
                self.verify = bundle
                break

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        if "proxies" not in kwargs and request.url:
            parts = urlsplit(str(request.url))
            origin = f"{parts.scheme}://{parts.netloc}"
            proxies = self._origin_proxies.get(origin)
            if proxies is None:
                proxies = resolve_proxies(request, dict(self.proxies), self.trust_env)
                self._origin_proxies[origin] = proxies
            kwargs["proxies"] = dict(proxies)
        response = super().send(request, **kwargs)
        # ``elapsed`` (the SDK's http_request_duration) is the call alone, not the time it
        # waited on our limiter before it: that wait is its own figure ("waited on limits").
        call_s = getattr(response, CALL_SECONDS, None)
        if call_s is not None:
            response.elapsed = dt.timedelta(seconds=call_s)
        return response


class MarketoAdapter(HTTPAdapter):
    """Every call of the run passes here: budget, counters, limiter, 414 fallback, clock.

    The SDK builds, authenticates, retries and times requests; this adapter only adds
    what Marketo's shared limits need per call, and resends a GET refused with 414
    in its ``POST ...?_method=GET`` form (a server's limit can be lower than the 8 KB
    that ``get_http_request`` plans for).
    """

    def __init__(self, connection: MarketoConnection) -> None:
        super().__init__()
        self.connection = connection

    @override
    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one call within the limits, and once more in POST form after a 414."""
        options: dict[str, t.Any] = {
            "stream": stream,
            "timeout": timeout,
            "verify": verify,
            "cert": cert,
            "proxies": proxies,
        }
        response = self._send_counted(request, options)
        if response.status_code == 414 and request.method == "GET":
            self.connection.logger.info(
                "Request line too long for Marketo (HTTP 414); resending as POST"
            )
            response.close()
            response = self._send_counted(as_method_override(request), options)
        if response.status_code < 400 or response.status_code >= 500:
            self.connection.observe(response)
        return response

    def _send_counted(
        self, request: requests.PreparedRequest, options: dict[str, t.Any]
    ) -> requests.Response:
        connection = self.connection
        connection.budget.spend()
        connection.stats.count(connection.stats.calls, endpoint_name(str(request.url)))
        with connection.limiter.slot():
            started = time.perf_counter()
            response = super().send(request, **options)
            setattr(response, CALL_SECONDS, time.perf_counter() - started)
            return response
