"""Shadow adapters: a candidate judges a share of a site's live requests again, in the same
batch, through the real broker; only the champion's verdict is published, the shadow's are
stored apart, and the promotion gate waits for enough reviewed shadow inspections."""

from __future__ import annotations

import queue
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from inspector.cli import app
from inspector.engine.types import InferenceEngine
from inspector.errors import RegistryRefused
from inspector.mqtt import MqttTransport
from inspector.protocol import (
    SiteAdapterState,
    WorkerStatus,
    adapter_control_topic,
    status_topic,
)
from inspector.quality import Outcome
from inspector.settings import BrokerSettings, ModelSettings, SiteProfile
from inspector.store import Store
from inspector.store.adapters import (
    AdapterStatus,
    active_adapter,
    audit_trail,
    find_adapter,
    record_metrics,
    register_adapter,
    set_status,
)
from inspector.store.datasets import SnapshotRecord
from inspector.store.models import Inspection, ShadowVerdict, Verdict
from inspector.store.reviews import ReviewInput, record_review
from inspector.store.shadow import reviewed_pairs
from inspector.train.evaluate import compare
from inspector.train.registry import promote
from inspector.worker import Worker
from inspector.worker.shadow import chosen
from tests.core.helpers import make_request
from tests.fixtures.edge import wait_until
from tests.fixtures.model import adapter_sha256
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0
SNAPSHOT = SnapshotRecord(1, "site", "0" * 64, None, None, 0.25, {}, "qe", None, ())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shadow_engine(tiny_model_dir: Path) -> InferenceEngine:
    """An engine of its own: these tests attach site and shadow adapters."""
    from inspector.engine import load_engine

    return load_engine(ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=4), {})


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path, broker: tuple[str, int]) -> dict[str, str]:
    return {
        "INSPECTOR_STORE__URL": sqlite_url,
        "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs"),
        "INSPECTOR_BROKER__HOST": broker[0],
        "INSPECTOR_BROKER__PORT": str(broker[1]),
    }


@pytest.fixture
def clean_control(broker: tuple[str, int], unique: str) -> Iterator[None]:
    yield
    with MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"c-{unique}", clean_start=True
    ) as cleaner:
        assert cleaner.wait_connected(10)
        cleaner.publish_and_wait(adapter_control_topic(unique), b"", 10, retain=True)


class StatusWatch:
    def __init__(self, broker: tuple[str, int], worker_id: str) -> None:
        self.seen: queue.Queue[WorkerStatus] = queue.Queue()
        self.transport = MqttTransport(
            BrokerSettings(host=broker[0], port=broker[1]), f"st-{worker_id}", clean_start=True
        )
        self.transport.subscribe(
            status_topic(worker_id),
            lambda m: self.seen.put(WorkerStatus.model_validate_json(m.payload)),
        )
        self.transport.start()
        assert self.transport.wait_subscribed(10)

    def until(self, site: str, check: Callable[[SiteAdapterState], bool]) -> SiteAdapterState:
        while True:
            status = self.seen.get(timeout=TIMEOUT)
            for state in status.site_adapters:
                if state.site == site and check(state):
                    return state


def _register(store: Store, site: str, adapter: Path, evaluated: bool = False) -> str:
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
        if evaluated:  # a holdout on which it lets no more defects pass than the active one
            scored = [Outcome("PASS", 0.9)] * 4 + [Outcome("FAIL", 0.1)] * 4
            evaluation = compare(
                scored,
                scored,
                SiteProfile(),
                row.ref,
                active_adapter(session, site),
                SNAPSHOT,
            )
            record_metrics(session, row.ref, {"eval": evaluation.model_dump(mode="json")}, "t")
    return row.ref


def _review(store: Store, request_id: uuid.UUID, final: str) -> None:
    with store.db.write() as session:
        record_review(
            session,
            ReviewInput(
                review_id=uuid.uuid4(),
                request_id=request_id,
                decision="answer",
                final_verdict=final,  # type: ignore[arg-type]
                reviewer="qe",
            ),
        )


def test_a_shadow_candidate_judges_live_requests_twice_and_only_the_champion_is_published(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    env: dict[str, str],
    observer: Observer,
    start_worker: Callable[..., Worker],
    shadow_engine: InferenceEngine,
    make_site_adapter: Callable[[str, int], Path],
    clean_control: None,
) -> None:
    settings = make_settings(unique, sqlite_url, tmp_path, broker, max_batch=8)
    store = Store.from_settings(settings.store)
    store.upgrade()
    champion = _register(store, unique, make_site_adapter("champ", 31))
    with store.db.write() as session:
        set_status(session, champion, AdapterStatus.ACTIVE, action="promote", actor="qe")
    challenger = _register(store, unique, make_site_adapter("chal", 32), evaluated=True)
    watch = StatusWatch(broker, unique)
    try:
        worker = start_worker(settings, shadow_engine)
        watch.until(unique, lambda s: s.version == 1 and s.shadow is None)
        result = CliRunner().invoke(
            app, ["adapters", "shadow", challenger, "--share", "1", "--by", "qe-lead"], env=env
        )
        assert result.exit_code == 0, result.output
        assert "shadow" in result.output
        shadowing = watch.until(unique, lambda s: s.shadow is not None)
        assert shadowing.shadow is not None and shadowing.shadow.version == 2
        assert shadowing.shadow_error is None and shadowing.version == 1
        requests = [make_request(site=unique, audio=None, part_id=f"P-{i}") for i in range(4)]
        for request in requests:
            observer.publish(request)
        verdicts = observer.collect_verdicts(len(requests), timeout=TIMEOUT)
        # Every live verdict's rationale follows from the same batches as the shadow rows.
        for _ in requests:
            observer.rationales.get(timeout=TIMEOUT)
        stored = wait_until(lambda: _shadow_count(store) == len(requests), TIMEOUT)
    finally:
        watch.transport.stop()
    assert observer.verdicts.empty(), "a shadow verdict was published"
    assert sorted(str(v.request_id) for v in verdicts) == sorted(
        str(r.request_id) for r in requests
    )
    assert {(v.adapter, v.adapter_version) for v in verdicts} == {(unique, 1)}
    assert stored, "the shadow verdicts were not stored"
    with store.db.read() as session:
        live = session.execute(sa.select(Verdict.adapter, Verdict.adapter_version)).all()
        shadows = session.scalars(sa.select(ShadowVerdict)).all()
        inspections = session.execute(sa.select(Inspection.adapter, Inspection.verdict)).all()
    assert sorted(live) == [(unique, 1)] * len(requests)
    assert {(s.adapter, s.adapter_version) for s in shadows} == {(unique, 2)}
    assert sorted(s.request_id for s in shadows) == sorted(str(r.request_id) for r in requests)
    assert {a for a, _ in inspections} == {unique}
    metric = worker.metrics.registry.get_sample_value
    assert metric("inspector_shadow_rows_per_batch_sum") == pytest.approx(len(requests))
    assert (metric("inspector_shadow_engine_seconds_total") or 0) > 0

    # The gate: two reviewed shadow inspections required, then the candidate may go.
    def need_two(site: str) -> int:
        return 2

    with pytest.raises(RegistryRefused, match="0 reviewed shadow inspection"):
        promote(store, challenger, "qe-lead", min_shadow_reviews=need_two)
    _review(store, requests[0].request_id, "PASS")
    with pytest.raises(RegistryRefused, match="1 reviewed shadow inspection"):
        promote(store, challenger, "qe-lead", min_shadow_reviews=need_two)
    _review(store, requests[1].request_id, "FAIL")
    with store.db.read() as session:
        assert len(reviewed_pairs(session, unique, 2)) == 2
    change = promote(store, challenger, "qe-lead", min_shadow_reviews=need_two)
    assert change.active is not None and change.active.ref == challenger
    assert change.shadow is None  # promoted out of the shadow
    with store.db.read() as session:
        trail = [(a.adapter, a.action, a.to_status) for a in audit_trail(session, site=unique)]
        assert find_adapter(session, challenger).status is AdapterStatus.ACTIVE
    assert (challenger, "shadow", "shadow") in trail
    assert trail[-1] == (challenger, "promote", "active")
    store.close()


def _shadow_count(store: Store) -> int:
    with store.db.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(ShadowVerdict)) or 0)


def test_a_share_chooses_requests_by_their_id_the_same_way_every_time() -> None:
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(2000)]
    picked = [i for i in ids if chosen(i, 0.2)]
    assert 0.15 < len(picked) / len(ids) < 0.25
    assert picked == [i for i in ids if chosen(i, 0.2)]
    assert all(chosen(i, 1.0) for i in ids) and not any(chosen(i, 0.0) for i in ids)


def test_a_shadow_adapter_that_cannot_be_loaded_leaves_the_site_judged_once_and_says_so(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    env: dict[str, str],
    observer: Observer,
    start_worker: Callable[..., Worker],
    shadow_engine: InferenceEngine,
    make_site_adapter: Callable[[str, int], Path],
    clean_control: None,
) -> None:
    settings = make_settings(unique, sqlite_url, tmp_path, broker)
    store = Store.from_settings(settings.store)
    store.upgrade()
    tampered = tmp_path / "tampered"
    shutil.copytree(make_site_adapter("chal", 33), tampered)
    challenger = _register(store, unique, tampered)
    weights = tampered / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # changed after registration
    watch = StatusWatch(broker, unique)
    try:
        worker = start_worker(settings, shadow_engine)
        watch.until(unique, lambda s: s.state == "serving")
        result = CliRunner().invoke(
            app, ["adapters", "shadow", challenger, "--share", "1"], env=env
        )
        assert result.exit_code == 0, result.output
        failed = watch.until(unique, lambda s: s.shadow_error is not None)
        request = make_request(site=unique, audio=None)
        observer.publish(request)
        (verdict,) = observer.collect_verdicts(1, timeout=TIMEOUT)
        observer.rationales.get(timeout=TIMEOUT)
    finally:
        watch.transport.stop()
    assert failed.shadow is None and failed.state == "serving"
    assert failed.shadow_error is not None and "checksum_mismatch" in failed.shadow_error
    assert verdict.request_id == request.request_id and observer.verdicts.empty()
    metric = worker.metrics.registry.get_sample_value
    assert metric("inspector_shadow_load_failures_total", {"site": unique}) == pytest.approx(1)
    assert metric("inspector_shadow_rows_per_batch_sum") == pytest.approx(0)
    assert _shadow_count(store) == 0
    store.close()
