"""The demo's review app: `inspector review serve` beside the line, with a demo reviewer."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from inspector.errors import DemoFailed
from inspector.settings import Settings

DEMO_REVIEWER = "demo"
POLL_S = 0.25


def review_port(preferred: int) -> int:
    """`preferred` when nothing listens there, else a free port (another app may hold it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def demo_reviewer(settings: Settings) -> tuple[str, str]:
    """Create the demo reviewer (or give it a new password); returns (name, password)."""
    from inspector.review.passwords import hash_password
    from inspector.store import Store, users

    password = secrets.token_urlsafe(12)
    store = Store.from_settings(settings.store)
    try:
        with store.db.write() as session:
            if users.get_user(session, DEMO_REVIEWER) is None:
                users.add_user(session, DEMO_REVIEWER, hash_password(password), "reviewer")
            else:
                users.set_password(session, DEMO_REVIEWER, hash_password(password))
    finally:
        store.close()
    return DEMO_REVIEWER, password


class ReviewProcess:
    """`inspector review serve` as a child process on 127.0.0.1:port."""

    def __init__(
        self, port: int, log_path: Path, config: Path | None, env: Mapping[str, str]
    ) -> None:
        self.port = port
        self.log_path = log_path
        root = ["--config", str(config)] if config is not None else []
        self._argv = [sys.executable, "-m", "inspector", *root, "review", "serve"]
        self._argv += ["--host", "127.0.0.1", "--port", str(port)]
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Where a browser opens it."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float) -> None:
        """Spawn it and wait until its health endpoint answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        # Its own session: Ctrl-C reaches the demo, which stops it in order.
        self._proc = subprocess.Popen(
            self._argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DemoFailed(
                    f"the review app exited with code {self._proc.returncode}; see {self.log_path}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}healthz", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(POLL_S)
        raise DemoFailed(f"the review app did not answer within {timeout_s:g} s")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then kill if it does not exit in time."""
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
