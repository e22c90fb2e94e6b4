"""Running the canary as a service, and reading what it says about each worker."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
from dataclasses import dataclass
from types import FrameType

from prometheus_client import start_http_server

from inspector.canary.service import Canary
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    CanaryHealth,
    WorkerStatus,
    canary_health_filter,
    parse_canary_health,
    parse_status,
    worker_status_filter,
)
from inspector.settings import Settings
from inspector.store import Store

log = logging.getLogger(__name__)


def _client_id(prefix: str) -> str:
    return f"{prefix}-{socket.gethostname()[:40]}-{os.getpid()}"


def serve(settings: Settings) -> None:
    """Run the canary until SIGTERM or SIGINT."""
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _signal) for s in (signal.SIGTERM, signal.SIGINT)}
    store = Store.from_settings(settings.store)
    transport = MqttTransport(settings.broker, _client_id("inspector-canary"), clean_start=True)
    canary = Canary(transport, store, settings.canary)
    server = None
    try:
        if settings.canary.metrics_port:
            server, _ = start_http_server(
                settings.canary.metrics_port,
                addr=settings.canary.metrics_host,
                registry=canary.metrics.registry,
            )
        canary.start()
        log.info("canary: golden parts to every live worker every %g s", settings.canary.period_s)
        canary.run(stop)
    finally:
        canary.stop()
        if server is not None:
            server.shutdown()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True, slots=True)
class WorkerLine:
    """One worker as `inspector canary status` shows it: its status and the canary's word."""

    worker_id: str
    status: WorkerStatus | None
    health: CanaryHealth | None


def read_health(settings: Settings, timeout: float = 2.0) -> list[WorkerLine]:
    """The retained statuses of the workers and the canary's word on each, by worker id.

    Retained messages arrive right after the subscription; the read ends once none has come
    for a short while (or at `timeout`).
    """
    got: queue.Queue[Message] = queue.Queue()
    transport = MqttTransport(settings.broker, _client_id("inspector-status"), clean_start=True)
    transport.subscribe(worker_status_filter(), got.put, qos=0)
    transport.subscribe(canary_health_filter(), got.put, qos=0)
    statuses: dict[str, WorkerStatus] = {}
    healths: dict[str, CanaryHealth] = {}
    try:
        transport.start()
        transport.wait_subscribed(timeout)
        while True:
            try:
                message = got.get(timeout=min(0.5, timeout))
            except queue.Empty:
                break
            if not message.payload:
                continue
            try:
                if message.topic.endswith("/health"):
                    health = parse_canary_health(message.payload)
                    healths[health.worker_id] = health
                else:
                    status = parse_status(message.payload)
                    statuses[status.worker_id] = status
            except ValueError:
                log.warning("unreadable retained message on %s", message.topic)
    finally:
        transport.stop()
    return [WorkerLine(w, statuses.get(w), healths.get(w)) for w in sorted({*statuses, *healths})]
