"""Hot swap: the worker serves each site's active adapter from the registry and follows the
retained control topic, between batches, without losing or repeating a request."""

from __future__ import annotations

import queue
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from inspector.cli import app
from inspector.engine.types import InferenceEngine
from inspector.errors import Code
from inspector.mqtt import MqttTransport
from inspector.protocol import (
    InspectionRequest,
    SiteAdapterState,
    WorkerStatus,
    adapter_control_topic,
    status_topic,
)
from inspector.settings import BrokerSettings, ModelSettings, Settings
from inspector.store import Store
from inspector.store.adapters import AdapterStatus, register_adapter, set_status
from inspector.store.models import Verdict
from inspector.worker import Worker
from tests.core.helpers import make_request
from tests.fixtures.model import adapter_sha256
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0
MakeAdapter = Callable[[str, int], Path]


@pytest.fixture(scope="module")
def swap_engine(tiny_model_dir: Path) -> InferenceEngine:
    """An engine of its own: these tests attach site adapters, the shared one stays bare."""
    from inspector.engine import load_engine

    return load_engine(ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=4), {})


class StatusWatch:
    """The worker's retained status, as a real subscriber sees each update."""

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
        """The first status whose state for `site` passes `check` (bounded wait)."""
        while True:
            status = self.seen.get(timeout=TIMEOUT)
            for state in status.site_adapters:
                if state.site == site and check(state):
                    return state


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path, broker: tuple[str, int]) -> dict[str, str]:
    """The CLI's settings: the test's store and the real broker."""
    return {
        "INSPECTOR_STORE__URL": sqlite_url,
        "INSPECTOR_STORE__BLOB_DIR": str(tmp_path / "blobs"),
        "INSPECTOR_BROKER__HOST": broker[0],
        "INSPECTOR_BROKER__PORT": str(broker[1]),
    }


@pytest.fixture
def clean_control(broker: tuple[str, int], unique: str) -> Iterator[None]:
    """Leave no retained announcement of the test's site behind on the shared broker."""
    yield
    with MqttTransport(
        BrokerSettings(host=broker[0], port=broker[1]), f"c-{unique}", clean_start=True
    ) as cleaner:
        assert cleaner.wait_connected(10)
        cleaner.publish_and_wait(adapter_control_topic(unique), b"", 10, retain=True)


def _register(store: Store, site: str, adapter: Path, sha256: str | None = None) -> str:
    with store.db.write() as session:
        row = register_adapter(
            session,
            site=site,
            name=site,
            path=str(adapter),
            sha256=sha256 or adapter_sha256(adapter),
            base_model="b" * 64,
            actor="trainer",
        )
    return row.ref


def _activate(store: Store, ref: str) -> None:
    with store.db.write() as session:
        set_status(session, ref, AdapterStatus.ACTIVE, action="promote", actor="qe")


def _promote(env: dict[str, str], ref: str) -> None:
    result = CliRunner().invoke(
        app, ["adapters", "promote", ref, "--force", "--reason", "hot swap drill"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "announced to the workers" in result.output


def _requests(site: str, count: int) -> list[InspectionRequest]:
    return [make_request(site=site, audio=None, part_id=f"P-{i}") for i in range(count)]


def _settings(unique: str, sqlite_url: str, tmp_path: Path, broker: tuple[str, int]) -> Settings:
    return make_settings(unique, sqlite_url, tmp_path, broker, max_batch=4)


def test_a_running_worker_swaps_adapter_mid_stream_losing_and_repeating_nothing(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    env: dict[str, str],
    observer: Observer,
    start_worker: Callable[..., Worker],
    swap_engine: InferenceEngine,
    make_site_adapter: MakeAdapter,
    clean_control: None,
) -> None:
    settings = _settings(unique, sqlite_url, tmp_path, broker)
    store = Store.from_settings(settings.store)
    store.upgrade()
    v1 = _register(store, unique, make_site_adapter("swap", 21))
    v2 = _register(store, unique, make_site_adapter("swap", 22))
    _activate(store, v1)
    store.close()
    watch = StatusWatch(broker, unique)
    try:
        # Start-up reads the registry: the first verdicts already run on v1.
        worker = start_worker(settings, swap_engine)
        assert watch.until(unique, lambda s: s.version == 1).name == unique
        assert worker.metrics.registry.get_sample_value(
            "inspector_worker_adapter_version", {"site": unique}
        ) == pytest.approx(1)
        before, after = _requests(unique, 8), _requests(unique, 4)
        for request in before:
            observer.publish(request)
        first = observer.verdicts.get(timeout=TIMEOUT)
        assert (first.adapter, first.adapter_version) == (unique, 1)
        # Promoted while the rest of `before` is queued or in flight.
        _promote(env, v2)
        watch.until(unique, lambda s: s.version == 2 and s.state == "serving")
        for request in after:
            observer.publish(request)
        rest = observer.collect_verdicts(len(before) + len(after) - 1, timeout=TIMEOUT)
    finally:
        watch.transport.stop()
    verdicts = [first, *rest]
    # Exactly one verdict per request, each on one version, and no v1 after the first v2.
    assert sorted(str(v.request_id) for v in verdicts) == sorted(
        str(r.request_id) for r in before + after
    )
    versions = [v.adapter_version for v in verdicts]
    assert versions == sorted(versions) and set(versions) <= {1, 2}
    assert {
        v.adapter_version for v in verdicts if v.request_id in {r.request_id for r in after}
    } == {2}
    assert all(v.adapter == unique and not v.adapter_fallback for v in verdicts)
    with worker.store.db.read() as session:
        rows = session.execute(sa.select(Verdict.adapter, Verdict.adapter_version)).all()
    assert sorted(rows) == sorted((v.adapter, v.adapter_version) for v in verdicts)
    assert observer.verdicts.empty()
    metric = worker.metrics.registry.get_sample_value
    assert metric("inspector_worker_adapter_version", {"site": unique}) == pytest.approx(2)
    assert metric("inspector_worker_adapter_failed", {"site": unique}) == pytest.approx(0)
    assert metric("inspector_worker_adapter_loads_total", {"site": unique}) == pytest.approx(2)


def test_a_tampered_adapter_is_refused_reported_and_the_previous_one_keeps_serving(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    env: dict[str, str],
    observer: Observer,
    start_worker: Callable[..., Worker],
    swap_engine: InferenceEngine,
    make_site_adapter: MakeAdapter,
    clean_control: None,
) -> None:
    settings = _settings(unique, sqlite_url, tmp_path, broker)
    store = Store.from_settings(settings.store)
    store.upgrade()
    v1 = _register(store, unique, make_site_adapter("swap", 23))
    tampered = tmp_path / "tampered"
    shutil.copytree(make_site_adapter("swap", 24), tampered)
    v2 = _register(store, unique, tampered)
    weights = tampered / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # changed after registration
    _activate(store, v1)
    store.close()
    watch = StatusWatch(broker, unique)
    try:
        worker = start_worker(settings, swap_engine)
        watch.until(unique, lambda s: s.version == 1)
        # A malformed announcement is counted and ignored; the worker keeps serving.
        with MqttTransport(
            BrokerSettings(host=broker[0], port=broker[1]), f"x-{unique}", clean_start=True
        ) as rogue:
            assert rogue.wait_connected(10)
            rogue.publish_and_wait(adapter_control_topic(unique), b'{"site": 3}', 10)
        _promote(env, v2)
        failed = watch.until(unique, lambda s: s.state == "failed")
    finally:
        watch.transport.stop()
    assert (failed.name, failed.version, failed.code) == (
        unique,
        1,
        Code.ADAPTER_CHECKSUM_MISMATCH.value,
    )
    assert failed.error is not None and v2 in failed.error
    metric = worker.metrics.registry.get_sample_value
    assert metric(
        "inspector_worker_adapter_load_failures_total",
        {"site": unique, "code": Code.ADAPTER_CHECKSUM_MISMATCH.value},
    ) == pytest.approx(1)
    assert metric("inspector_worker_adapter_version", {"site": unique}) == pytest.approx(1)
    assert metric("inspector_worker_adapter_failed", {"site": unique}) == pytest.approx(1)
    assert metric(
        "inspector_worker_adapter_announcements_refused_total",
        {"code": Code.PAYLOAD_INVALID.value},
    ) == pytest.approx(1)
    request = make_request(site=unique, audio=None)
    observer.publish(request)
    verdict = observer.verdicts.get(timeout=TIMEOUT)
    assert (verdict.request_id, verdict.adapter, verdict.adapter_version) == (
        request.request_id,
        unique,
        1,
    )


def _rollback(env: dict[str, str], site: str) -> None:
    result = CliRunner().invoke(app, ["adapters", "rollback", "--site", site], env=env)
    assert result.exit_code == 0, result.output
    assert "announced to the workers" in result.output


def test_rollback_restores_the_previous_version_then_the_base_in_a_running_worker(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    env: dict[str, str],
    observer: Observer,
    start_worker: Callable[..., Worker],
    swap_engine: InferenceEngine,
    make_site_adapter: MakeAdapter,
    clean_control: None,
) -> None:
    settings = _settings(unique, sqlite_url, tmp_path, broker)
    store = Store.from_settings(settings.store)
    store.upgrade()
    v1 = _register(store, unique, make_site_adapter("swap", 25))
    v2 = _register(store, unique, make_site_adapter("swap", 26))
    _activate(store, v1)
    store.close()
    watch = StatusWatch(broker, unique)

    def judged() -> tuple[str, int | None]:
        request = make_request(site=unique, audio=None)
        observer.publish(request)
        verdict = observer.verdicts.get(timeout=TIMEOUT)
        assert verdict.request_id == request.request_id
        return verdict.adapter, verdict.adapter_version

    try:
        worker = start_worker(settings, swap_engine)
        watch.until(unique, lambda s: s.version == 1)
        _promote(env, v2)
        watch.until(unique, lambda s: s.version == 2)
        assert judged() == (unique, 2)
        _rollback(env, unique)  # v2 retired, v1 restored
        watch.until(unique, lambda s: s.version == 1)
        assert judged() == (unique, 1)
        _rollback(env, unique)  # nothing before v1: the site runs on the base
        base = watch.until(unique, lambda s: s.name is None)
    finally:
        watch.transport.stop()
    assert base.state == "serving" and base.version is None
    adapter, version = judged()
    assert adapter != unique and version is None
    assert worker.metrics.registry.get_sample_value(
        "inspector_worker_adapter_version", {"site": unique}
    ) == pytest.approx(0)
