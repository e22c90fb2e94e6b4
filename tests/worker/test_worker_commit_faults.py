"""A group the store keeps refusing is rejected with a code, or the worker says it is unhealthy."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from inspector.errors import Code
from inspector.protocol import WorkerStatus, status_topic
from inspector.store import Store
from inspector.store.models import Inspection, Rejection, Verdict
from inspector.worker import Worker
from tests.core.helpers import make_request
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0


def _inject(store: Store, table: str, body: str) -> None:
    # A real fault inside the real database: every insert into `table` fails.
    with store.db.engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TRIGGER fault_{table} BEFORE INSERT ON {table} BEGIN {body}; END"
        )


def _counts(store: Store) -> tuple[int, int, int]:
    with store.db.read() as s:
        return (
            s.scalar(sa.select(sa.func.count()).select_from(Inspection)) or 0,
            s.scalar(sa.select(sa.func.count()).select_from(Verdict)) or 0,
            s.scalar(sa.select(sa.func.count()).select_from(Rejection)) or 0,
        )


def test_a_verdict_the_store_keeps_refusing_is_rejected_stored_published_and_acked(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(make_settings(unique, sqlite_url, tmp_path, broker))
    # Not a race: a constraint that fails on every attempt (IntegrityError).
    _inject(worker.store, "verdicts", "SELECT RAISE(ABORT, 'injected constraint fault')")
    req = make_request(site=unique)
    observer.publish(req)
    rejected = observer.rejections.get(timeout=TIMEOUT)
    assert rejected.code == Code.COMMIT_FAILED.value
    assert rejected.request_id == req.request_id
    assert _counts(worker.store) == (0, 0, 1)
    with worker.store.db.read() as s:
        assert s.scalar(sa.select(Rejection.code)) == Code.COMMIT_FAILED.value
    metric = worker.metrics.registry.get_sample_value
    assert metric("inspector_requests_total", {"outcome": "rejected"}) == 1
    assert (metric("inspector_store_errors_total") or 0) >= 3
    assert metric("inspector_worker_healthy") == 1
    # Acked: the worker's queue holds nothing for it, and the next request still works.
    second = make_request(site=unique)
    observer.publish(second)
    again = observer.rejections.get(timeout=TIMEOUT)
    assert again.request_id == second.request_id


def test_a_store_that_refuses_even_the_rejection_marks_the_worker_unhealthy(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(make_settings(unique, sqlite_url, tmp_path, broker))
    states: queue.Queue[str] = queue.Queue()
    observer.transport.subscribe(
        status_topic(unique),
        lambda m: states.put(WorkerStatus.model_validate_json(m.payload).state),
    )
    _inject(worker.store, "verdicts", "SELECT RAISE(ABORT, 'injected constraint fault')")
    # An unexpected failure: the trigger reads a table that does not exist.
    _inject(worker.store, "rejections", "SELECT * FROM missing_table")
    observer.publish(make_request(site=unique))
    seen = [states.get(timeout=TIMEOUT)]
    while seen[-1] != "unhealthy":
        seen.append(states.get(timeout=TIMEOUT))
    assert seen[-1] == "unhealthy"
    healthy = worker.metrics.registry.get_sample_value("inspector_worker_healthy")
    assert healthy == 0
    assert _counts(worker.store) == (0, 0, 0)
