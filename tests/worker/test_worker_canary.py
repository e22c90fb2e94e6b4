"""Golden parts: the canary sends reviewed inspections to each running worker through the
broker, never to a station or the store, and catches an adapter swapped under a worker within
one canary period."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from inspector.canary import Canary
from inspector.cli import app
from inspector.engine.types import EngineRequest, InferenceEngine
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    CanaryHealth,
    VerdictMessage,
    WorkerStatus,
    adapter_control_topic,
    canary_health_topic,
    canary_request_topic,
    status_topic,
    utcnow,
)
from inspector.quality.decision import leaning
from inspector.settings import BrokerSettings, CanarySettings, ModelSettings
from inspector.store import ReviewInput, Store, record_review
from inspector.store.adapters import AdapterStatus, register_adapter, set_status
from inspector.store.models import Inspection, Verdict
from inspector.worker import Worker
from tests.core.helpers import make_request
from tests.fixtures.model import adapter_sha256
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0
PERIOD_S = 3.0
# An answer comes back well within this on the tiny model (one batch on the CPU).
ANSWER_BUDGET_S = 10.0


@pytest.fixture(scope="module")
def canary_engine(tiny_model_dir: Path) -> InferenceEngine:
    """An engine of its own: these tests swap its site adapter behind the worker's back."""
    from inspector.engine import load_engine

    return load_engine(ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=2), {})


class HealthWatch:
    """The canary's word on workers, as it publishes it."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[float, CanaryHealth]] = queue.Queue()

    def put(self, health: CanaryHealth) -> None:
        self.seen.put((time.monotonic(), health))

    def until(
        self, worker_id: str, check: Callable[[CanaryHealth], bool]
    ) -> tuple[float, CanaryHealth]:
        """The first health of `worker_id` passing `check`, and when it came (bounded wait)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            at, health = self.seen.get(timeout=max(0.1, deadline - time.monotonic()))
            if health.worker_id == worker_id and check(health):
                return at, health


@pytest.fixture
def clean_retained(broker: tuple[str, int], unique: str) -> Iterator[list[str]]:
    """Topics whose retained message the test leaves: cleared afterwards."""
    topics = [adapter_control_topic(unique), canary_health_topic(unique)]
    yield topics
    with MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"c-{unique}", clean_start=True
    ) as cleaner:
        assert cleaner.wait_connected(10)
        for topic in topics:
            cleaner.publish_and_wait(topic, b"", 10, retain=True)


def _serve_v1(store: Store, site: str, adapter: Path) -> None:
    with store.db.write() as session:
        row = register_adapter(
            session,
            site=site,
            name=site,
            path=str(adapter),
            sha256=adapter_sha256(adapter),
            base_model="b" * 64,
            actor="trainer",
        )
        set_status(session, row.ref, AdapterStatus.ACTIVE, action="promote", actor="qe")


def _review_as_answered(store: Store, verdicts: list[VerdictMessage]) -> None:
    """A reviewer agrees with each verdict's leaning (the answer a golden part must keep)."""
    import uuid

    with store.db.write() as session:
        for v in verdicts:
            final = leaning(v.p_pass).value
            record_review(
                session,
                ReviewInput(
                    review_id=uuid.uuid4(),
                    request_id=v.request_id,
                    decision="confirm" if v.verdict.value == final else "answer",
                    final_verdict=final,  # type: ignore[arg-type]
                    reviewer="qe",
                ),
            )


def _swap_weights_in_memory(engine: InferenceEngine, site: str, other: Path) -> None:
    """Tamper with a running engine: another adapter's weights in the site's served adapter.

    The registry, the engine's own record and the worker's status still name version 1 and
    its sha256; only the answers can tell.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from inspector.engine.adapters import site_key
    from inspector.engine.lora import WEIGHTS_FILE

    served = engine.site_adapters()[site]  # type: ignore[attr-defined]
    with engine._batch_lock:  # type: ignore[attr-defined]  # between batches, as a swap is
        result = set_peft_model_state_dict(
            engine._adapters._model,  # type: ignore[attr-defined]
            load_file(str(other / WEIGHTS_FILE)),
            adapter_name=site_key(served.name, served.version),
        )
    assert not result.unexpected_keys
    assert engine.site_adapters()[site] == served  # type: ignore[attr-defined]


def _start_canary(
    broker: tuple[str, int], unique: str, store: Store, watch: HealthWatch
) -> tuple[Canary, threading.Event, threading.Thread]:
    transport = MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"canary-{unique}", clean_start=True
    )
    canary = Canary(transport, store, CanarySettings(period_s=PERIOD_S, tolerance=0.01))
    canary.on_health = watch.put
    assert canary.start(10)
    stop = threading.Event()
    thread = threading.Thread(target=canary.run, args=(stop,), daemon=True)
    return canary, stop, thread


def test_the_canary_catches_an_adapter_swapped_in_a_running_worker_within_one_period(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    canary_engine: InferenceEngine,
    make_site_adapter: Callable[[str, int], Path],
    clean_retained: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Which rows the engine was asked to explain: golden parts are judged by verdict alone.
    explained: dict[str, bool] = {}
    infer = canary_engine.infer

    def recording(batch: list[EngineRequest], *args: object) -> object:
        explained.update((r.request_id, r.explain) for r in batch)
        return infer(batch, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(canary_engine, "infer", recording)
    settings = make_settings(unique, sqlite_url, tmp_path, broker, max_batch=4)
    store = Store.from_settings(settings.store)
    store.upgrade()
    _serve_v1(store, unique, make_site_adapter("golden", 31))
    worker = start_worker(settings, canary_engine)
    requests = [make_request(site=unique, audio=None, part_id=f"G-{i}") for i in range(3)]
    for request in requests:
        observer.publish(request)
    verdicts = observer.collect_verdicts(len(requests), timeout=TIMEOUT)
    assert {(v.adapter, v.adapter_version) for v in verdicts} == {(unique, 1)}
    _review_as_answered(store, verdicts)
    env = {"INSPECTOR_STORE__URL": sqlite_url, "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs")}
    for v in verdicts:
        result = CliRunner().invoke(
            app, ["golden", "mark", str(v.request_id), "--by", "qe"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "marked golden" in result.output
    with store.db.read() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(Inspection))

    watch = HealthWatch()
    # What the worker's canary topic carries, seen beside the worker.
    seen: queue.Queue[Message] = queue.Queue()
    tap = MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"tap-{unique}", clean_start=True
    )
    tap.subscribe(canary_request_topic(unique), seen.put, qos=1)
    tap.start()
    assert tap.wait_subscribed(10)
    canary, stop, thread = _start_canary(broker, unique, store, watch)
    try:
        thread.start()
        # Each golden part expires with its period: a worker away for longer is not handed
        # a backlog of stale parts when it comes back.
        sent = seen.get(timeout=TIMEOUT)
        assert sent.expiry_s is not None and 0 < sent.expiry_s <= PERIOD_S
        # The first full period: every golden part answered as reviewed by unique@1.
        _, ok = watch.until(unique, lambda h: h.state != "failing" and h.checked == 3)
        assert ok.state == "ok" and ok.adapters == [f"{unique}={unique}@1"]
        _swap_weights_in_memory(canary_engine, unique, make_site_adapter("golden", 32))
        swapped_at = time.monotonic()
        caught_at, failing = watch.until(unique, lambda h: h.state == "failing")
    finally:
        stop.set()
        thread.join(TIMEOUT)
        canary.stop()
        tap.stop()
    detection_s = caught_at - swapped_at
    print(f"canary detection time: {detection_s:.2f} s (period {PERIOD_S:g} s)")
    assert detection_s <= PERIOD_S + ANSWER_BUDGET_S
    assert failing.mismatches >= 1 and failing.problems
    assert f"{unique}@1" in failing.problems[0]
    metric = canary.metrics.registry.get_sample_value
    assert metric("inspector_canary_failing", {"worker": unique}) == pytest.approx(1)
    assert (
        metric(
            "inspector_canary_mismatches_total",
            {"worker": unique, "site": unique, "adapter": f"{unique}@1"},
        )
        or 0
    ) >= 1
    # Canary answers reach no station and no table.
    assert observer.verdicts.empty()
    with store.db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Inspection)) == stored
        assert session.scalar(sa.select(sa.func.count()).select_from(Verdict)) == len(verdicts)
    assert worker.metrics.registry.get_sample_value("inspector_worker_canary_answers_total") >= 6
    station = {str(r.request_id) for r in requests}
    assert all(explained[rid] for rid in station)  # the station's parts got rationales
    golden = {rid: wanted for rid, wanted in explained.items() if rid not in station}
    assert len(golden) >= 6 and not any(golden.values())  # no decode for golden parts
    store.close()


def test_a_worker_that_does_not_answer_its_golden_parts_is_reported_missing(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    canary_engine: InferenceEngine,
    clean_retained: list[str],
) -> None:
    settings = make_settings(unique, sqlite_url, tmp_path, broker)
    store = Store.from_settings(settings.store)
    store.upgrade()
    start_worker(settings, canary_engine)
    request = make_request(site=unique, audio=None)
    observer.publish(request)
    (verdict,) = observer.collect_verdicts(1, timeout=TIMEOUT)
    _review_as_answered(store, [verdict])
    from inspector.store.golden import mark_golden

    with store.db.write() as session:
        mark_golden(session, verdict.request_id, "qe")
    # A worker that says it is online for the site but is not there to answer.
    ghost = f"{unique}-ghost"
    clean_retained.append(status_topic(ghost))
    clean_retained.append(canary_health_topic(ghost))
    with MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"g-{unique}", clean_start=True
    ) as fake:
        assert fake.wait_connected(10)
        status = WorkerStatus(
            worker_id=ghost, state="online", version="0", updated_at=utcnow(), sites=[unique]
        )
        fake.publish_and_wait(status_topic(ghost), status.to_payload(), 10, retain=True)
    watch = HealthWatch()
    canary, stop, thread = _start_canary(broker, unique, store, watch)
    try:
        thread.start()
        _, missing = watch.until(ghost, lambda h: h.state == "failing")
        _, answered = watch.until(unique, lambda h: h.state == "ok")
    finally:
        stop.set()
        thread.join(TIMEOUT)
        canary.stop()
    assert (missing.missing, missing.mismatches) == (1, 0)
    assert "no answer" in missing.problems[0]
    assert answered.checked == 1
    missed = canary.metrics.registry.get_sample_value(
        "inspector_canary_missing_total", {"worker": ghost, "site": unique, "adapter": "none"}
    )
    assert missed is not None and missed >= 1
    store.close()
