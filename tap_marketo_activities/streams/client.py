"""The stream base every Marketo stream shares, and the paginator for its page walks.

Everything here is one of the SDK's public hooks: the run's session and authenticator
come from the shared :class:`~tap_marketo_activities.wire.transport.MarketoConnection`,
long requests take their ``POST ...?_method=GET`` form in ``get_http_request``,
Marketo's envelope is read in ``validate_response``, and a refused token (601/602)
is renewed and the call resent at once by ``request_decorator``, without spending
one of the user's ``max_retries``.
"""

from __future__ import annotations

import logging
import random
import sys
import time
import typing as t
from urllib.parse import urlsplit

import requests
from singer_sdk.exceptions import (
    AbortedSyncFailedException,
    AbortedSyncPausedException,
    RetriableAPIError,
)
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import HTTPRequest
from typing_extensions import override

from tap_marketo_activities.errors import (
    MalformedResponse,
    MarketoError,
    MarketoRetriable,
    TokenRejected,
    classify,
    untrusted_certificate,
)
from tap_marketo_activities.logs import quiet_sdk_notices
from tap_marketo_activities.records import format_datetime
from tap_marketo_activities.wire.envelope import (
    check_answer,
    envelope,
    required_result,
    required_token,
)
from tap_marketo_activities.wire.transport import (
    FORM_CONTENT_TYPE,
    is_too_long,
    method_override_url,
)

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Generator

    from backoff.types import Details
    from singer_sdk import Tap
    from singer_sdk.streams.rest import PageContext

    from tap_marketo_activities.run import RunContext
    from tap_marketo_activities.wire.auth import MarketoAuthenticator
    from tap_marketo_activities.wire.transport import MarketoConnection

# How the SDK stops each stream after one record in a ``--test`` run.
DRY_RUN_STOPS = (AbortedSyncFailedException, AbortedSyncPausedException)

PAGING_TOKEN_PATH = "/v1/activities/pagingtoken.json"  # noqa: S105 (a path, not a secret)


class MarketoPaginator(BaseAPIPaginator[str | None]):
    """Follow ``nextPageToken`` while ``moreResult`` is true, through empty pages.

    Marketo scans activities in blocks and answers once per block, so a page can be
    short or empty while more rows lie ahead; only ``moreResult: false`` ends a walk.
    """

    def __init__(self, start_value: str | None, page_size: int) -> None:
        super().__init__(start_value)
        self.page_size = page_size

    @override
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

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        """An empty page never ends a walk by itself: ``advance`` asks ``has_more``.

        An empty page with ``moreResult: true`` is not the end, and one with ``moreResult:
        false`` ends the walk in ``advance`` as a full page does. Answering False there would
        end it too, but the SDK then logs "Pagination stopped after 0 pages because no
        records were found", which reads like a problem next to our own closing line for
        the stream (a window whose rows were all re-reads is the usual case).
        """
        return True

    @override
    def get_next(self, response: requests.Response) -> str | None:
        """The position token of the next page."""
        token = envelope(response).get("nextPageToken")
        return str(token) if token else None

    @override
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


class MarketoStream(RESTStream[str]):
    """Base for all streams: Marketo's envelope, limits, retries and long requests."""

    records_jsonpath = "$.result[*]"
    allow_redirects = False
    #: The only body a page walk sends is the form of ``POST ...?_method=GET``.
    payload_as_json = False

    def __init__(
        self,
        tap: Tap,
        run: RunContext,
        *,
        name: str | None = None,
        schema: dict[str, t.Any] | None = None,
    ) -> None:
        #: What the run shares (run.py): the connection, activity types, read-ahead, writers.
        self.run = run
        super().__init__(tap, name=name, schema=schema)
        quiet_sdk_notices(self.logger)

    @property
    def api(self) -> MarketoConnection:
        """The run's shared connection (held by the run context)."""
        return self.run.connection

    @property
    @override
    def url_base(self) -> str:
        """``https://<munchkin>.mktorest.com/rest``."""
        return self.api.rest_url

    @property
    @override
    def authenticator(self) -> MarketoAuthenticator:
        """One cached token for the whole run."""
        return self.api.auth

    @property
    @override
    def requests_session(self) -> requests.Session:
        """One session for the whole run, with the Marketo adapter mounted (transport.py)."""
        return self.api.session

    @property
    @override
    def timeout(self) -> int:
        """Seconds before a call is abandoned and retried."""
        return self.api.timeout

    # -- sending -------------------------------------------------------------------

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        """A GET whose request line would pass 8 KB goes as ``POST ...?_method=GET``."""
        request = super().get_http_request(page=page)
        query = request.encode_params()
        if request.method != "GET" or not is_too_long(f"{request.url}?{query}"):
            return request
        url, body = method_override_url(f"{request.url}?{query}")
        return HTTPRequest(
            url=url,
            method="POST",
            headers={**request.headers, "Content-Type": FORM_CONTENT_TYPE},
            data=body,
        )

    def call(self, path: str, params: dict[str, t.Any] | None = None) -> requests.Response:
        """One GET outside a paged walk (types, usage, paging token), with retries."""
        request = self.build_prepared_request(
            method="GET", url=f"{self.url_base}{path}", params=params or {}
        )
        send = self.request_decorator(self._send_single)
        return t.cast("requests.Response", send(request))

    def _send_single(self, request: requests.PreparedRequest) -> requests.Response:
        response = self.requests_session.send(
            self.authenticator(request), timeout=self.timeout, allow_redirects=False
        )
        self.validate_response(response)
        return response

    def mint_token(self, since: dt.datetime) -> str:
        """A date-based paging token for rows stamped at or after ``since``."""
        response = self.call(PAGING_TOKEN_PATH, {"sinceDatetime": format_datetime(since)})
        return required_token(response)

    def fetch_result(self, path: str) -> list[t.Any]:
        """The ``result`` list of a one-off call that must have one (types, usage)."""
        return required_result(self.call(path))

    # -- reading answers -----------------------------------------------------------

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Map HTTP statuses and Marketo's ``success: false`` envelope to actions."""
        # Name the endpoint that refused (pagingtoken.json, types.json), not the stream's.
        path = urlsplit(response.url).path.removeprefix(urlsplit(self.url_base).path)

        def refused(code: str, message: str, request_id: str, advice: str) -> str:
            return self.fatal_message(code, message, request_id, advice, path=path)

        try:
            check_answer(response, window_s=self.api.window_s, refused=refused)
        except TokenRejected:
            sent = response.request.headers.get("Authorization") if response.request else None
            self.authenticator.invalidate(sent)
            raise

    def fatal_message(
        self, code: str, message: str, request_id: str, advice: str, path: str | None = None
    ) -> str:
        """The one line a person reads when Marketo refuses a call for good."""
        what = (
            f"{self.name} ({self.path})"
            if path in (None, self.path)
            else f"{path} (called for stream '{self.name}')"
        )
        text = (
            f"Marketo refused {what}: {code} {classify(code).meaning}: "
            f"{message} (requestId {request_id})."
        )
        return f"{text} To fix: {advice}." if advice else text

    # -- retries -------------------------------------------------------------------

    @override
    def backoff_max_tries(self) -> int:
        """``max_retries`` + 1 attempts in all."""
        return self.api.max_tries

    @override
    def backoff_wait_generator(self) -> Generator[float, t.Any, None]:
        """Exponential from ``retry_base_seconds``; a 606 is waited out by the handler.

        backoff sleeps what this yields in one piece, with no word in the log; the 606
        window (``rate_limit_window_seconds``, plus jitter) is slept in ``backoff_handler``
        instead, in pieces, so that a long one reports what it waits for (WaitNotice).
        """
        base = self.api.retry_base_s

        def waits() -> Generator[float, t.Any, None]:
            attempt = 0
            error = yield 0.0
            while True:
                wait = 0.0 if _window_wait(error) else min(base * (2**attempt), 60.0)
                attempt += 1
                error = yield wait

        # backoff primes the generator with send(None), then sends each exception.
        return waits()

    @override
    def backoff_jitter(self, value: float) -> float:
        """Full-range jitter on top of the wait, so retries from many taps spread out."""
        return value + random.uniform(0, min(value, 1.0))

    @override
    def backoff_handler(self, details: Details) -> None:
        """Log the cause and wait, count the retry; never log request arguments.

        A 606 (the instance's rate window is full) is waited out here: its wait is the
        window's length plus jitter.
        """
        error = details.get("exception")
        cause = getattr(error, "cause", None) or type(error).__name__
        stats = self.api.stats
        stats.count(stats.retries, str(cause))
        window = _window_wait(error)
        wait = float(details.get("wait") or 0.0)
        if window:
            wait = self.backoff_jitter(window)
            stats.add_wait(wait)
        self.logger.warning(
            "Retrying %s in %.1f s after %s (attempt %d of %d)",
            self.name,
            wait,
            describe(error),
            details.get("tries", 0),
            self.backoff_max_tries(),
        )
        if window:
            self._wait_out_606(wait)

    def _wait_out_606(self, wait_s: float) -> None:
        """Sleep out a 606 back-off, with a line a period when it lasts (WaitNotice)."""
        notice = self.api.limiter.notice
        clock = notice.clock
        began = clock()
        while (left := wait_s - (clock() - began)) > 0:
            waited = clock() - began
            # A wait known to last a few seconds has its first line at once.
            long = max(waited, notice.after_s) if wait_s >= notice.after_s else waited
            if notice.due(long):
                notice.say(
                    "Waiting out Marketo's 606 rate window (the instance's %g-second window is "
                    "full, other integrations count too) to read %s: waited %.0f s of %.0f s, "
                    "about %.0f s left.",
                    self.api.window_s,
                    self.api.limiter.waiting_for(f"stream '{self.name}'"),
                    waited,
                    wait_s,
                    left,
                )
            time.sleep(min(left, max(notice.until_due(long), 0.05)))

    @override
    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        """Drop the SDK's "unhandled error while syncing" line where it points the wrong way.

        After one of our errors the one line that says what happened follows (from the
        tap's entry point); a ``--test`` run stops every stream after a record on purpose;
        and a broken pipe is the target's doing, which the entry point says.
        """
        if message.startswith("An unhandled error occurred while syncing"):
            error = sys.exc_info()[1]
            if isinstance(error, (MarketoError, BrokenPipeError, *DRY_RUN_STOPS)):
                return
        super().log(message, *args, level=level, **kwargs)

    @override
    def request_decorator(self, func: t.Callable) -> t.Callable:
        """Renew a refused token at once; the SDK's backoff; one clear line when spent."""

        def with_renewed_token(*args: t.Any, **kwargs: t.Any) -> t.Any:
            try:
                return func(*args, **kwargs)
            except requests.exceptions.ConnectionError as exc:  # SSLError, ProxyError among them
                refusal = untrusted_certificate(exc, str(urlsplit(self.url_base).hostname))
                if refusal is None:
                    raise
                raise refusal from None
            except TokenRejected:
                # validate_response dropped the token; the SDK attaches a new one to
                # the resend. A second refusal is an ordinary retry.
                stats = self.api.stats
                stats.count(stats.retries, "token expired (601/602)")
                return func(*args, **kwargs)

        retrying = super().request_decorator(with_renewed_token)

        def call(*args: t.Any, **kwargs: t.Any) -> t.Any:
            try:
                return retrying(*args, **kwargs)
            except (RetriableAPIError, requests.RequestException, ConnectionError) as exc:
                msg = (
                    f"Gave up on {self.name} after {self.backoff_max_tries()} attempts: "
                    f"{describe(exc)}. Everything delivered before this point is saved in "
                    "the state; the next run resumes there. Raise max_retries if Marketo is "
                    "having a long outage."
                )
                raise MarketoError(msg) from None

        return call


def _window_wait(error: BaseException | None) -> float:
    """The wait a 606 asks for (the rate window's length), 0.0 for any other error."""
    if isinstance(error, MarketoRetriable) and error.wait and str(error.cause) == "606":
        return float(error.wait)
    return 0.0


def describe(error: BaseException | None) -> str:
    """A short cause without URLs (a URL can hold a paging token or a secret)."""
    if error is None:
        return "an error"
    if isinstance(error, MarketoRetriable):
        return str(error)
    if isinstance(error, requests.RequestException):
        return f"{type(error).__name__} (network)"
    return type(error).__name__
