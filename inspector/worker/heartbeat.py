"""The worker's heartbeat: its retained status, re-published on a timer and when backlog changes.

`backlog` tells the stations that requests are queued for this worker at the broker: it has
taken as many unacknowledged requests as the broker may send it (`receive_maximum`), so more
wait there. A station does not re-send what the broker holds while a worker serving its site
says so; they are queued, not lost. The flag goes up on the first sample that sees a full
window and comes down only after `calm_s` without one, so a worker at the edge of its
capacity does not flicker between the two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
_POLL_S = 0.25


class Heartbeat:
    """A thread calling `publish(backlog)` every `interval_s` and whenever backlog changes."""

    def __init__(
        self,
        publish: Callable[[bool], None],
        window_full: Callable[[], bool],
        interval_s: float = HEARTBEAT_S,
        calm_s: float = 5.0,
    ) -> None:
        self._publish = publish
        self._window_full = window_full
        self.interval_s = interval_s
        self._calm_s = calm_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backlog = False

    def start(self) -> None:
        """Start the heartbeat thread."""
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (the caller publishes the final status)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        last_sent = time.monotonic()
        last_full = float("-inf")
        while not self._stop.wait(_POLL_S):
            now = time.monotonic()
            try:
                if self._window_full():
                    last_full = now
            except Exception:
                log.exception("could not sample the intake window")
            backlog = now - last_full < self._calm_s
            if backlog != self.backlog or now - last_sent >= self.interval_s:
                self.backlog = backlog
                last_sent = now
                self._publish(backlog)
