"""Response headers on everything: a CSP without inline script, no framing, no sniffing.

Every request gets an id (the `X-Request-ID` header of its answer, and what the log says
beside any failure). A failure nothing else handled still answers with these headers and
that id, never with the exception's text; a failure after a streamed answer began ends the
connection, so the client sees an incomplete download rather than a short one.
Also a Server-Timing header with the app's own time per request, which `bench review` reads.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("inspector.review")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
REQUEST_ID_HEADER = "X-Request-ID"

# (path, status, request id) -> (body, content type): the answer to an unhandled failure.
FailurePage = Callable[[str, int, str], tuple[bytes, str]]


def new_request_id() -> str:
    """A short random id that ties an answer to its log lines."""
    return secrets.token_hex(8)


def request_id_of(scope: Scope) -> str:
    """The id SecurityHeaders gave this request ("-" outside the app)."""
    state: dict[str, Any] = scope.get("state", {})
    return str(state.get("request_id", "-"))


def _plain_failure(path: str, status: int, request_id: str) -> tuple[bytes, str]:
    text = f"internal error; tell the operators request id {request_id}\n"
    return text.encode(), "text/plain; charset=utf-8"


class SecurityHeaders:
    """Pure ASGI middleware (it does not buffer streamed exports)."""

    def __init__(self, app: ASGIApp, failure_page: FailurePage = _plain_failure) -> None:
        self.app = app
        self.failure_page = failure_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        began = False

        async def with_headers(message: Message) -> None:
            nonlocal began
            if message["type"] == "http.response.start":
                began = True
                headers: list[Any] = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _HEADERS if k not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={ms:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            path = str(scope.get("path", ""))
            log.exception("request %s failed: %s %s", request_id, scope.get("method"), path)
            if began:
                raise  # the server drops the connection: the download shows as incomplete
            body, content_type = self.failure_page(path, 500, request_id)
            await with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", content_type.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
