"""The worker's heartbeat and backlog report, as the stations read them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inspector.engine.types import EngineRequest, EngineResult, InferenceEngine, VerdictCallback
from inspector.protocol import ImagePart, WorkerStatus, parse_status, status_topic
from inspector.worker import Worker
from inspector.worker.heartbeat import Heartbeat
from tests.core.helpers import jpeg, make_request
from tests.fixtures.edge import wait_until
from tests.fixtures.worker import Observer, make_settings


def test_backlog_goes_up_at_once_and_down_only_after_a_calm_spell() -> None:
    sent: list[bool] = []
    full = threading.Event()
    beat = Heartbeat(sent.append, full.is_set, interval_s=60, calm_s=0.5)
    beat.start()
    try:
        full.set()
        assert wait_until(lambda: sent[-1:] == [True], 5)
        full.clear()
        assert wait_until(lambda: sent[-1:] == [False], 5)
        assert sent == [True, False]  # one message per change, nothing in between
    finally:
        beat.stop()


class HeldEngine:
    """The real engine, holding a batch with note "hold" until the test releases it."""

    def __init__(self, inner: InferenceEngine) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.release = threading.Event()

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        if any(r.note == "hold" for r in batch):
            self.release.wait(60)
        return self.inner.infer(batch, on_verdicts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_worker_with_a_full_intake_window_reports_a_backlog_then_clears_it(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    tiny_engine: InferenceEngine,
) -> None:
    statuses: queue.Queue[WorkerStatus] = queue.Queue()
    observer.transport.subscribe(
        status_topic(unique), lambda m: statuses.put(parse_status(m.payload))
    )
    # The first request is held in the engine: with a window of one unacknowledged
    # request, the others wait at the broker for as long as the test needs to see it.
    engine = HeldEngine(tiny_engine)
    worker = start_worker(
        make_settings(unique, sqlite_url, tmp_path, broker, receive_maximum=1, max_batch=1),
        engine,
    )
    photo = [ImagePart.from_bytes("image/jpeg", jpeg(32, 32))]
    for note in ("hold", None, None, None):
        observer.publish(make_request(site=unique, images=photo, audio=None, note=note))
    seen: list[WorkerStatus] = []
    while not any(s.backlog for s in seen):
        seen.append(statuses.get(timeout=30))
    assert seen[-1].state == "online" and seen[-1].sites == [unique]
    assert seen[-1].heartbeat_s == worker.heartbeat.interval_s
    engine.release.set()
    observer.collect_verdicts(4, timeout=60)
    while seen[-1].backlog:
        seen.append(statuses.get(timeout=30))
    assert seen[-1].state == "online"
