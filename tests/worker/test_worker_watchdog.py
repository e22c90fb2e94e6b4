"""The settle watchdog: a request the worker cannot answer is rejected and acked, exactly once."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from inspector.engine.types import EngineRequest, EngineResult, InferenceEngine, VerdictCallback
from inspector.errors import Code
from inspector.mqtt import Message
from inspector.protocol import ImagePart, StationKey, WorkerStatus, sha256_hex, status_topic
from inspector.store.models import Inspection, Rejection, Verdict
from inspector.worker import Worker
from inspector.worker.intake import Refused
from inspector.worker.watchdog import Watchdog
from tests.core.helpers import jpeg, make_request
from tests.fixtures.edge import wait_until
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _message(mid: int = 1) -> Message:
    return Message("inspector/v1/a/b/c/request", b"{}", 1, False, mid, False)


def test_the_first_to_claim_a_message_answers_it_and_the_other_is_refused() -> None:
    clock, expired = _Clock(), queue.SimpleQueue[list[Refused]]()
    dog = Watchdog(10.0, expired.put, clock)
    slow, quick = _message(1), _message(1)  # a reused packet id is another message
    station = StationKey("a", "b", "c")
    dog.track(slow, 0.0, station)
    dog.track(quick, 0.0, station)
    rid = uuid.uuid4()
    dog.validated(slow, rid)
    assert dog.claim(quick)
    clock.now = 10.5
    (refused,) = dog.sweep()
    assert refused.message is slow and refused.request_id == rid and refused.station == station
    assert refused.error.code is Code.INTERNAL_TIMEOUT
    assert expired.get_nowait() == [refused]
    dog.settled(slow)  # the rejection is committed and acked
    dog.settled(quick)
    assert dog.waiting() == 0
    assert not dog.claim(slow), "the late outcome must be dropped, not answered again"
    assert dog.sweep() == [] and dog.expired_total == 1, "a message is rejected once"


def test_time_while_the_store_is_unreachable_does_not_count() -> None:
    clock = _Clock()
    dog = Watchdog(10.0, lambda _: None, clock)
    msg = _message()
    dog.track(msg, 0.0, None)
    clock.now = 8.0
    dog.hold()  # the commit loop saw the store unreachable
    clock.now = 15.0
    assert dog.sweep() == []
    clock.now = 18.5
    assert [r.message for r in dog.sweep()] == [msg]


def test_a_long_backlog_that_moves_is_not_stuck_but_a_stage_busy_too_long_is() -> None:
    clock = _Clock()
    dog = Watchdog(10.0, lambda _: None, clock)
    first, queued, hung = _message(1), _message(2), _message(3)
    for msg in (first, queued, hung):
        dog.track(msg, 0.0, None)
        dog.validated(msg, uuid.uuid4())
    clock.now = 9.0
    dog.started([first])
    clock.now = 9.5
    assert dog.claim(first)  # a batch finished: the engine moves
    dog.started([hung])  # the next batch starts, and never returns
    clock.now = 19.0
    assert dog.sweep() == [], "waiting behind a moving engine is not stuck"
    clock.now = 19.6
    assert [r.message for r in dog.sweep()] == [queued, hung]


class _Hanging:
    """The real engine, except that a request with note "hang" blocks until released."""

    def __init__(self, inner: InferenceEngine) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        if any(r.note == "hang" for r in batch):
            self.entered.set()
            self.release.wait(TIMEOUT)
            results = self.inner.infer(batch)
            self.returned.set()
            return results
        return self.inner.infer(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _rows(worker: Worker, model: type[Any]) -> int:
    with worker.store.db.read() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def test_a_request_stuck_in_the_engine_is_rejected_acked_and_counted_then_its_late_verdict_dropped(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    tiny_engine: InferenceEngine,
) -> None:
    engine = _Hanging(tiny_engine)
    settings = make_settings(unique, sqlite_url, tmp_path, broker, settle_timeout_s=0.5)
    statuses: queue.Queue[WorkerStatus] = queue.Queue()
    observer.transport.subscribe(
        status_topic(unique), lambda m: statuses.put(WorkerStatus.model_validate_json(m.payload))
    )
    worker = start_worker(settings, engine)
    stuck = make_request(site=unique, note="hang")
    observer.publish(stuck)
    assert engine.entered.wait(TIMEOUT), "the engine never got the request"

    rejected = observer.rejections.get(timeout=TIMEOUT)
    assert rejected.code == Code.INTERNAL_TIMEOUT.value
    assert rejected.request_id == stuck.request_id
    assert "did not answer" in rejected.message
    assert wait_until(lambda: worker.transport.unacked == 0, TIMEOUT), "not acked"
    status = statuses.get(timeout=TIMEOUT)
    while status.settle_timeouts == 0:
        status = statuses.get(timeout=TIMEOUT)
    assert status.settle_timeouts == 1 and status.state == "unhealthy"
    assert worker.metrics.settle_timeouts._value.get() == 1

    engine.release.set()
    assert engine.returned.wait(TIMEOUT)
    worker.stop(timeout=30)  # joins the engine and commit threads: the late result is handled
    assert worker.metrics.late_results._value.get() == 1
    assert (_rows(worker, Inspection), _rows(worker, Verdict), _rows(worker, Rejection)) == (
        0,
        0,
        1,
    )
    assert observer.verdicts.empty()


class _HangingBuckets:
    """The real engine, except that bucketing a 40-pixel-wide photo blocks until released."""

    def __init__(self, inner: InferenceEngine) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.entered = threading.Event()
        self.release = threading.Event()

    def shape_bucket(self, sizes: Sequence[tuple[int, int]]) -> Any:
        if any(width == 40 for width, _ in sizes):
            self.entered.set()
            self.release.wait(TIMEOUT)
        return self.inner.shape_bucket(sizes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_request_stuck_in_validation_is_rejected_and_its_late_result_dropped(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    tiny_engine: InferenceEngine,
) -> None:
    engine = _HangingBuckets(tiny_engine)
    settings = make_settings(unique, sqlite_url, tmp_path, broker, settle_timeout_s=0.5)
    worker = start_worker(settings, engine)
    stuck = make_request(site=unique, images=[ImagePart.from_bytes("image/jpeg", jpeg(40, 32))])
    observer.publish(stuck)
    assert engine.entered.wait(TIMEOUT), "validation never reached the engine's bucketing"
    rejected = observer.rejections.get(timeout=TIMEOUT)
    assert rejected.code == Code.INTERNAL_TIMEOUT.value
    assert rejected.payload_sha256 == sha256_hex(stuck.to_payload())

    engine.release.set()
    late = worker.metrics.late_results
    assert wait_until(lambda: late._value.get() == 1, TIMEOUT), "the late result was not dropped"
    worker.stop(timeout=30)
    rows = (_rows(worker, Inspection), _rows(worker, Verdict), _rows(worker, Rejection))
    assert rows == (0, 0, 1)
