"""Running a worker as a service: build its parts from settings, serve until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from inspector.engine.types import InferenceEngine
from inspector.mqtt import MqttTransport, Will
from inspector.protocol import status_topic
from inspector.settings import Settings
from inspector.store import Store
from inspector.worker.service import Worker, status_message

log = logging.getLogger(__name__)


def worker_transport(settings: Settings) -> MqttTransport:
    """The worker's MQTT client: persistent session, manual acks, last will 'offline'.

    The session outlives a restart by `worker.session_expiry_s` only: while it exists,
    Mosquitto keeps handing it a share of the requests even with the worker gone.
    """
    ws = settings.worker
    offline = status_message(ws.worker_id, "offline", None).to_payload()
    return MqttTransport(
        settings.broker.model_copy(update={"session_expiry_s": ws.session_expiry_s}),
        client_id=f"inspector-worker-{ws.worker_id}",
        clean_start=False,
        will=Will(status_topic(ws.worker_id), offline),
        manual_ack=True,
        receive_maximum=ws.receive_maximum,
        max_inflight=max(20, ws.max_batch * 2),
    )


def serve(settings: Settings, engine: InferenceEngine | None = None) -> None:
    """Run one worker until SIGTERM or SIGINT, then drain and disconnect."""
    stop = threading.Event()

    def _signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    # Handlers first: a SIGTERM while the model loads must still end the process cleanly.
    previous = {s: signal.signal(s, _signal) for s in (signal.SIGTERM, signal.SIGINT)}
    store = Store.from_settings(settings.store)
    try:
        store.upgrade()
        if engine is None:
            from inspector.engine import load_engine

            engine = load_engine(settings.model, settings.sites)
        if stop.is_set():
            return
        worker = Worker(worker_transport(settings), store, engine, settings)
        worker.start()
        log.info(
            "worker %s serving (model %s, group %s)",
            settings.worker.worker_id,
            engine.model_name,
            settings.worker.group,
        )
        try:
            stop.wait()
        finally:
            worker.stop()
    finally:
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
