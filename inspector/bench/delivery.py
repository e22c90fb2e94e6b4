"""The delivery benchmark: real stations and a real worker on the broker, counting re-sends.

Stations are `EdgeAgent`s with their own spools and the default timeouts; the worker is the
real one with an engine that takes a fixed time per batch (`batch_s`, default 0.9 s: an
H200's batch at a few requests a second), so the broker, the spools and the worker's
backlog report behave as on a line. Three phases:

- **load**: every station captures at a steady pace, together `load_fraction` of the
  worker's capacity (`max_batch / batch_s`). Re-sends should be 0.
- **backlog**: the stations capture `backlog_s` seconds of the worker's work at once; the
  worker drains it at its pace while the stations' verdict timeouts expire many times
  over. Re-sends should be 0: the worker reports its backlog and the stations wait.
- **re-send**: one station's requests reach the broker while no worker serves its site
  (the broker acknowledges and drops them, as after a crash); a worker for that site
  starts, and the station's re-sends after `display.verdict_timeout_s` bring the verdicts.
  Reported: the time from each re-send to its verdict, and from capture to verdict.

The broker needs the deploy config's queue limits (`max_queued_messages 0`, a byte bound):
with Mosquitto's default of 1000 messages per session the backlog's excess is dropped after
its PUBACK, and those requests are re-sent because they were lost, not because a station
was impatient.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from inspector.bench.pipeline import InstantEngine, photo
from inspector.engine.types import EngineRequest, EngineResult, VerdictCallback
from inspector.settings import BrokerSettings, Settings, StoreSettings, WorkerSettings


class PacedEngine(InstantEngine):
    """Answers PASS after `batch_s` per batch, whatever its size (as decode-bound GPUs do)."""

    model_name = "paced"

    def __init__(self, batch_s: float) -> None:
        self.batch_s = batch_s

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        """PASS for every request, after the batch's time."""
        time.sleep(self.batch_s)  # stands in for the GPU's time on the batch
        return super().infer(batch)


@dataclass(frozen=True)
class DeliveryBenchConfig:
    """Stations, the worker's pace, and the length of each phase."""

    stations: int = 4
    batch_s: float = 0.9
    max_batch: int = 8
    load_s: float = 60.0
    load_fraction: float = 0.8
    backlog_s: float = 180.0
    resend_requests: int = 20
    verdict_timeout_s: float = 30.0
    resend_max_s: float = 300.0
    host: str = "127.0.0.1"
    port: int = 1883


def _agent(cfg: DeliveryBenchConfig, root: Path, site: str, name: str) -> Any:
    from edge.agent import EdgeAgent
    from edge.config import EdgeSettings

    settings = EdgeSettings(
        station={"site": site, "line": "l1", "station": name, "client_id": f"{site}-{name}"},
        broker={"host": cfg.host, "port": cfg.port, "session_expiry_s": 300},
        spool={"path": str(root / f"{name}.db"), "resend_max_s": cfg.resend_max_s},
        triggers={"keyboard": False, "http_port": None, "mqtt": False},
        display={"verdict_timeout_s": cfg.verdict_timeout_s, "big": False},
    )
    return EdgeAgent(settings, Console(file=io.StringIO(), width=100))


def _worker(cfg: DeliveryBenchConfig, root: Path, site: str, store_url: str) -> Any:
    from inspector.store import Store
    from inspector.worker import Worker
    from inspector.worker.run import worker_transport

    settings = Settings(
        broker=BrokerSettings(host=cfg.host, port=cfg.port),
        store=StoreSettings(url=store_url, blob_dir=root / "blobs"),
        worker=WorkerSettings(
            worker_id=site,
            group=site,
            sites=(site,),
            max_batch=cfg.max_batch,
            metrics_port=0,
            session_expiry_s=60,
        ),
    )
    store = Store.from_settings(settings.store)
    store.upgrade()
    worker = Worker(worker_transport(settings), store, PacedEngine(cfg.batch_s), settings)
    worker.start()
    if not worker.wait_ready(10):
        raise RuntimeError(f"the benchmark worker could not subscribe on {cfg.host}:{cfg.port}")
    return worker


def _photos(root: Path, count: int, start: int) -> list[Path]:
    base = photo(64, 48, 0)
    paths = []
    for i in range(start, start + count):
        path = root / f"p{i}.jpg"
        # A comment segment keeps each photo (and so each request) distinct.
        path.write_bytes(base[:2] + b"\xff\xfe\x00\x06" + i.to_bytes(4, "big") + base[2:])
        paths.append(path)
    return paths


def _wait_answered(agents: list[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(a.stats().unanswered == 0 for a in agents):
            return True
        time.sleep(0.5)  # polling spools owned by this process's agents
    return False


def _latencies(agents: list[Any], ids: set[str]) -> dict[str, float]:
    rows = [r for a in agents for r in a.spool.history() if r.request_id in ids]
    lat = sorted((r.decided_at or 0.0) - r.captured_at for r in rows if r.decided_at)
    if not lat:
        return {}
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {"p50_s": q[49], "p95_s": q[94], "max_s": lat[-1]}


def _resends(agents: list[Any]) -> int:
    return sum(a.publisher.resends for a in agents)


def _releases(agents: list[Any]) -> int:
    return sum(a.publisher.hold_releases for a in agents)


def _phase_load(cfg: DeliveryBenchConfig, agents: list[Any], root: Path) -> dict[str, Any]:
    rate = cfg.load_fraction * cfg.max_batch / cfg.batch_s
    count = int(rate * cfg.load_s)
    paths = _photos(root, count, 0)
    before = _resends(agents)
    ids: set[str] = set()
    started = time.monotonic()
    for i, path in enumerate(paths):
        # Paced: capture i is due at i / rate seconds.
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids.add(agents[i % len(agents)].capture_file(path).request_id)
    complete = _wait_answered(agents, cfg.load_s + 4 * cfg.verdict_timeout_s)
    return {
        "offered_per_s": rate,
        "requests": count,
        "complete": complete,
        "resends": _resends(agents) - before,
        "latency": _latencies(agents, ids),
    }


def _phase_backlog(cfg: DeliveryBenchConfig, agents: list[Any], root: Path) -> dict[str, Any]:
    count = int(cfg.backlog_s * cfg.max_batch / cfg.batch_s)
    paths = _photos(root, count, 10_000_000)
    before, released = _resends(agents), _releases(agents)
    started = time.monotonic()
    ids = {agents[i % len(agents)].capture_file(p).request_id for i, p in enumerate(paths)}
    captured_s = time.monotonic() - started
    complete = _wait_answered(agents, 3 * cfg.backlog_s + 4 * cfg.verdict_timeout_s)
    return {
        "requests": count,
        "captured_in_s": captured_s,
        "drained_in_s": time.monotonic() - started,
        "complete": complete,
        "resends": _resends(agents) - before,
        "hold_releases": _releases(agents) - released,
        "latency": _latencies(agents, ids),
    }


def _phase_resend(cfg: DeliveryBenchConfig, root: Path, store_url: str) -> dict[str, Any]:
    site = f"bench-{uuid.uuid4().hex[:8]}"
    agent = _agent(cfg, root, site, "lost")
    agent.start()
    worker = None
    try:
        if not agent.transport.wait_subscribed(10):
            raise RuntimeError("the re-send station could not connect")
        ids = {
            agent.capture_file(p).request_id for p in _photos(root, cfg.resend_requests, 20_000_000)
        }
        if not agent.publisher.wait_delivered(ids, 30):
            raise RuntimeError("the broker did not acknowledge the re-send phase's requests")
        # Acknowledged and dropped (nobody serves the site yet); now a worker does.
        worker = _worker(cfg, root, site, store_url)
        complete = _wait_answered([agent], 4 * cfg.verdict_timeout_s + 60)
        # published_at is the last PUBACK: that of the re-send that brought the verdict.
        done = [
            (r.captured_at, r.published_at, r.decided_at)
            for r in agent.spool.history()
            if r.request_id in ids and r.decided_at is not None and r.published_at is not None
        ]
        after = sorted(d - p for _, p, d in done)
        total = sorted(d - c for c, _, d in done)
        return {
            "requests": cfg.resend_requests,
            "complete": complete,
            "resends": agent.publisher.resends,
            "resend_to_verdict_s": {"p50": statistics.median(after), "max": after[-1]},
            "capture_to_verdict_s": {"p50": statistics.median(total), "max": total[-1]},
        }
    finally:
        agent.stop()
        if worker is not None:
            worker.stop(timeout=30)
            worker.store.close()


def run_delivery_bench(cfg: DeliveryBenchConfig) -> dict[str, Any]:
    """Run the three phases against the broker at cfg.host:cfg.port; return the report."""
    site = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="inspector-delivery-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'bench.db'}"
        worker = _worker(cfg, root, site, url)
        agents = [_agent(cfg, root, site, f"s{i}") for i in range(cfg.stations)]
        try:
            for a in agents:
                a.start()
            for a in agents:
                if not a.transport.wait_subscribed(10):
                    raise RuntimeError("a benchmark station could not connect")
            load = _phase_load(cfg, agents, root)
            backlog = _phase_backlog(cfg, agents, root)
        finally:
            for a in agents:
                a.stop()
            worker.stop(timeout=30)
            worker.store.close()
        resend = _phase_resend(cfg, root, url)
    return {
        "benchmark": "delivery",
        "config": asdict(cfg),
        "capacity_per_s": cfg.max_batch / cfg.batch_s,
        "load": load,
        "backlog": backlog,
        "resend": resend,
        "complete": load["complete"] and backlog["complete"] and resend["complete"],
    }
