"""`inspector serve` as a real process: killed with SIGKILL mid-batch, stopped with SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspector.protocol import ImagePart, WorkerStatus, status_topic
from inspector.store import Store
from inspector.store.models import Inspection, Verdict
from tests.core.helpers import jpeg, make_request
from tests.fixtures.worker import Observer, forget_session

TIMEOUT = 90.0


@pytest.fixture
def config(
    tmp_path: Path, tiny_model_dir: Path, unique: str, broker: tuple[str, int]
) -> Iterator[Path]:
    cfg = tmp_path / "worker.toml"
    cfg.write_text(
        f"""
[broker]
host = "{broker[0]}"
port = {broker[1]}
session_expiry_s = 300
[store]
url = "sqlite:///{tmp_path / "db.sqlite"}"
blob_dir = "{tmp_path / "blobs"}"
[model]
path = "{tiny_model_dir}"
device = "cpu"
[worker]
session_expiry_s = 300
worker_id = "{unique}"
group = "{unique}"
sites = ["{unique}"]
max_batch = 4
max_wait_ms = 5
metrics_port = 0
"""
    )
    yield cfg
    forget_session(broker, f"inspector-worker-{unique}")


def _serve(config: Path) -> subprocess.Popen[bytes]:
    # Deprecations are printed to the log (Python hides DeprecationWarning outside __main__),
    # so a test can see that serving real batches raises none.
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "default::DeprecationWarning,default::FutureWarning",
    }
    with (config.parent / "worker.log").open("ab") as log:  # the child has its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "inspector", "--config", str(config), "serve"],
            stdout=log,
            stderr=log,
            env=env,
        )


def _deprecations(config: Path) -> list[str]:
    """The worker log's deprecation lines (a library warning about a call of ours)."""
    log = (config.parent / "worker.log").read_text(errors="replace")
    return [line for line in log.splitlines() if re.search(r"(Deprecation|Future)Warning", line)]


def _log(config: Path) -> str:
    return (config.parent / "worker.log").read_text(errors="replace")[-4000:]


def _statuses(observer: Observer, unique: str) -> queue.Queue[str]:
    states: queue.Queue[str] = queue.Queue()
    observer.transport.subscribe(
        status_topic(unique),
        lambda m: states.put(WorkerStatus.model_validate_json(m.payload).state),
    )
    return states


def _rows(tmp_path: Path) -> tuple[int, int, int]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    try:
        with store.db.read() as s:
            inspections = s.scalar(sa.select(sa.func.count()).select_from(Inspection)) or 0
            verdicts = s.scalar(sa.select(sa.func.count()).select_from(Verdict)) or 0
            distinct = s.scalar(sa.select(sa.func.count(sa.distinct(Verdict.inspection_id)))) or 0
        return inspections, verdicts, distinct
    finally:
        store.close()


def test_sigkill_mid_batch_then_restart_gives_exactly_one_verdict_each(
    config: Path, tmp_path: Path, broker: tuple[str, int], unique: str, observer: Observer
) -> None:
    photo = [ImagePart.from_bytes("image/jpeg", jpeg(32, 32))]
    requests = [make_request(site=unique, images=photo, audio=None) for _ in range(60)]
    statuses = _statuses(observer, unique)
    first = _serve(config)
    try:
        # The first start creates the worker's session; from then on the broker queues for it.
        assert statuses.get(timeout=TIMEOUT) == "online", _log(config)
        for req in requests:
            observer.publish(req)
        seen = {observer.verdicts.get(timeout=TIMEOUT).request_id}
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    # Killed mid-stream: part of the work is committed, the rest is still with the broker.
    assert 0 < _rows(tmp_path)[0] < len(requests)
    second = _serve(config)
    try:
        wanted = {r.request_id for r in requests}
        while not wanted <= seen:
            seen.add(observer.verdicts.get(timeout=TIMEOUT).request_id)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, _log(config)
    assert _rows(tmp_path) == (60, 60, 60)
    assert _deprecations(config) == []


def test_sigterm_finishes_the_batch_and_leaves_the_worker_offline(
    config: Path, tmp_path: Path, broker: tuple[str, int], unique: str, observer: Observer
) -> None:
    statuses = _statuses(observer, unique)
    proc = _serve(config)
    try:
        assert statuses.get(timeout=TIMEOUT) == "online"
        req = make_request(site=unique)
        observer.publish(req)
        assert observer.verdicts.get(timeout=TIMEOUT).request_id == req.request_id
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, _log(config)
    assert [statuses.get(timeout=10) for _ in range(2)] == ["draining", "offline"]
    assert _rows(tmp_path) == (1, 1, 1)
