"""Ways to ask for a capture: an HTTP POST on localhost, the MQTT trigger topic, the keyboard.

Each trigger turns its input into a `CaptureCommand` and hands it to a `Submit` callable;
the agent decides what a capture means. The watched folder lives in `edge.folder`.
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspector.errors import InspectorError, RejectedInput, TriggerFailed

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024


class CaptureCommand(BaseModel):
    """A request to take one capture, from whichever trigger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    part_id: str | None = Field(None, pattern=r"^[^\x00-\x1f\x7f]{1,128}$")
    note: str | None = Field(None, max_length=2000)
    operator: str | None = Field(None, pattern=r"^[^\x00-\x1f\x7f]{1,64}$")


class CaptureReceipt(BaseModel):
    """What a trigger gets back: the capture is in the spool under this request_id."""

    request_id: str
    part_id: str
    spool_depth: int


Submit = Callable[[CaptureCommand], CaptureReceipt]


def parse_command(body: bytes, content_type: str = "application/json") -> CaptureCommand:
    """A command from a JSON object, a form body, or a bare part id as plain text."""
    text = body.decode("utf-8", errors="strict").strip() if body else ""
    if not text:
        return CaptureCommand()
    if text.startswith("{"):
        return CaptureCommand.model_validate_json(text)
    if "x-www-form-urlencoded" in content_type:
        form = {k: v[-1] for k, v in parse_qs(text).items()}
        return CaptureCommand.model_validate(form)
    # PLCs and barcode scanners send the bare part id.
    return CaptureCommand(part_id=text)


class _Handler(BaseHTTPRequestHandler):
    server: _TriggerServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """POST /capture: take a capture and answer with its request_id."""
        path = urlsplit(self.path)
        if path.path.rstrip("/") != "/capture":
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /capture"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        body = self.rfile.read(length) if length else b""
        try:
            cmd = parse_command(body, self.headers.get("Content-Type", ""))
            query = {k: v[-1] for k, v in parse_qs(path.query).items()}
            if query:
                cmd = CaptureCommand.model_validate({**cmd.model_dump(exclude_none=True), **query})
        except (ValidationError, UnicodeDecodeError, ValueError) as exc:
            self._reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": _first_error(exc)})
            return
        try:
            receipt = self.server.submit(cmd)
        except RejectedInput as exc:
            self._reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": exc.message})
            return
        except InspectorError as exc:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": exc.message})
            return
        except Exception as exc:
            log.exception("HTTP-triggered capture failed")
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(exc)})
            return
        self._reply(HTTPStatus.CREATED, receipt.model_dump())

    def do_GET(self) -> None:
        """GET /status: the agent's queue depth and connection."""
        if urlsplit(self.path).path.rstrip("/") != "/status" or self.server.status is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "GET /status"})
            return
        self._reply(HTTPStatus.OK, self.server.status())

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Route the server's access log to logging instead of stderr."""
        log.debug("http trigger: " + format, *args)


class _TriggerServer(ThreadingHTTPServer):
    daemon_threads = True
    submit: Submit
    status: Callable[[], dict[str, Any]] | None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"{where}: {err['msg']}" if where else str(err["msg"])
    return str(exc)


class HttpTrigger:
    """`POST /capture` (JSON, form or plain-text part id) and `GET /status` on localhost."""

    def __init__(
        self,
        host: str,
        port: int,
        submit: Submit,
        status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        try:
            self._server = _TriggerServer((host, port), _Handler)
        except OSError as exc:
            raise TriggerFailed(
                f"HTTP trigger cannot listen on {host}:{port}: {exc.strerror}; "
                "set triggers.http_port to a free port (or 0 for any)"
            ) from None
        self._server.submit = submit
        self._server.status = status
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="edge-http",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )

    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class KeyReader:
    """Single key presses from a terminal, without waiting for Enter."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdin.fileno() if fd is None else fd
        self._saved: list[Any] | None = None

    @staticmethod
    def available() -> bool:
        """Whether stdin is an interactive terminal."""
        return sys.stdin.isatty()

    def __enter__(self) -> KeyReader:
        import termios
        import tty

        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> str | None:
        """The next key, or None when none was pressed within `timeout` seconds."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        data = os.read(self._fd, 1)
        return data.decode(errors="replace") if data else "q"
