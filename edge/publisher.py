"""Drains the spool to the broker: QoS 1 publishes, re-sent until the station has an answer.

While the broker is away nothing is published; paho reconnects with backoff and resends
whatever was in flight. A PUBACK with a failure reason (e.g. not authorized) keeps the
request in the spool and retries it later with exponential backoff.

A PUBACK does not end a request's time in the spool: the broker may crash before it saved
the message, or hand it to a worker that died. The request stays until its verdict or
rejection arrives (the display takes it out), and is published again, same request_id,
whenever none came in time; the worker answers a repeat from the store. The n-th wait is
`verdict_timeout_s · 2^(n-1)`, at most `resend_max_s`, jittered down to 80 % of that so
stations that lost their requests together do not come back together.

While a live worker serving this site reports a backlog (`edge.workers`), requests already
at the broker are not re-sent: they are waiting, not lost, and a copy would only queue
behind the original. When the hold ends, every re-send due within one `verdict_timeout_s`
waits that long, so the requests still inside a worker's pipeline are not copied either.
The hold lasts at most `resend_hold_max_s` after a request's last send.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from inspector.errors import InspectorError
from inspector.mqtt import MqttTransport, Publication

from .config import SpoolSettings
from .spool import Spool

log = logging.getLogger(__name__)

# Without an event to wake it, the loop still looks at the spool this often.
_IDLE_S = 0.05
_REMEMBER = 10_000


@dataclass(slots=True)
class _InFlight:
    publication: Publication
    sent_at: float
    attempts: int
    sends: int
    warned: bool = False


class Publisher:
    """A background thread moving spooled requests to the broker."""

    def __init__(
        self,
        spool: Spool,
        transport: MqttTransport,
        settings: SpoolSettings,
        on_warning: Callable[[str], None] | None = None,
        *,
        verdict_timeout_s: float = 60.0,
        hold_resends: Callable[[], bool] | None = None,
        on_resend: Callable[[str, int], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._spool = spool
        self._transport = transport
        self._settings = settings
        self._on_warning = on_warning or (lambda text: log.warning("%s", text))
        self._verdict_timeout_s = verdict_timeout_s
        self._hold_resends = hold_resends or (lambda: False)
        self._held = False
        self._on_resend = on_resend
        self._rng = rng or random.Random()
        self.resends = 0
        self.hold_releases = 0
        self._inflight: dict[str, _InFlight] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._delivered = threading.Condition()
        # Insertion-ordered and capped: only recent deliveries are ever waited on.
        self._delivered_ids: dict[str, None] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the publishing thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edge-publisher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; unacknowledged requests stay in the spool for the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the spool now (a capture was added, or the connection came back)."""
        self._wake.set()

    def wait_delivered(self, request_ids: Iterable[str], timeout: float) -> bool:
        """Block until the broker acknowledged every one of `request_ids`, or `timeout`."""
        wanted = set(request_ids)
        with self._delivered:
            return self._delivered.wait_for(lambda: wanted <= self._delivered_ids.keys(), timeout)

    @property
    def in_flight(self) -> int:
        """Publishes awaiting their PUBACK."""
        return len(self._inflight)

    def resend_delay(self, sends: int) -> float:
        """Seconds to wait for an answer after the `sends`-th publish of a request."""
        base = self._verdict_timeout_s * 2.0 ** min(max(sends - 1, 0), 16)
        return min(self._settings.resend_max_s, base) * self._rng.uniform(0.8, 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except InspectorError as exc:
                self._on_warning(f"publishing paused: {exc.message}")
                self._stop.wait(self._settings.retry_min_s)
            except Exception:
                # The spool keeps everything; log and carry on rather than stop publishing.
                log.exception("publisher step failed")
                self._stop.wait(self._settings.retry_min_s)
            self._wake.wait(_IDLE_S)
            self._wake.clear()

    def _step(self) -> None:
        now = time.time()
        self._collect(now)
        free = self._settings.window - len(self._inflight)
        if free <= 0 or not self._transport.connected:
            return
        held = self._hold_resends()
        if self._held and not held:
            self.hold_releases += 1
            until = now + self.resend_delay(1)
            self._spool.postpone_resends(until, until)
        self._held = held
        cutoff = now - self._settings.resend_hold_max_s if held else None
        for item in self._spool.next_batch(free, set(self._inflight), now, cutoff):
            pub = self._transport.publish(item.topic, item.payload, qos=1)
            self._inflight[item.request_id] = _InFlight(pub, now, item.attempts, item.sends)
            if item.sends > 0:
                self.resends += 1
                if self._on_resend is not None:
                    self._on_resend(item.request_id, item.sends)

    def _collect(self, now: float) -> None:
        for request_id, flight in list(self._inflight.items()):
            pub = flight.publication
            if not pub.acknowledged:
                waited = now - flight.sent_at
                if waited > self._settings.puback_timeout_s and not flight.warned:
                    flight.warned = True
                    self._on_warning(
                        f"request {request_id} has waited {waited:.0f} s for its PUBACK; "
                        "it stays in the spool and is resent on reconnect"
                    )
                continue
            del self._inflight[request_id]
            if pub.refused is not None:
                delay = min(
                    self._settings.retry_max_s,
                    self._settings.retry_min_s * 2 ** min(flight.attempts, 16),
                )
                self._spool.mark_failed(request_id, pub.refused, now + delay)
                if flight.attempts % 10 == 0:  # the 1st, 11th, ... refusal: no flood
                    self._on_warning(
                        f"broker refused request {request_id} ({pub.refused}); it stays in "
                        f"the spool, retried with backoff (next in {delay:.1f} s)"
                    )
                continue
            self._spool.mark_sent(request_id, now + self.resend_delay(flight.sends + 1), now)
            with self._delivered:
                self._delivered_ids[request_id] = None
                if len(self._delivered_ids) > _REMEMBER:
                    del self._delivered_ids[next(iter(self._delivered_ids))]
                self._delivered.notify_all()
