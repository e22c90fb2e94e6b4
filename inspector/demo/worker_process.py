"""`inspector serve` as a child process of the demo: started, awaited online, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from inspector.errors import DemoFailed
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import WorkerStatus, parse_status, status_topic, utcnow
from inspector.settings import BrokerSettings

_EXITED = "exited"


class WorkerProcess:
    """One worker process whose output goes to a log file and whose status comes over MQTT."""

    def __init__(
        self,
        worker_id: str,
        broker: BrokerSettings,
        log_path: Path,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.log_path = log_path
        self._broker = broker
        root: list[str] = ["--config", str(config)] if config is not None else []
        self._argv: Sequence[str] = [sys.executable, "-m", "inspector", *root, "serve"]
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_at: datetime | None = None
        self._events: queue.Queue[WorkerStatus | str] = queue.Queue()

    def start(self) -> None:
        """Spawn the worker; it loads the model, then announces itself online."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._started_at = utcnow()
        # Its own session: a Ctrl-C in the terminal reaches the demo, which stops the worker
        # in order (edge first, then SIGTERM) instead of both racing to shut down.
        self._proc = subprocess.Popen(
            self._argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
        )
        threading.Thread(
            target=self._watch_exit, args=(self._proc,), name="demo-worker-exit", daemon=True
        ).start()

    def _watch_exit(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._events.put(_EXITED)

    def wait_online(self, timeout_s: float) -> WorkerStatus:
        """Block until this run of the worker reports `online`; fail if it exits or stalls."""
        return self.wait_status(lambda s: s.state == "online", "come online", timeout_s)

    def wait_status(
        self, wanted: Callable[[WorkerStatus], bool], what: str, timeout_s: float
    ) -> WorkerStatus:
        """Block until this run of the worker publishes a status that is `wanted`.

        `what` completes "the worker did not … within N s" when it does not.
        """
        if self._proc is None or self._started_at is None:
            raise DemoFailed("the demo worker was not started")
        if self._proc.poll() is not None:
            raise DemoFailed(
                f"the worker exited with code {self._proc.returncode}; its log "
                f"({self.log_path}) ends with:\n{self.log_tail()}"
            )
        # Session expiry 0: this watcher leaves nothing behind on the broker.
        watch_settings = self._broker.model_copy(update={"session_expiry_s": 0})
        watcher = MqttTransport(
            watch_settings, f"inspector-demo-{uuid.uuid4().hex[:12]}", clean_start=True
        )
        watcher.subscribe(status_topic(self.worker_id), self._on_status)
        watcher.start()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    event = self._events.get(timeout=max(0.0, remaining))
                except queue.Empty:
                    raise DemoFailed(
                        f"the worker did not {what} within {timeout_s:g} s; its log "
                        f"({self.log_path}) ends with:\n{self.log_tail()}"
                    ) from None
                if event == _EXITED:
                    raise DemoFailed(
                        f"the worker exited with code {self._proc.returncode} before it could "
                        f"{what}; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                    )
                if (
                    isinstance(event, WorkerStatus)
                    and event.updated_at >= self._started_at
                    and wanted(event)
                ):
                    return event
        finally:
            watcher.stop()

    def _on_status(self, message: Message) -> None:
        # Another program's message on this topic says nothing about our worker: skip it.
        with contextlib.suppress(ValidationError):
            self._events.put(parse_status(message.payload))

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, let it drain for up to `timeout_s`, then kill; returns its exit code."""
        proc = self._proc
        if proc is None:
            return 0
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise DemoFailed(
                    f"the worker did not stop within {timeout_s:g} s of SIGTERM and was killed; "
                    f"see {self.log_path}"
                ) from None
        except KeyboardInterrupt:
            # A second Ctrl-C while draining: do not leave the worker behind.
            proc.kill()
            proc.wait(10)
            raise
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the worker wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])
