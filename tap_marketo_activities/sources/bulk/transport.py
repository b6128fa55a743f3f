"""The HTTP the bulk package needs, as a small interface, and a plain implementation of it.

The tap plugs its own transport in (rate limiter, daily budget, call counters, token renewal
on 601/602, retries of transient failures); tests and the benchmark use ``PlainBulkTransport``
against the simulator. Envelopes come back as parsed JSON (``success``, ``errors``,
``result``): deciding what an error means for a job is the job's business (jobs.py).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import requests

from tap_marketo_activities.sources.bulk.errors import BulkApiError, DownloadBroken, FileNotReady

if t.TYPE_CHECKING:
    from collections.abc import Mapping


class BulkTransport(t.Protocol):
    """What the bulk package asks of a transport."""

    def post_json(self, path: str, body: Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
        """POST ``body`` as JSON to ``path`` (under the instance root); the parsed envelope."""
        ...

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, t.Any]:
        """GET ``path``; the parsed envelope."""
        ...

    def download(self, path: str, dest: t.BinaryIO, start_byte: int) -> int:
        """Append the file at ``path`` from ``start_byte`` to ``dest``; return its total size.

        Sends ``Range: bytes=<start_byte>-`` when ``start_byte`` > 0. If the server ignores the
        range (200), ``dest`` is rewound and truncated first. Raises ``FileNotReady`` on 404
        (nothing written) and ``DownloadBroken`` when the connection breaks mid-file (what
        was written stays written).
        """
        ...


_CHUNK = 1 << 16


@dataclass
class _Token:
    value: str | None = None


class PlainBulkTransport:
    """``requests`` with a bearer token fetched from the identity endpoint, renewed on 601/602.

    No rate limiting and no retries of transient failures: that is the tap's transport's job.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 60,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        self.timeout = timeout
        self.session = session or requests.Session()
        self._token = _Token()
        self.calls = 0

    def close(self) -> None:
        self.session.close()

    def _headers(self) -> dict[str, str]:
        if self._token.value is None:
            answer = self.session.get(
                self.base_url + "/identity/oauth/token",
                params=self._credentials,
                timeout=self.timeout,
            )
            answer.raise_for_status()
            self._token.value = str(answer.json()["access_token"])
        return {"Authorization": f"Bearer {self._token.value}"}

    def _envelope(self, method: str, path: str, **kwargs: t.Any) -> dict[str, t.Any]:
        for _ in range(2):
            self.calls += 1
            answer = self.session.request(
                method,
                self.base_url + path,
                headers=self._headers(),
                timeout=self.timeout,
                **kwargs,
            )
            if answer.status_code == 404:  # a job Marketo no longer has, as the tap reads it
                msg = f"{path} answered HTTP 404"
                raise BulkApiError(msg, "HTTP404")
            answer.raise_for_status()
            body = answer.json()
            codes = {str(e.get("code")) for e in body.get("errors") or []}
            if body.get("success") or not codes & {"601", "602"}:
                return dict(body)
            self._token.value = None
        return dict(body)

    def post_json(self, path: str, body: Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
        return self._envelope("POST", path, json=dict(body) if body is not None else None)

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, t.Any]:
        return self._envelope("GET", path, params=dict(params or {}))

    def download(self, path: str, dest: t.BinaryIO, start_byte: int) -> int:
        headers = self._headers()
        if start_byte > 0:
            headers["Range"] = f"bytes={start_byte}-"
        for attempt in range(2):
            self.calls += 1
            try:
                with self.session.get(
                    self.base_url + path, headers=headers, timeout=self.timeout, stream=True
                ) as answer:
                    return write_body(answer, dest, start_byte)
            except BulkApiError as exc:
                if exc.code not in ("601", "602") or attempt:
                    raise
                self._token.value = None
                headers.update(self._headers())
            except requests.RequestException as exc:
                raise DownloadBroken(str(exc)) from None
        raise AssertionError("unreachable")


def write_body(answer: requests.Response, dest: t.BinaryIO, start_byte: int) -> int:
    """Write a streamed file answer to ``dest`` (see ``BulkTransport.download``)."""
    if answer.status_code == 404:
        raise FileNotReady(answer.text[:200])
    if is_envelope(answer):
        body = answer.json()
        errors = body.get("errors") or [{}]
        code = str(errors[0].get("code", "unknown"))
        msg = (
            f"Marketo answered an export file request with an error instead of the file: "
            f"{code} {errors[0].get('message', '')} (requestId {body.get('requestId')})."
        )
        raise BulkApiError(msg, code)
    if answer.status_code >= 400:
        msg = f"Marketo answered the export file {answer.url.rsplit('/', 2)[-2]} with HTTP "
        msg += f"{answer.status_code}; stopping without moving the bookmark."
        raise BulkApiError(msg, f"HTTP{answer.status_code}")
    if answer.status_code == 206:
        first, total = parse_content_range(answer.headers.get("Content-Range", ""))
        if first != start_byte:
            msg = f"asked for bytes from {start_byte}, got a range from {first}"
            raise DownloadBroken(msg)
    else:
        dest.seek(0)
        dest.truncate()
        total = int(answer.headers.get("Content-Length", "-1"))
    for chunk in answer.iter_content(_CHUNK):
        dest.write(chunk)
    dest.flush()
    return total


def is_envelope(answer: requests.Response) -> bool:
    """A JSON answer where a file was due: Marketo's error envelope (e.g. 601/602)."""
    return "json" in answer.headers.get("Content-Type", "").lower()


def parse_content_range(header: str) -> tuple[int, int]:
    """``bytes 100-199/1000`` -> (100, 1000); -1 for a total given as ``*``."""
    try:
        unit, _, spec = header.strip().partition(" ")
        span, _, total = spec.partition("/")
        first = int(span.split("-")[0])
        if unit != "bytes":
            raise ValueError(unit)
        return first, int(total) if total != "*" else -1
    except ValueError:
        msg = f"unreadable Content-Range {header!r}"
        raise DownloadBroken(msg) from None
