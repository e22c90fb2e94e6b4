"""The worker on the real broker, a real database and the tiny real model."""

from __future__ import annotations

import base64
import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspector.errors import Code
from inspector.protocol import (
    Decision,
    ImagePart,
    RationaleState,
    StationKey,
    WorkerStatus,
    status_topic,
)
from inspector.settings import LimitSettings
from inspector.store import Store
from inspector.store.models import Inspection, Rejection, Verdict
from inspector.worker import Worker
from tests.core.helpers import jpeg, make_request
from tests.fixtures.services import TcpRelay
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0


def _counts(store: Store) -> tuple[int, int, int]:
    with store.db.read() as s:
        return (
            s.scalar(sa.select(sa.func.count()).select_from(Inspection)) or 0,
            s.scalar(sa.select(sa.func.count()).select_from(Verdict)) or 0,
            s.scalar(sa.select(sa.func.count()).select_from(Rejection)) or 0,
        )


def _request(site: str, station: str = "s1", **kw):  # type: ignore[no-untyped-def]
    return make_request(site=site, station=station, **kw)


def test_round_trip_publishes_the_verdict_then_its_rationale_and_stores_both(
    db_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(make_settings(unique, db_url, tmp_path, broker))
    req = _request(unique)
    observer.publish(req)
    verdict = observer.verdicts.get(timeout=TIMEOUT)
    assert verdict.request_id == req.request_id
    assert verdict.verdict in set(Decision)
    assert 0.5 <= verdict.confidence <= 1
    assert verdict.worker_id == unique and verdict.prompt_version
    # Verdict first: published after the prefill, its rationale still to come.
    assert verdict.rationale_state is RationaleState.PENDING and verdict.rationale == ""
    rationale = observer.rationales.get(timeout=TIMEOUT)
    assert rationale.request_id == req.request_id and rationale.part_id == req.part_id
    assert rationale.rationale_state is RationaleState.PRODUCED and rationale.rationale
    assert rationale.worker_id == unique and rationale.reason is None
    assert _counts(worker.store) == (1, 1, 0)
    with worker.store.db.read() as s:
        row = s.scalar(sa.select(Verdict))
        assert row is not None and row.rationale == rationale.rationale
        assert row.rationale_state == "produced"


def test_status_is_retained_online_then_offline_after_stop(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(make_settings(unique, sqlite_url, tmp_path, broker))
    seen: queue.Queue[WorkerStatus] = queue.Queue()
    watcher = Observer(broker, unique)
    watcher.transport.subscribe(
        status_topic(unique), lambda m: seen.put(WorkerStatus.model_validate_json(m.payload))
    )
    try:
        assert seen.get(timeout=10).state == "online"
        worker.stop(timeout=10)
        states = [seen.get(timeout=10).state for _ in range(2)]
        assert states == ["draining", "offline"]
    finally:
        watcher.close()


def test_redelivered_request_republishes_the_stored_verdict_without_new_rows(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(make_settings(unique, sqlite_url, tmp_path, broker))
    req = _request(unique)
    observer.publish(req)
    first = observer.verdicts.get(timeout=TIMEOUT)
    rationale = observer.rationales.get(timeout=TIMEOUT)
    observer.publish(req)  # the edge retrying after a lost PUBACK
    second = observer.verdicts.get(timeout=TIMEOUT)
    # The stored verdict again, its rationale written in since it was first published.
    assert second == first.with_rationale(rationale)
    assert observer.rationales.empty()
    assert _counts(worker.store) == (1, 1, 0)


def test_many_publishers_get_one_verdict_each(
    db_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(make_settings(unique, db_url, tmp_path, broker, max_batch=16))
    photo = [ImagePart.from_bytes("image/jpeg", jpeg(32, 32))]
    requests = [_request(unique, station=f"s{i % 4}", images=photo, audio=None) for i in range(200)]
    errors: list[BaseException] = []

    def publish(chunk: list) -> None:  # type: ignore[type-arg]
        pub = Observer(broker, unique)
        try:
            for req in chunk:
                pub.publish(req)
        except BaseException as exc:
            errors.append(exc)
        finally:
            pub.close()

    threads = [threading.Thread(target=publish, args=(requests[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
    verdicts = observer.collect_verdicts(200, timeout=TIMEOUT)
    assert {v.request_id for v in verdicts} == {r.request_id for r in requests}
    assert _counts(worker.store) == (200, 200, 0)
    with worker.store.db.read() as s:
        dupes = s.execute(
            sa.select(Verdict.inspection_id)
            .group_by(Verdict.inspection_id)
            .having(sa.func.count() > 1)
        ).all()
    assert dupes == []
    assert worker.metrics.batch_size._sum.get() == 200  # every request went through a batch


def test_bad_payloads_are_rejected_with_reasons_and_the_worker_keeps_serving(
    db_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    settings = make_settings(unique, db_url, tmp_path, broker)
    settings = settings.model_copy(update={"limits": LimitSettings(max_payload_bytes=200_000)})
    worker = start_worker(settings)
    station = StationKey(unique, "l1", "s1")
    good = _request(unique)
    observer.publish(good)
    observer.verdicts.get(timeout=TIMEOUT)

    body = json.loads(_request(unique).to_payload())
    body["images"][0]["data"] = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()
    body["images"][0]["sha256"] = (
        __import__("hashlib").sha256(b"\xff\xd8\xff\xe0 not really a jpeg").hexdigest()
    )
    conflicting = good.model_copy(update={"part_id": "another part"})
    bad = {
        Code.PAYLOAD_NOT_JSON: b"this is not json",
        Code.PAYLOAD_INVALID: json.dumps({**body, "site": "Not A Slug"}).encode(),
        Code.IMAGE_UNDECODABLE: json.dumps(body).encode(),
        Code.PAYLOAD_TOO_LARGE: b"{" + b" " * 250_000 + b"}",
        Code.DUPLICATE_CONFLICT: conflicting.to_payload(),
    }
    for payload in bad.values():
        observer.publish_raw(station, payload)
    got = {observer.rejections.get(timeout=TIMEOUT).code for _ in bad}
    assert got == {c.value for c in bad}

    after = _request(unique)
    observer.publish(after)
    assert observer.verdicts.get(timeout=TIMEOUT).request_id == after.request_id
    with worker.store.db.read() as s:
        rows = {r.code: r for r in s.scalars(sa.select(Rejection))}
    assert set(rows) == {c.value for c in bad}
    assert rows["payload.not_json"].payload == b"this is not json"
    assert rows["request.duplicate_conflict"].request_id == str(good.request_id)
    assert _counts(worker.store)[:2] == (2, 2)


def test_two_workers_split_the_shared_subscription(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    a = start_worker(
        make_settings(unique, sqlite_url, tmp_path, broker, worker_id=f"{unique}-a", max_batch=2)
    )
    b = start_worker(
        make_settings(unique, sqlite_url, tmp_path, broker, worker_id=f"{unique}-b", max_batch=2)
    )
    photo = [ImagePart.from_bytes("image/jpeg", jpeg(32, 32))]
    requests = [_request(unique, images=photo, audio=None) for _ in range(40)]
    for req in requests:
        observer.publish(req)
    verdicts = observer.collect_verdicts(40, timeout=TIMEOUT)
    by_worker = {w: sum(v.worker_id == w for v in verdicts) for w in (a.worker_id, b.worker_id)}
    assert sum(by_worker.values()) == 40
    assert all(n > 0 for n in by_worker.values()), by_worker
    assert _counts(a.store) == (40, 40, 0)


def test_database_outage_holds_acks_and_recovers_with_nothing_lost(
    pg_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    proxy = TcpRelay(("127.0.0.1", 5432))
    proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = make_settings(unique, url, tmp_path, broker)
    worker = start_worker(settings)
    first = _request(unique)
    observer.publish(first)
    observer.verdicts.get(timeout=TIMEOUT)

    proxy.stop()
    during = [_request(unique) for _ in range(5)]
    for req in during:
        observer.publish(req)
    # No verdict may be published while nothing can be committed.
    with pytest.raises(queue.Empty):
        observer.verdicts.get(timeout=3)
    # A restart during the outage proves nothing was acked: the broker still holds them.
    worker.stop(timeout=15)
    proxy.start()
    again = start_worker(settings)
    got = observer.collect_verdicts(5, timeout=TIMEOUT)
    assert {v.request_id for v in got} == {r.request_id for r in during}
    assert _counts(again.store) == (6, 6, 0)
    assert worker.metrics.store_errors._value.get() >= 1
    proxy.stop()


def test_engine_failure_rejects_only_the_failing_request(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    tiny_engine,  # type: ignore[no-untyped-def]
) -> None:
    poison = "POISON"

    class Failing:
        """The real engine, with one request that always fails inside it."""

        def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
            self.inner = inner
            self.model_name = inner.model_name
            self.calls: list[int] = []

        def infer(self, batch, on_verdicts=None):  # type: ignore[no-untyped-def]
            self.calls.append(len(batch))
            if any(r.note == poison for r in batch):
                raise RuntimeError("kernel fault")
            return self.inner.infer(batch)

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.inner, name)

    engine = Failing(tiny_engine)
    worker = start_worker(
        make_settings(unique, sqlite_url, tmp_path, broker, max_wait_ms=500), engine
    )
    reqs = [_request(unique), _request(unique, note=poison), _request(unique)]
    for req in reqs:
        observer.publish(req)
    verdicts = observer.collect_verdicts(2, timeout=TIMEOUT)
    rejected = observer.rejections.get(timeout=TIMEOUT)
    assert rejected.code == Code.ENGINE_FAILED.value
    assert rejected.request_id == reqs[1].request_id
    assert {v.request_id for v in verdicts} == {reqs[0].request_id, reqs[2].request_id}
    assert _counts(worker.store) == (2, 2, 1)
    assert 1 in engine.calls  # the failing request was retried alone
