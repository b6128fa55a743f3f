"""The identity token: Marketo's two-legged OAuth client-credentials flow.

Marketo's identity endpoint takes the grant and the credentials as query
parameters (its OpenAPI definition has no body), which the SDK's
``OAuthAuthenticator`` would send as a POST body. We override only the fetch.
Because that URL holds the client secret, nothing here ever logs or raises a
message that contains the URL: errors are rebuilt from status codes alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import threading
import time
import typing as t
from urllib.parse import urlsplit

import requests
from singer_sdk.authenticators import OAuthAuthenticator
from typing_extensions import override

from tap_marketo_activities.errors import (
    RETRIABLE_HTTP,
    ConfigError,
    MarketoError,
    MarketoRetriable,
    untrusted_certificate,
)

_SECRET_IN_TEXT = re.compile(r"(client_secret|access_token)=[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """Blank credentials in records of libraries that log URLs (urllib3 at DEBUG)."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with the secrets replaced; never drop it."""
        message = record.getMessage()
        if "client_secret=" in message or "access_token=" in message:
            record.msg = _SECRET_IN_TEXT.sub(r"\1=REDACTED", message)
            record.args = ()
        return True


def redact_library_logs() -> None:
    """Install the filter once on the loggers that print request lines."""
    for name in ("urllib3.connectionpool", "urllib3", "requests"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


# Renew this long before Marketo says the token expires, so a token never dies
# between being attached to a request and the request arriving.
EXPIRY_MARGIN_S = 60


class MarketoAuthenticator(OAuthAuthenticator):
    """Fetch, cache and renew the access token; attach it as a Bearer header."""

    def __init__(
        self,
        *,
        identity_url: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        max_tries: int = 1,
        retry_base_s: float = 1.0,
        on_retry: t.Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            auth_endpoint=f"{identity_url}/oauth/token",
            client_id=client_id,
            client_secret=client_secret,
            default_expiration=3600,
        )
        # A session of its own: the REST session carries this authenticator as its
        # `auth`, and an identity call through it would try to authenticate itself.
        self._http = requests.Session()
        self._timeout = timeout
        # The same retry policy as every REST call (max_retries, retry_base_seconds): a
        # token is fetched where the SDK prepares a request, outside its backoff.
        self._max_tries = max(1, max_tries)
        self._retry_base_s = retry_base_s
        self._on_retry = on_retry
        # Guards the token for every thread that sends calls (prefetch.py's fetchers too):
        # the check, the renewal and the read of the token happen under it. Re-entrant,
        # because ``authenticate_request`` holds it while it asks for a renewal.
        self._lock = threading.RLock()
        # Our own copies: the base class keeps them in attributes it does not document.
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        redact_library_logs()

    @property
    @override
    def oauth_request_body(self) -> dict:
        """The three parameters Marketo's identity endpoint reads."""
        return {"grant_type": "client_credentials", **self._credentials}

    @override
    def is_token_valid(self) -> bool:
        """Valid until EXPIRY_MARGIN_S before Marketo's stated expiry."""
        if self.last_refreshed is None or self.access_token is None:
            return False
        if not self.expires_in:
            return True
        age = (_utc_now() - self.last_refreshed).total_seconds()
        return age < max(self.expires_in - EXPIRY_MARGIN_S, self.expires_in / 2)

    @override
    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Attach a valid token, renewed first if needed; safe from several threads.

        The SDK's version writes the token into a header dict shared by all requests and
        then copies it, so a thread could attach the ``None`` another thread's 601 had
        just left; here the token is read once, under the lock, into this request alone.
        """
        with self._lock:
            if not self.is_token_valid():
                self.update_access_token()
            token = self.access_token
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def invalidate(self, refused: str | None = None) -> None:
        """Forget the token (after 601/602), so the next request fetches a new one.

        ``refused`` is the Authorization header of the refused call: when another thread
        has renewed the token since that call left, the new token is kept.
        """
        with self._lock:
            if refused is not None and refused != f"Bearer {self.access_token}":
                return
            self.access_token = None
            self.last_refreshed = None

    @override
    def update_access_token(self) -> None:
        """Fetch a token, retrying transient failures; one clear line when they are spent."""
        with self._lock:
            if self.is_token_valid():  # another thread renewed it meanwhile
                return
            for attempt in range(1, self._max_tries + 1):
                try:
                    self._fetch_token()
                    break
                except MarketoRetriable as exc:
                    if attempt == self._max_tries:
                        msg = (
                            f"Gave up on Marketo's identity endpoint after {self._max_tries} "
                            f"attempts: {exc}. Everything delivered before this point is saved "
                            "in the state; the next run resumes there. Raise max_retries if "
                            "Marketo is having a long outage."
                        )
                        raise MarketoError(msg) from None
                    wait = min(self._retry_base_s * 2 ** (attempt - 1), 60.0)
                    wait += random.uniform(0, min(wait, 1.0))
                    self.logger.warning(
                        "Retrying the identity endpoint in %.1f s after %s (attempt %d of %d)",
                        wait,
                        exc,
                        attempt,
                        self._max_tries,
                    )
                    if self._on_retry:
                        self._on_retry(f"identity {exc.cause}")
                    time.sleep(wait)
        self.logger.info("Obtained a Marketo access token (expires in %s s)", self.expires_in)

    def _fetch_token(self) -> None:
        """GET the identity endpoint once; never put the URL in a message."""
        request_time = _utc_now()
        try:
            response = self._http.get(
                self.auth_endpoint,
                params=self.oauth_request_body,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            refusal = untrusted_certificate(exc, str(urlsplit(self.auth_endpoint).hostname))
            if refusal is not None:
                raise refusal from None
            # requests puts the full URL (with the secret) in its messages.
            msg = f"identity call failed: {type(exc).__name__}"
            raise MarketoRetriable(msg, cause="connection") from None
        if response.status_code in {401, 403}:
            msg = (
                f"Marketo refused the credentials (HTTP {response.status_code}): check "
                "client_id and client_secret (Admin > LaunchPoint > View Details)."
            )
            raise ConfigError(msg)
        if response.status_code >= 500 or response.status_code in RETRIABLE_HTTP:
            msg = f"identity endpoint answered HTTP {response.status_code}"
            raise MarketoRetriable(msg, cause=f"HTTP {response.status_code}")
        body = _json_or_none(response)
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or ("access_token" not in body)
        ):
            msg = (
                f"Marketo's identity endpoint answered HTTP {response.status_code} without "
                "an access token: check base_url points at your instance "
                "(https://<munchkin-id>.mktorest.com)."
            )
            raise ConfigError(msg)
        self.access_token = str(body["access_token"])
        expires = body.get("expires_in", self._default_expiration)
        self.expires_in = int(expires) if expires else None
        self.last_refreshed = request_time


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _json_or_none(response: requests.Response) -> t.Any:
    try:
        return response.json()
    except ValueError:
        return None
