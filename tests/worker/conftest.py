"""Worker fixtures: the real broker, a real store, the tiny real model, observers on topics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inspector.engine.types import InferenceEngine
from inspector.settings import (
    ModelSettings,
    Settings,
)
from inspector.store import Store
from inspector.worker import Worker
from inspector.worker.run import worker_transport
from tests.fixtures.worker import Observer, forget_session


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> InferenceEngine:
    """The tiny real Phi4Multimodal engine on the CPU, loaded once."""
    from inspector.engine import load_engine

    # A short rationale keeps the CPU suite fast; the engine tests cover the full length.
    return load_engine(ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=4), {})


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
