"""Duplicate work stays harmless: two workers inferring one request_id at once agree."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa

from inspector.engine import Bucket
from inspector.engine.types import EngineRequest, EngineResult, InferenceEngine, VerdictCallback
from inspector.quality import AdapterRef
from inspector.store.models import Inspection, Verdict
from inspector.worker import Worker
from tests.core.helpers import make_request
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0


class Rendezvous:
    """The real engine, entered by both workers before either may finish (a timing harness)."""

    def __init__(self, engine: InferenceEngine, barrier: threading.Barrier) -> None:
        self._engine = engine
        self._barrier = barrier
        self.model_name = engine.model_name
        self.calls = 0

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        # Whole verdicts only (no early announcement): both must reach the barrier first.
        self.calls += 1
        results = self._engine.infer(batch)
        self._barrier.wait()  # both workers are past inference before either commits
        return results

    def shape_bucket(self, sizes: Sequence[tuple[int, int]]) -> Bucket:
        return self._engine.shape_bucket(sizes)

    def adapters(self) -> list[str]:
        return self._engine.adapters()

    def load_site_adapter(self, site: str, adapter: AdapterRef, path: str) -> None:
        self._engine.load_site_adapter(site, adapter, path)

    def clear_site_adapter(self, site: str) -> None:
        self._engine.clear_site_adapter(site)

    def site_adapters(self) -> dict[str, AdapterRef]:
        return self._engine.site_adapters()

    def load_adapter(self, name: str, path: str) -> None:
        self._engine.load_adapter(name, path)

    def unload_adapter(self, name: str) -> None:
        self._engine.unload_adapter(name)


def test_two_workers_inferring_the_same_request_at_once_store_and_publish_one_verdict(
    db_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
    tiny_engine: InferenceEngine,
) -> None:
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    engines = [Rendezvous(tiny_engine, barrier) for _ in range(2)]
    workers = [
        start_worker(
            make_settings(unique, db_url, tmp_path, broker, worker_id=f"{unique}-{n}"),
            engine,
        )
        for n, engine in zip("ab", engines, strict=True)
    ]
    request = make_request(site=unique)
    # The original and the station's re-send: the shared subscription hands one to each.
    observer.publish(request)
    observer.publish(request)
    first, second = observer.collect_verdicts(2, timeout=TIMEOUT)
    assert [e.calls for e in engines] == [1, 1]  # both really inferred it
    assert first == second  # the same stored verdict, whichever worker committed it
    assert first.request_id == request.request_id
    assert first.worker_id in {w.worker_id for w in workers}
    with workers[0].store.db.read() as s:
        inspections = s.scalar(sa.select(sa.func.count()).select_from(Inspection))
        verdicts = s.scalar(sa.select(sa.func.count()).select_from(Verdict))
    assert (inspections, verdicts) == (1, 1)
    assert observer.verdicts.empty() and observer.rejections.empty()
