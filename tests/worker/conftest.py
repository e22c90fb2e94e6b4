"""Worker fixtures: the real broker, a real store, the tiny real model, observers on topics."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from inspector.engine.types import InferenceEngine
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    InspectionRequest,
    RejectionMessage,
    StationKey,
    TopicKind,
    VerdictMessage,
    parse_rejection,
    parse_verdict,
    station_filter,
)
from inspector.settings import (
    BrokerSettings,
    ModelSettings,
    Settings,
    StoreSettings,
    WorkerSettings,
)
from inspector.store import Store
from inspector.worker import Worker
from inspector.worker.run import worker_transport


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> InferenceEngine:
    """The tiny real Phi4Multimodal engine on the CPU, loaded once."""
    from inspector.engine import load_engine

    # A short rationale keeps the CPU suite fast; the engine tests cover the full length.
    return load_engine(ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=4), {})


def make_settings(
    unique: str, db_url: str, tmp_path: Path, broker: tuple[str, int], **worker: Any
) -> Settings:
    """Settings of one test's worker: its own group, id, database and blob directory."""
    host, port = broker
    fields: dict[str, Any] = {
        "worker_id": unique,
        "group": unique,
        "sites": (unique,),
        "metrics_port": 0,
        "max_batch": 8,
        "max_wait_ms": 5,
    }
    fields.update(worker)
    return Settings(
        broker=BrokerSettings(host=host, port=port, session_expiry_s=120),
        store=StoreSettings(url=db_url, blob_dir=tmp_path / "blobs"),
        worker=WorkerSettings(**fields),
    )


def forget_session(broker: tuple[str, int], client_id: str) -> None:
    """Delete a persistent session on the broker so a finished test leaves no queue behind."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(broker[0], broker[1], clean_start=True, properties=props)
        client.loop_start()
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


class Observer:
    """A real MQTT client collecting verdicts and rejections of one site."""

    def __init__(self, broker: tuple[str, int], site: str) -> None:
        self.verdicts: queue.Queue[VerdictMessage] = queue.Queue()
        self.rejections: queue.Queue[RejectionMessage] = queue.Queue()
        settings = BrokerSettings(host=broker[0], port=broker[1])
        self.transport = MqttTransport(settings, f"obs-{uuid.uuid4().hex[:12]}", clean_start=True)
        self.transport.subscribe(station_filter(TopicKind.VERDICT, site), self._verdict)
        self.transport.subscribe(station_filter(TopicKind.REJECTED, site), self._rejected)
        self.transport.start()
        assert self.transport.wait_subscribed(10), "observer could not connect and subscribe"

    def _verdict(self, m: Message) -> None:
        self.verdicts.put(parse_verdict(m.payload))

    def _rejected(self, m: Message) -> None:
        self.rejections.put(parse_rejection(m.payload))

    def publish(self, request: InspectionRequest) -> None:
        """Publish a request and wait for the broker's PUBACK."""
        self.transport.publish_and_wait(
            request.station_key.topic(TopicKind.REQUEST), request.to_payload(), timeout=10
        )

    def publish_raw(self, station: StationKey, payload: bytes) -> None:
        """Publish arbitrary bytes on a station's request topic."""
        self.transport.publish_and_wait(station.topic(TopicKind.REQUEST), payload, timeout=10)

    def collect_verdicts(self, count: int, timeout: float) -> list[VerdictMessage]:
        """Wait for `count` verdicts (bounded by `timeout` per verdict)."""
        return [self.verdicts.get(timeout=timeout) for _ in range(count)]

    def close(self) -> None:
        self.transport.stop()


@pytest.fixture
def observer(broker: tuple[str, int], unique: str) -> Iterator[Observer]:
    obs = Observer(broker, unique)
    yield obs
    obs.close()


@pytest.fixture
def start_worker(
    broker: tuple[str, int], tiny_engine: InferenceEngine
) -> Iterator[Callable[..., Worker]]:
    """Start in-process workers on the real broker; stopped and their sessions removed after."""
    started: list[Worker] = []

    def _start(settings: Settings, engine: InferenceEngine | None = None) -> Worker:
        store = Store.from_settings(settings.store)
        store.upgrade()
        worker = Worker(worker_transport(settings), store, engine or tiny_engine, settings)
        worker.start()
        assert worker.wait_ready(10), "worker could not connect and subscribe"
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop(timeout=20)
        worker.store.close()
        forget_session(broker, worker.transport.client_id)
