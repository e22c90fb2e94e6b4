"""Ending a dead peer's broker session, so its share of the requests goes to live workers.

Mosquitto hands each request of a shared subscription to the group's sessions in turn,
connected or not, and a worker's session outlives the worker by `worker.session_expiry_s`.
A worker killed for good would keep receiving every n-th request that long, and a
station's re-send could land in its session again. So each live worker follows its peers'
status topics, and when a peer turns `offline` (its last will, or its own word at the end
of a clean stop) it ends that peer's session: it connects with the peer's client id, clean
start, session expiry 0, and disconnects. Whatever the session held is dropped with it;
the stations re-send those captures after their verdict timeout, and a live worker answers.

A peer is reaped only by a worker that serves every site the peer served, so its share has
somewhere to go. With no such worker up, nobody reaps, and the session keeps the queue for
the worker's restart for `worker.session_expiry_s`, as before.

Connecting with a peer's id takes over that id's connection if the peer is back, so the
reaper acts only on what just happened and only while nothing newer came:
- A retained `offline` (met when subscribing) is history: its worker may be starting right
  now, and its session expired long ago or is the backstop's to end.
- A last will means the broker has just seen the connection go. The peer itself comes back
  no sooner than its reconnect delay (1 s) or its restart (seconds, a model load), so the
  reap goes at once.
- After a clean stop the peer announces `draining`, then `offline`, then disconnects: that
  `offline` is reaped `stopping_grace_s` later, so the peer leaves on its own first.
- Any newer status of the peer cancels a reap not yet done.
If a reap still meets a peer that has just reconnected, the peer loses its queue, never its
work: the broker ends its connection and publishes its will, it reconnects after its delay
into a fresh session and announces itself online, its transport drops the acks that belong
to the session it lost, and the stations re-send what was queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from inspector.mqtt import ConnectionEvent, Message, MqttTransport
from inspector.protocol import WorkerState, parse_status, worker_status_filter
from inspector.settings import BrokerSettings

log = logging.getLogger(__name__)

# A peer that announced `draining` publishes `offline` and then disconnects by itself,
# within milliseconds: it is given this long before its session is ended.
STOPPING_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class Reaped:
    """One ended peer session: whose, and whether the broker took the connection."""

    worker_id: str
    client_id: str
    ended: bool
    reason: str


class Reaper:
    """Ends the broker sessions of peers gone offline; `attach` it before the transport starts."""

    def __init__(
        self,
        broker: BrokerSettings,
        worker_id: str,
        sites: Sequence[str],
        client_id_of: Callable[[str], str],
        *,
        stopping_grace_s: float = STOPPING_GRACE_S,
        on_reaped: Callable[[Reaped], None] | None = None,
    ) -> None:
        # The peer's session must end with the connection: no expiry, and no will of ours.
        self._broker = broker.model_copy(update={"session_expiry_s": 0})
        self._worker_id = worker_id
        self._sites = frozenset(sites)
        self._client_id_of = client_id_of
        self._stopping_grace_s = stopping_grace_s
        self._on_reaped = on_reaped
        self._cond = threading.Condition()
        self._last_state: dict[str, WorkerState] = {}
        self._due: dict[str, float] = {}  # peer → when to end its session
        self._stop = False
        self._thread: threading.Thread | None = None

    def attach(self, transport: MqttTransport) -> None:
        """Follow every worker's status on `transport` (QoS 0: nothing to ack, nothing queued)."""
        transport.subscribe(worker_status_filter(), self.on_status, qos=0)

    def start(self) -> None:
        """Start the thread that ends sessions."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="worker-reaper", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reaping; a reap under way is left to finish (bounded by the connect timeout)."""
        with self._cond:
            self._stop = True
            self._due.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- network thread ----------------------------------------------------------------

    def on_status(self, message: Message) -> None:
        """Take in one worker status; schedule or cancel the reap of its worker."""
        try:
            status = parse_status(message.payload)
        except (ValidationError, UnicodeDecodeError):
            return
        peer = status.worker_id
        if peer == self._worker_id:
            return
        with self._cond:
            before = self._last_state.get(peer)
            self._last_state[peer] = status.state
            if status.state != "offline":
                self._due.pop(peer, None)
                return
            if message.retain or not self._covers(status.sites):
                return
            delay = self._stopping_grace_s if before == "draining" else 0.0
            self._due[peer] = time.monotonic() + delay
            self._cond.notify_all()

    def pending(self) -> dict[str, float]:
        """Peers whose session is to be ended, and the seconds until each one's turn."""
        now = time.monotonic()
        with self._cond:
            return {peer: due - now for peer, due in self._due.items()}

    def _covers(self, peer_sites: Sequence[str]) -> bool:
        """Whether this worker serves every site the peer served (empty: every site)."""
        if not self._sites:
            return True
        return bool(peer_sites) and self._sites.issuperset(peer_sites)

    # --- reaper thread -----------------------------------------------------------------

    def _next(self) -> str | None:
        """The next peer whose reap is due, waiting for it; None once stopped."""
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                if self._due:
                    peer, due = min(self._due.items(), key=lambda item: item[1])
                    if due <= now:
                        del self._due[peer]
                        return peer
                    self._cond.wait(due - now)
                else:
                    self._cond.wait()
        return None

    def _run(self) -> None:
        while (peer := self._next()) is not None:
            try:
                reaped = self.reap(peer)
            except Exception:
                log.exception("ending the session of worker %s failed", peer)
                continue
            if self._on_reaped is not None:
                self._on_reaped(reaped)

    def reap(self, peer: str) -> Reaped:
        """End `peer`'s broker session now: connect as it with a clean start, disconnect."""
        client_id = self._client_id_of(peer)
        answered = threading.Event()
        outcome: list[ConnectionEvent] = []

        def on_connection(event: ConnectionEvent) -> None:
            if not answered.is_set():
                outcome.append(event)
                answered.set()

        transport = MqttTransport(
            self._broker, client_id, clean_start=True, reconnect_min_s=60, reconnect_max_s=60
        )
        transport.on_connection(on_connection)
        transport.start()
        try:
            # A TCP or TLS failure gives up at the connect timeout without any event.
            answered.wait(self._broker.connect_timeout_s + 5)
        finally:
            transport.stop()
        event = outcome[0] if outcome else None
        ended = event is not None and event.connected
        reason = event.reason if event is not None else "no answer from the broker"
        if ended:
            log.info(
                "worker %s went offline: ended its broker session so its share of the "
                "requests goes to live workers (stations re-send what it held)",
                peer,
            )
        else:
            log.warning(
                "worker %s went offline, but its broker session could not be ended (%s): "
                "requests wait in it until it expires (worker.session_expiry_s)",
                peer,
                reason,
            )
        return Reaped(peer, client_id, ended, reason)
