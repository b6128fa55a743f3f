"""What each Marketo error means for the tap, and the exceptions that carry it.

Marketo reports most failures as HTTP 200 with ``success: false`` and a list of
``{code, message}`` errors (codes are strings). Every documented code is mapped
here, once, to one of a few actions, so that retry policy, user-facing messages
and tests all read the same table. Unknown codes are fatal: retrying something we
do not understand burns quota, and a clear failure is better than a silent loop.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError


class Action(enum.Enum):
    """What the client does about an error code."""

    RETRY = "retry"  # transient: exponential backoff with jitter, bounded
    WAIT_WINDOW = "wait_window"  # 606: wait out the 20-second rate window, then retry
    BACK_OFF = "back_off"  # 615: too many concurrent calls; back off and retry
    REAUTH = "reauth"  # 601/602: fetch a new token and resend once
    QUOTA = "quota"  # 607: daily quota spent; stop cleanly
    EMPTY = "empty"  # 702: no data; an empty page
    FATAL = "fatal"  # configuration or request problem a person must fix


@dataclass(frozen=True)
class CodeInfo:
    """One row of the error table."""

    action: Action
    meaning: str
    advice: str = ""


ERROR_CODES: dict[str, CodeInfo] = {
    "601": CodeInfo(Action.REAUTH, "access token invalid"),
    "602": CodeInfo(Action.REAUTH, "access token expired"),
    "603": CodeInfo(
        Action.FATAL,
        "access denied",
        "give the API user's role the 'Read-Only Activity' permission (Admin > Users & "
        "Roles) and check the IP allowlist (Admin > Web Services)",
    ),
    "604": CodeInfo(Action.RETRY, "request timed out"),
    "605": CodeInfo(Action.FATAL, "HTTP method not supported", "report this as a tap bug"),
    "606": CodeInfo(Action.WAIT_WINDOW, "rate limit (100 calls per 20 s) exceeded"),
    "607": CodeInfo(Action.QUOTA, "daily API quota reached"),
    "608": CodeInfo(Action.RETRY, "API temporarily unavailable"),
    "609": CodeInfo(Action.FATAL, "invalid JSON", "report this as a tap bug"),
    "610": CodeInfo(Action.FATAL, "requested resource not found", "check base_url"),
    "611": CodeInfo(Action.RETRY, "system error"),
    "612": CodeInfo(Action.FATAL, "invalid content type", "report this as a tap bug"),
    "614": CodeInfo(Action.RETRY, "subscription unreachable"),
    "615": CodeInfo(Action.BACK_OFF, "concurrent access limit (10 calls) reached"),
    "616": CodeInfo(Action.FATAL, "invalid subscription type", "ask Adobe support"),
    "701": CodeInfo(Action.FATAL, "a required value is blank"),
    "702": CodeInfo(Action.EMPTY, "no data found"),
    "703": CodeInfo(Action.FATAL, "feature not enabled on this subscription", "ask Adobe support"),
    "704": CodeInfo(Action.FATAL, "invalid date format", "check start_date"),
    "713": CodeInfo(Action.RETRY, "transient error"),
    "1001": CodeInfo(Action.FATAL, "invalid value type for a parameter"),
    "1002": CodeInfo(Action.FATAL, "a required parameter is missing"),
    "1003": CodeInfo(Action.FATAL, "invalid value for a parameter"),
    "1006": CodeInfo(Action.FATAL, "field not found", "check lead_change_fields"),
}

# HTTP statuses that are worth another try, besides every 5xx.
RETRIABLE_HTTP = frozenset({408, 429})


def classify(code: str) -> CodeInfo:
    """Return the table row for ``code``; unknown codes are fatal."""
    return ERROR_CODES.get(str(code), CodeInfo(Action.FATAL, "undocumented error"))


class MarketoError(FatalAPIError):
    """A failure a person has to act on. Its text is the whole message they see."""


class ConfigError(MarketoError):
    """A setting is wrong; the message names it."""


class StateError(MarketoError):
    """The state given with --state cannot be used; the message names the field."""


class QuotaExhausted(MarketoError):
    """607, or our own max_daily_calls budget: stop now, resume on the next run."""


class MalformedResponse(MarketoError):
    """An answer that breaks Marketo's documented shape. Nothing after it is emitted."""


class CursorRejected(MarketoError):
    """Marketo refused a saved position token; the caller falls back to a date token."""


class MarketoRetriable(RetriableAPIError):
    """A transient failure. ``wait`` is set when the error itself says how long."""

    def __init__(self, message: str, cause: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.wait = wait


class TokenRejected(MarketoRetriable):
    """601/602: the access token is invalid or expired; renew it and resend at once."""


#: OpenSSL's verify codes whose cure is not a CA bundle.
_CERTIFICATE_ADVICE = {
    10: "The certificate has expired: check the machine's clock, and that base_url names "
    "your instance (https://<munchkin-id>.mktorest.com).",
    62: "It was issued for another host: check that base_url names your instance "
    "(https://<munchkin-id>.mktorest.com).",
}
_CERTIFICATE_ADVICE[64] = _CERTIFICATE_ADVICE[62]  # the same for an IP address


def untrusted_certificate(error: BaseException, host: str) -> ConfigError | None:
    """The error to stop with when ``error`` is a TLS certificate that did not verify.

    Retrying cannot make a certificate trusted, so this is not a network error to back off
    from: behind a proxy that re-signs TLS the CA bundle must be named. requests nests the
    cause a few levels deep (its SSLError, urllib3's, then the ssl module's); only the ssl
    module's reason is repeated, never requests' text, which holds the URL.
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            reason = current.verify_message or "certificate verify failed"
            advice = _CERTIFICATE_ADVICE.get(
                current.verify_code,
                "If a proxy on your network re-signs TLS, set REQUESTS_CA_BUNDLE to a PEM file "
                "with its CA certificate.",
            )
            return ConfigError(f"The TLS certificate of {host} is not trusted ({reason}). {advice}")
        pending.extend(
            [
                getattr(current, "reason", None),
                current.__cause__,
                current.__context__,
                *current.args,
            ]
        )
    return None
