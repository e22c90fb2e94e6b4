"""Verdict first through the worker: a rationale follows its verdict, or is marked not produced
when the worker dies in between; never a lost or a repeated verdict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspector.errors import Code
from inspector.protocol import (
    DefectFinding,
    Judgement,
    RationaleState,
    VerdictMessage,
    utcnow,
)
from inspector.settings import ModelSettings, Settings
from inspector.store import Batch, RationaleUpdate, Store
from inspector.store.models import Inspection, Verdict
from inspector.worker import Worker
from tests.core.helpers import make_request
from tests.fixtures.worker import Observer, forget_session, make_settings

TIMEOUT = 60.0
REPO = Path(__file__).resolve().parents[2]


def _rows(store: Store) -> list[tuple[str, str, str]]:
    """(request_id, rationale_state, worker_id) of every stored verdict."""
    with store.db.read() as s:
        return [
            (rid, state, worker)
            for rid, state, worker in s.execute(
                sa.select(Inspection.request_id, Verdict.rationale_state, Verdict.worker_id).join(
                    Verdict
                )
            )
        ]


@pytest.fixture
def stalled_worker(
    tmp_path: Path, tiny_model_dir: Path, sqlite_url: str, broker: tuple[str, int], unique: str
) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Starts `tests.fixtures.stalled_worker`: it never gets past its verdicts' rationales."""
    procs: list[subprocess.Popen[str]] = []
    settings = make_settings(unique, sqlite_url, tmp_path, broker, worker_id=f"{unique}-dies")
    settings = settings.model_copy(
        update={"model": ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=4)}
    )
    config = tmp_path / "stalled.json"
    config.write_text(settings.model_dump_json())

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.stalled_worker", str(config)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)
    forget_session(broker, f"inspector-worker-{unique}-dies")


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # bounded: the process prints its lines or dies
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"{text!r} never printed:\n{''.join(seen[-30:])}")


def test_a_worker_killed_between_verdict_and_rationale_leaves_one_verdict_marked_not_produced(
    tmp_path: Path,
    sqlite_url: str,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    stalled_worker: Callable[[], subprocess.Popen[str]],
    start_worker: Callable[..., Worker],
) -> None:
    dying = stalled_worker()
    _wait_for_line(dying, "worker ready")
    request = make_request(site=unique)
    observer.publish(request)
    verdict = observer.verdicts.get(timeout=TIMEOUT)
    assert verdict.request_id == request.request_id
    assert verdict.rationale_state is RationaleState.PENDING
    _wait_for_line(dying, "verdicts announced")
    os.kill(dying.pid, signal.SIGKILL)
    dying.wait(10)

    # A live worker of the same group finds the rationale pending past its timeout.
    live = start_worker(
        make_settings(unique, sqlite_url, tmp_path, broker, rationale_timeout_s=0.5)
    )
    mark = observer.rationales.get(timeout=TIMEOUT)
    assert mark.request_id == request.request_id and mark.part_id == request.part_id
    assert mark.rationale_state is RationaleState.NOT_PRODUCED
    assert mark.reason == Code.RATIONALE_WORKER_LOST.value and mark.worker_id == unique
    # The verdict stands, stored and published once: the request was acked with it.
    assert _rows(live.store) == [(str(request.request_id), "not_produced", f"{unique}-dies")]
    assert observer.verdicts.empty() and observer.rationales.empty()
    assert live.committer.sweep_rationales() == 0  # marked once, by one worker


def _judged(request_id: object, worker: str, **fields: object) -> VerdictMessage:
    request = make_request(request_id=request_id)
    judgement = Judgement(
        verdict="FAIL",
        confidence=0.8,
        p_pass=0.2,
        rationale="",
        rationale_state=RationaleState.PENDING,
        model="tiny",
        adapter="base",
        prompt_version="v1",
    )
    message = {
        **judgement.model_dump(),
        "worker_id": worker,
        "latency_ms": 10.0,
        "decided_at": utcnow() - timedelta(seconds=120),
        **fields,
    }
    return VerdictMessage(
        request_id=request.request_id,
        site=request.site,
        line=request.line,
        station=request.station,
        part_id=request.part_id,
        **message,
    )


def _update(request_id: object, worker: str, text: str) -> RationaleUpdate:
    return RationaleUpdate(
        request_id=str(request_id),
        worker_id=worker,
        model="tiny",
        adapter="base",
        prompt_version="v1",
        state=RationaleState.PRODUCED,
        rationale=text,
        defects=[DefectFinding(type="dent", where="left flange")],
    )


def test_only_the_deciding_worker_writes_a_rationale_and_a_late_one_replaces_the_mark(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url, tmp_path / "blobs")
    store.upgrade()
    try:
        request = make_request()
        rid = request.request_id
        store.answer(Batch(requests=[request], verdicts=[_judged(rid, "w1")]))
        # Another worker (a redelivery that lost the race) does not overwrite w1's verdict.
        (other,) = store.answer(Batch(rationales=[_update(rid, "w2", "not mine")])).rationales
        assert other is None
        # Pending for two minutes: a live worker marks it not produced, once.
        marked = store.expire_rationales(utcnow() - timedelta(seconds=60), "w3", utcnow())
        assert [(m.request_id, m.rationale_state, m.reason) for m in marked] == [
            (rid, RationaleState.NOT_PRODUCED, Code.RATIONALE_WORKER_LOST.value)
        ]
        assert store.expire_rationales(utcnow(), "w3", utcnow()) == []
        with store.db.read() as s:
            assert s.scalar(sa.select(Verdict.rationale_reason)) == "rationale.worker_lost"
        # w1 was slow, not dead: its rationale arrives after all and replaces the mark.
        (late,) = store.answer(Batch(rationales=[_update(rid, "w1", "FAIL: dent")])).rationales
        assert late is not None and late.rationale_state is RationaleState.PRODUCED
        assert late.rationale == "FAIL: dent" and late.defects[0].type == "dent"
        with store.db.read() as s:
            row = s.scalar(sa.select(Verdict))
            assert row is not None
            assert (row.rationale, row.rationale_state) == ("FAIL: dent", "produced")
            assert row.rationale_reason is None  # the mark's reason went with it
            assert row.defects == [{"type": "dent", "where": "left flange"}]
        # A final rationale is never written again.
        (again,) = store.answer(Batch(rationales=[_update(rid, "w1", "other")])).rationales
        assert again is None
    finally:
        store.close()


def test_a_recent_pending_rationale_is_left_alone(sqlite_url: str, tmp_path: Path) -> None:
    store = Store(sqlite_url, tmp_path / "blobs")
    store.upgrade()
    try:
        request = make_request()
        fresh = _judged(request.request_id, "w1", decided_at=utcnow())
        store.answer(Batch(requests=[request], verdicts=[fresh]))
        assert store.expire_rationales(utcnow() - timedelta(seconds=60), "w2", utcnow()) == []
    finally:
        store.close()


def test_settings_reject_a_rationale_policy_they_do_not_know() -> None:
    with pytest.raises(ValueError, match="rationale"):
        Settings.model_validate({"sites": {"default": {"rationale": "pass_only"}}})
