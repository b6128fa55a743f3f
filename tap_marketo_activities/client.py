"""The one place that talks to Marketo: auth, the error envelope, retries, paging, 414.

Every stream shares one :class:`MarketoAPI` per run (token, HTTP session, limiter,
quota budget, counters), because Marketo's limits are per instance, not per stream.
:class:`MarketoStream` plugs that into the SDK's ``RESTStream``: it overrides
``_request`` (the SDK's send step) because three Marketo behaviours need the
prepared request itself, which no public hook exposes:

* a request line over 8 KB is refused with HTTP 414, so such requests (long paging
  tokens) go out as ``POST ...?_method=GET`` with a form body instead;
* 601/602 arrive as HTTP 200 bodies; the token is renewed and the *same* request is
  resent once with the new header, without spending a retry;
* every call takes a slot from the shared rate/concurrency limiter and the budget.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import re
import typing as t
from urllib.parse import urlsplit, urlunsplit

import requests
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.streams import RESTStream

from tap_marketo_activities.auth import MarketoAuthenticator
from tap_marketo_activities.errors import (
    RETRIABLE_HTTP,
    Action,
    ConfigError,
    CursorRejected,
    MalformedResponse,
    MarketoError,
    MarketoRetriable,
    QuotaExhausted,
    classify,
)
from tap_marketo_activities.limits import CallLimiter, DailyBudget, RunStats, quota_reset_text
from tap_marketo_activities.records import format_datetime

if t.TYPE_CHECKING:
    from collections.abc import Generator, Mapping

    from backoff.types import Details
    from singer_sdk.helpers.types import Context

# Marketo's documented URI limit is 8 KB; stay a little under it for the request line.
MAX_URI_BYTES = 8000
_REQUEST_ID = re.compile(r'"requestId"\s*:\s*"([^"]{1,100})"')


def split_base_url(base_url: str) -> tuple[str, str]:
    """Return (REST root, identity root) from any form a user may paste.

    Accepts the instance root (``https://123-ABC-456.mktorest.com``), the REST
    endpoint as Admin > Web Services shows it (``.../rest``), the identity endpoint
    (``.../identity``), and a simulator's ``http://127.0.0.1:PORT``.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        msg = (
            f"base_url must be an http(s) URL such as https://123-ABC-456.mktorest.com, "
            f"got {base_url!r}."
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
    """Plain HTTP is allowed only to a loopback simulator."""
    parts = urlsplit(base_url)
    return parts.scheme == "http" and (parts.hostname or "") in {"127.0.0.1", "localhost", "::1"}


def request_id_of(response: requests.Response) -> str:
    """Marketo's requestId, even from a body that is not valid JSON."""
    match = _REQUEST_ID.search(response.text[:2000])
    return match.group(1) if match else "unknown"


def endpoint_name(url: str) -> str:
    """Short endpoint label for counters: 'activities.json', 'leadchanges.json', ..."""
    path = urlsplit(url).path
    return path.rsplit("/", 1)[-1] or path


class MarketoAPI:
    """Per-run connection to one Marketo instance, shared by every stream."""

    def __init__(self, config: Mapping[str, t.Any], logger: t.Any) -> None:
        self.rest_url, self.identity_url = split_base_url(config["base_url"])
        self.logger = logger
        self.timeout = float(config.get("request_timeout", 120))
        self.max_tries = int(config.get("max_retries", 8)) + 1
        self.retry_base_s = float(config.get("retry_base_seconds", 1.0))
        self.window_s = float(config.get("rate_limit_window_seconds", 20))
        self.verify = not is_loopback_http(config["base_url"])
        self.session = requests.Session()
        self.session.verify = True  # never switched off; plain HTTP only to loopback
        self.stats = RunStats()
        self.limiter = CallLimiter(
            max_calls=int(config.get("max_calls_per_20s", 50)),
            window_s=self.window_s,
            max_concurrent=int(config.get("max_concurrent_calls", 5)),
            stats=self.stats,
        )
        self.budget = DailyBudget(config.get("max_daily_calls"))
        self.auth = MarketoAuthenticator(
            identity_url=self.identity_url,
            client_id=str(config.get("client_id") or ""),
            client_secret=str(config.get("client_secret") or ""),
            timeout=self.timeout,
        )
        self.run_started: dt.datetime | None = None

    def observe(self, response: requests.Response) -> None:
        """Note the moment the run started, by the server's clock: it stamps the rows.

        The local clock is used only when the answer has no ``Date`` header; a skewed
        local clock must not cap bookmarks in a different time than Marketo's.
        """
        if self.run_started is not None:
            return
        server = None
        header = response.headers.get("Date")
        if header:
            try:
                server = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                server = None
        if server is not None and server.tzinfo is None:
            server = server.replace(tzinfo=dt.timezone.utc)
        self.run_started = server or dt.datetime.now(dt.timezone.utc)

    def now(self) -> dt.datetime:
        """The run's start by the server's clock, or the local clock before any call."""
        return self.run_started or dt.datetime.now(dt.timezone.utc)


class MarketoPaginator(BaseAPIPaginator[str | None]):
    """Follow ``nextPageToken`` while ``moreResult`` is true, through empty pages.

    Marketo scans activities in blocks and answers once per block, so a page can be
    short or empty while more rows lie ahead; only ``moreResult: false`` ends a walk.
    """

    def has_more(self, response: requests.Response) -> bool:
        """``moreResult`` ends a walk; without it, a full page with a token goes on.

        The OpenAPI definition marks ``moreResult`` optional. Stopping a walk early could
        skip late-committed rows further on, so when the flag is missing the tap keeps
        going after a full page, and a short page ends the walk.
        """
        body = envelope(response)
        if "moreResult" in body:
            return bool(body["moreResult"])
        rows = body.get("result") or []
        return bool(body.get("nextPageToken")) and len(rows) >= self.page_size

    def __init__(self, start_value: str | None, page_size: int) -> None:
        super().__init__(start_value)
        self.page_size = page_size

    def continue_if_empty(self, response: requests.Response) -> bool:
        """An empty page with ``moreResult: true`` is not the end."""
        return self.has_more(response)

    def get_next(self, response: requests.Response) -> str | None:
        """The position token of the next page."""
        token = envelope(response).get("nextPageToken")
        return str(token) if token else None

    def advance(self, response: requests.Response) -> None:
        """As the SDK does, but a token that does not move is Marketo's fault, said plainly."""
        try:
            super().advance(response)
        except RuntimeError:
            body = envelope(response)
            msg = (
                "Marketo returned the same nextPageToken again with moreResult true (requestId "
                f"{body.get('requestId', 'unknown')}); following it would loop forever. "
                "Stopping without moving the bookmark; the next run starts over from the saved "
                "state."
            )
            raise MalformedResponse(msg) from None


def envelope(response: requests.Response) -> dict[str, t.Any]:
    """The parsed JSON body, parsed once per response and cached on it."""
    cached = response.__dict__.get("_marketo_body")
    if cached is not None:
        return t.cast("dict[str, t.Any]", cached)
    try:
        body = response.json()
    except ValueError:
        msg = (
            f"Marketo answered {endpoint_name(response.url)} with a body that is not JSON "
            f"(HTTP {response.status_code}, requestId {request_id_of(response)}); stopping "
            "without moving the bookmark past it."
        )
        raise MalformedResponse(msg) from None
    if not isinstance(body, dict) or "success" not in body:
        msg = (
            f"Marketo answered {endpoint_name(response.url)} without the response envelope "
            f"(requestId {request_id_of(response)}); stopping without moving the bookmark."
        )
        raise MalformedResponse(msg)
    response.__dict__["_marketo_body"] = body
    return body


def first_error(body: dict[str, t.Any]) -> tuple[str, str]:
    """(code, message) of the first error, whatever shape Marketo gave it."""
    errors = body.get("errors")
    if not isinstance(errors, list) or not errors:
        return "unknown", "success false without errors"
    first = errors[0]
    if isinstance(first, dict):
        return str(first.get("code")), str(first.get("message", ""))
    return str(first), ""


def as_method_override(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Turn a long GET into Marketo's documented ``POST ...?_method=GET`` form."""
    url = str(request.url)
    parts = urlsplit(url)
    query = parts.query
    override = request.copy()
    override.method = "POST"
    override.url = urlunsplit((parts.scheme, parts.netloc, parts.path, "_method=GET", ""))
    override.headers["Content-Type"] = "application/x-www-form-urlencoded"
    override.prepare_body(data=query, files=None)
    override.headers["Content-Type"] = "application/x-www-form-urlencoded"
    return override


class MarketoStream(RESTStream[str]):
    """Base for all streams: Marketo's envelope, limits, retries and 414 fallback."""

    records_jsonpath = "$.result[*]"
    #: Set while sending the first page from a saved cursor, so a refusal is
    #: reported as :class:`CursorRejected` (and recovered from) instead of failing.
    _sending_saved_cursor = False

    @property
    def api(self) -> MarketoAPI:
        """The run's shared connection (held by the tap)."""
        return t.cast("MarketoAPI", self._tap.api)  # type: ignore[attr-defined]

    @property
    def url_base(self) -> str:
        """``https://<munchkin>.mktorest.com/rest``."""
        return self.api.rest_url

    @property
    def authenticator(self) -> MarketoAuthenticator:
        """One cached token for the whole run."""
        return self.api.auth

    @property
    def requests_session(self) -> requests.Session:
        """One session (connection pool) for the whole run."""
        return self.api.session

    @property
    def timeout(self) -> int:
        """Seconds before a call is abandoned and retried."""
        return int(self.api.timeout)

    # -- sending -------------------------------------------------------------------

    def _send(self, request: requests.PreparedRequest) -> requests.Response:
        api = self.api
        api.budget.spend()
        api.stats.calls[endpoint_name(str(request.url))] += 1
        with api.limiter.slot():
            response = self.requests_session.send(
                self.authenticator(request),
                timeout=self.timeout,
                allow_redirects=False,
                verify=api.verify,
            )
        if response.status_code < 400 or response.status_code >= 500:
            api.observe(response)
        return response

    def _request(
        self,
        prepared_request: requests.PreparedRequest,
        context: Context | None,
    ) -> requests.Response:
        """Send one call the way Marketo needs it (see the module docstring)."""
        request = prepared_request
        if len(request.path_url.encode()) > MAX_URI_BYTES:
            request = as_method_override(request)
        response = self._send(request)
        if response.status_code == 414 and request.method == "GET":
            self.logger.info("Request line too long for Marketo (HTTP 414); resending as POST")
            request = as_method_override(request)
            response = self._send(request)
        if response.status_code == 200 and self._error_action(response) is Action.REAUTH:
            self.api.stats.retries["token expired (601/602)"] += 1
            self.authenticator.invalidate()
            response = self._send(request)
        self.validate_response(response)
        return response

    @staticmethod
    def _error_action(response: requests.Response) -> Action | None:
        try:
            body = envelope(response)
        except MalformedResponse:
            return None
        if body.get("success"):
            return None
        return classify(first_error(body)[0]).action

    # -- reading answers -----------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        """Map HTTP statuses and Marketo's ``success: false`` envelope to actions."""
        status = response.status_code
        endpoint = endpoint_name(response.url)
        if status in RETRIABLE_HTTP or status >= 500:
            raise MarketoRetriable(f"HTTP {status} from {endpoint}", cause=f"HTTP {status}")
        if status >= 400:
            if self._sending_saved_cursor:
                msg = f"HTTP {status} for the saved cursor"
                raise CursorRejected(msg)
            msg = (
                f"Marketo answered {endpoint} with HTTP {status} (requestId "
                f"{request_id_of(response)}); check base_url."
            )
            raise MarketoError(msg)
        body = envelope(response)
        if body.get("success"):
            return
        code, message = first_error(body)
        info = classify(code)
        request_id = body.get("requestId", "unknown")
        if info.action is Action.EMPTY:
            return
        if info.action in {Action.RETRY, Action.REAUTH}:
            raise MarketoRetriable(f"{code} {info.meaning} ({message})", cause=code)
        if info.action is Action.WAIT_WINDOW:
            raise MarketoRetriable(f"606 {message}", cause=code, wait=self.api.window_s)
        if info.action is Action.BACK_OFF:
            raise MarketoRetriable(f"615 {message}", cause=code)
        if info.action is Action.QUOTA:
            msg = (
                f"Marketo's daily API quota is spent (607: {message}; requestId {request_id}). "
                f"{quota_reset_text()} Everything delivered so far is saved in the state; the "
                "next run resumes where this one stopped."
            )
            raise QuotaExhausted(msg)
        if self._sending_saved_cursor:
            msg = f"{code} {message}"
            raise CursorRejected(msg)
        raise MarketoError(self.fatal_message(code, message, request_id, info.advice))

    def fatal_message(self, code: str, message: str, request_id: str, advice: str) -> str:
        """The one line a person reads when Marketo refuses a call for good."""
        text = (
            f"Marketo refused {self.name} ({self.path}): {code} {classify(code).meaning}: "
            f"{message} (requestId {request_id})."
        )
        return f"{text} To fix: {advice}." if advice else text

    def page_rows(self, response: requests.Response) -> list[t.Any]:
        """The rows of a page; an absent ``result`` is an empty page.

        An answer with neither rows nor paging fields is malformed: going on would
        move past rows we never saw. 702 (no data) is an empty last page.
        """
        body = envelope(response)
        if not body.get("success"):  # only 702 gets here (validate_response)
            return []
        if not {"result", "nextPageToken", "moreResult"} & body.keys():
            msg = (
                f"Marketo answered {endpoint_name(response.url)} with neither rows nor paging "
                f"fields (requestId {body.get('requestId', 'unknown')}); stopping without "
                "moving the bookmark."
            )
            raise MalformedResponse(msg)
        rows = body.get("result") or []
        if not isinstance(rows, list):
            msg = (
                f"Marketo answered {endpoint_name(response.url)} with a result that is not a "
                f"list (requestId {body.get('requestId', 'unknown')})."
            )
            raise MalformedResponse(msg)
        return rows

    def required_result(self, response: requests.Response) -> list[t.Any]:
        """The ``result`` array of a call that must have one (types, usage)."""
        body = envelope(response)
        rows = body.get("result")
        if not isinstance(rows, list):
            msg = (
                f"Marketo answered {endpoint_name(response.url)} without a result list "
                f"(requestId {body.get('requestId', 'unknown')}); stopping."
            )
            raise MalformedResponse(msg)
        return rows

    def call(self, path: str, params: dict[str, t.Any] | None = None) -> requests.Response:
        """One GET outside the paginated walk (types, usage, paging token), with retries."""
        request = self.build_prepared_request(
            method="GET", url=f"{self.url_base}{path}", params=params or {}
        )
        decorated = self.request_decorator(self._request)
        return t.cast("requests.Response", decorated(request, None))

    def mint_token(self, since: dt.datetime) -> str:
        """A date-based paging token for rows stamped at or after ``since``."""
        response = self.call(
            "/v1/activities/pagingtoken.json", {"sinceDatetime": format_datetime(since)}
        )
        token = envelope(response).get("nextPageToken")
        if not token:
            msg = (
                "Marketo answered pagingtoken.json without a nextPageToken (requestId "
                f"{envelope(response).get('requestId', 'unknown')})."
            )
            raise MalformedResponse(msg)
        return str(token)

    # -- retries -------------------------------------------------------------------

    def backoff_max_tries(self) -> int:
        """``max_retries`` + 1 attempts in all."""
        return self.api.max_tries

    def backoff_wait_generator(self) -> Generator[float, t.Any, None]:
        """Exponential from ``retry_base_seconds``; a 606 waits out the whole window."""
        base = self.api.retry_base_s

        def waits() -> Generator[float, t.Any, None]:
            attempt = 0
            error = yield 0.0
            while True:
                wait = getattr(error, "wait", None)
                if wait is None:
                    wait = min(base * (2**attempt), 60.0)
                attempt += 1
                error = yield wait

        # backoff primes the generator with send(None), then sends each exception.
        return waits()

    def backoff_jitter(self, value: float) -> float:
        """Full-range jitter on top of the wait, so retries from many taps spread out."""
        return value + random.uniform(0, min(value, 1.0))

    def backoff_handler(self, details: Details) -> None:
        """Log the cause and wait, count the retry; never log request arguments."""
        error = details.get("exception")
        cause = getattr(error, "cause", None) or type(error).__name__
        self.api.stats.retries[str(cause)] += 1
        if isinstance(error, MarketoRetriable) and error.wait and str(cause) == "606":
            self.api.stats.waited_s += float(details.get("wait") or 0)
        self.logger.warning(
            "Retrying %s in %.1f s after %s (attempt %d of %d)",
            self.name,
            details.get("wait") or 0.0,
            _describe(error),
            details.get("tries", 0),
            self.backoff_max_tries(),
        )

    def request_decorator(self, func: t.Callable) -> t.Callable:
        """The SDK's backoff, plus a clear message once the retries are spent."""
        decorated = super().request_decorator(func)

        def call(*args: t.Any, **kwargs: t.Any) -> t.Any:
            try:
                return decorated(*args, **kwargs)
            except MalformedResponse as exc:
                if self._sending_saved_cursor:
                    raise CursorRejected(str(exc)) from None
                raise
            except (RetriableAPIError, requests.RequestException, ConnectionError) as exc:
                if self._sending_saved_cursor:
                    # Marketo's answer to a stale token is undocumented; whatever keeps the
                    # first page from a saved cursor from working, restart from the recovery
                    # time rather than fail every run on the same cursor.
                    msg = f"{_describe(exc)} after {self.backoff_max_tries()} attempts"
                    raise CursorRejected(msg) from None
                msg = (
                    f"Gave up on {self.name} after {self.backoff_max_tries()} attempts: "
                    f"{_describe(exc)}. Everything delivered before this point is saved in "
                    "the state; the next run resumes there. Raise max_retries if Marketo is "
                    "having a long outage."
                )
                raise MarketoError(msg) from None

        return call


def _describe(error: BaseException | None) -> str:
    """A short cause without URLs (a URL can hold a paging token or a secret)."""
    if error is None:
        return "an error"
    if isinstance(error, MarketoRetriable):
        return str(error)
    if isinstance(error, requests.RequestException):
        return f"{type(error).__name__} (network)"
    return type(error).__name__
