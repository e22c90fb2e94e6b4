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
from inspector.worker.reaper import Reaper
from inspector.worker.service import Worker, status_message

log = logging.getLogger(__name__)


def worker_client_id(worker_id: str) -> str:
    """The MQTT client id of a worker, which names its broker session."""
    return f"inspector-worker-{worker_id}"


def worker_transport(settings: Settings) -> MqttTransport:
    """The worker's MQTT client: persistent session, manual acks, last will 'offline'.

    The session outlives a restart by `worker.session_expiry_s` only: while it exists,
    Mosquitto keeps handing it a share of the requests even with the worker gone, unless a
    live peer ends it (`reaper`). The will names the sites served, so a peer can tell
    whether it serves them too.
    """
    ws = settings.worker
    offline = status_message(ws.worker_id, "offline", None, sites=ws.sites).to_payload()
    return MqttTransport(
        settings.broker.model_copy(update={"session_expiry_s": ws.session_expiry_s}),
        client_id=worker_client_id(ws.worker_id),
        clean_start=False,
        will=Will(status_topic(ws.worker_id), offline),
        manual_ack=True,
        receive_maximum=ws.receive_maximum,
        max_inflight=max(20, ws.max_batch * 2),
    )


def peer_reaper(settings: Settings) -> Reaper | None:
    """The reaper of dead peers' sessions; None on MQTT 3.1.1 (one worker, nothing shared)."""
    if settings.broker.protocol != "5":
        return None
    ws = settings.worker
    return Reaper(settings.broker, ws.worker_id, ws.sites, worker_client_id)


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
        transport = worker_transport(settings)
        worker = Worker(transport, store, engine, settings)
        reaper = peer_reaper(settings)
        if reaper is not None:
            # Subscribed before the transport starts, so the first connect carries it.
            reaper.attach(transport)
            reaper.start()
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
            if reaper is not None:
                reaper.stop()
            worker.stop()
    finally:
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
