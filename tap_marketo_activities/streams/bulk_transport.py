"""``BulkTransport`` over the tap's own connection: the same limiter, daily budget, counters,
token (renewed on 601/602 without spending a retry) and retries as every REST call.

Bulk paths live under the instance root (``/bulk/v1/...``), beside ``/rest``. Answers are read
by ``MarketoStream.validate_response`` (the one place that maps Marketo's envelope to retry,
renew, wait or stop), except refusals a bulk job must interpret itself (1029 queue full or
quota, 1003 unknown export): those come back as the envelope, for ``jobs.py``.
"""

from __future__ import annotations

import typing as t

import requests

from tap_marketo_activities.errors import Action, MarketoRetriable, classify
from tap_marketo_activities.sources.bulk.errors import BulkApiError, DownloadBroken, FileNotReady
from tap_marketo_activities.sources.bulk.transport import is_envelope, write_body
from tap_marketo_activities.wire.envelope import envelope, first_error

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from tap_marketo_activities.streams.client import MarketoStream


class StreamBulkTransport:
    """Bulk calls sent as ``stream`` sends its own (see the module docstring)."""

    def __init__(self, stream: MarketoStream) -> None:
        self.stream = stream
        self.root = stream.url_base.removesuffix("/rest")

    def _send(self, request: requests.PreparedRequest, *, stream: bool = False) -> t.Any:
        owner = self.stream
        return owner.requests_session.send(
            owner.authenticator(request),
            timeout=owner.timeout,
            allow_redirects=False,
            stream=stream,
        )

    def _envelope(self, request: requests.PreparedRequest) -> dict[str, t.Any]:
        def send_checked(prepared: requests.PreparedRequest) -> requests.Response:
            response = t.cast("requests.Response", self._send(prepared))
            if response.status_code == 404 and "/export/" in request.path_url.split("?")[0]:
                # A job path (status, enqueue, cancel) of a job Marketo no longer has: the
                # backfill creates the job again. A wrong base_url fails on create.json.
                response.close()
                msg = f"{request.path_url.split('?')[0]} answered HTTP 404"
                raise BulkApiError(msg, "HTTP404")
            if 200 <= response.status_code < 300:
                body = envelope(response)
                code, _ = first_error(body) if not body.get("success") else ("", "")
                if code and classify(code).action is Action.FATAL:
                    return response  # the job logic reads it (1029, 1003...)
            self.stream.validate_response(response)
            return response

        response = self.stream.request_decorator(send_checked)(request)
        return dict(envelope(response))

    def post_json(self, path: str, body: Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
        request = self.stream.build_prepared_request(
            method="POST", url=self.root + path, json=dict(body) if body is not None else None
        )
        return self._envelope(request)

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, t.Any]:
        request = self.stream.build_prepared_request(
            method="GET", url=self.root + path, params=dict(params or {})
        )
        return self._envelope(request)

    def download(self, path: str, dest: t.BinaryIO, start_byte: int) -> int:
        headers = {"Range": f"bytes={start_byte}-"} if start_byte > 0 else {}
        request = self.stream.build_prepared_request(
            method="GET", url=self.root + path, headers=headers
        )

        def open_file(prepared: requests.PreparedRequest) -> requests.Response:
            response = t.cast("requests.Response", self._send(prepared, stream=True))
            if response.status_code >= 500:
                response.close()
                cause = f"HTTP {response.status_code}"
                raise MarketoRetriable(f"{cause} from the export file", cause=cause)
            if is_envelope(response):
                # 601/602 renew the token and resend; retriable codes retry; others stop
                self.stream.validate_response(response)
            return response

        response = self.stream.request_decorator(open_file)(request)
        with response:
            try:
                return write_body(response, dest, start_byte)
            except FileNotReady:
                raise
            except requests.RequestException as exc:
                raise DownloadBroken(type(exc).__name__) from None
