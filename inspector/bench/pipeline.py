"""The host path benchmark: MQTT in → validate → store → MQTT out, with an instant engine.

The engine here answers at once, so the numbers show how many requests per second the host
side (broker round trips, validation and decoding, the store, publishing) can feed a GPU.
The load generator runs in a separate process so it does not share the worker's interpreter.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.engine import Bucket, shape_bucket
from inspector.engine.types import EngineRequest, EngineResult, VerdictCallback
from inspector.media import encode_jpeg
from inspector.protocol import (
    Decision,
    ImagePart,
    InspectionRequest,
    TopicKind,
    parse_verdict,
    station_filter,
    utcnow,
)
from inspector.quality import AdapterRef
from inspector.settings import BrokerSettings, Settings, StoreSettings, WorkerSettings


class InstantEngine:
    """Answers PASS at once: isolates the host path from the model."""

    model_name = "instant"

    def shape_bucket(self, sizes: Sequence[tuple[int, int]]) -> Bucket:
        """Phi's crop grid, as the real engine buckets."""
        return shape_bucket(sizes)

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        """A PASS verdict for every request, with no model work."""
        return [
            EngineResult(
                request_id=r.request_id,
                verdict=Decision.PASS,
                confidence=1.0,
                p_pass=1.0,
                rationale="instant",
                transcript=None,
                defects=[],
                model=self.model_name,
                adapter="none",
                adapter_fallback=False,
                prompt_version="bench",
            )
            for r in batch
        ]

    def adapters(self) -> list[str]:
        return []

    def load_adapter(self, name: str, path: str) -> None:
        raise NotImplementedError("the instant engine has no adapters")

    def unload_adapter(self, name: str) -> None:
        raise NotImplementedError("the instant engine has no adapters")

    def load_site_adapter(self, site: str, adapter: AdapterRef, path: str) -> None:
        raise NotImplementedError("the instant engine has no adapters")

    def clear_site_adapter(self, site: str) -> None:
        """Nothing to clear: the instant engine serves no adapter."""

    def site_adapters(self) -> dict[str, AdapterRef]:
        return {}


@dataclass(frozen=True)
class PipelineBenchConfig:
    """What to measure: load shape, photo size, worker batch bound and where the services are."""

    requests: int = 2000
    warmup: int = 100
    publishers: int = 2
    window: int = 256
    # Requests queued at the broker while the worker is away, then drained with the CPU to
    # itself. Mosquitto's default queue holds 1000 messages per session.
    drain: int = 900
    width: int = 640
    height: int = 480
    max_batch: int = 64
    store_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 1883


def photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG of a plausible size: smooth shading plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = (128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0)).astype(np.float32)
    noise = rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    rgb = np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)
    return encode_jpeg(rgb, quality=85)


def _build_payloads(
    cfg: PipelineBenchConfig, site: str, count: int
) -> list[tuple[str, str, bytes]]:
    """(request_id, topic, payload) of `count` requests spread over four stations."""
    base = photo(cfg.width, cfg.height, 0)
    out = []
    for i in range(count):
        # Every inspection carries its own photo, as on a real line (each blob is written).
        # A JPEG comment segment (FF FE) right after the start marker keeps the file valid.
        unique = base[:2] + b"\xff\xfe\x00\x06" + i.to_bytes(4, "big") + base[2:]
        req = InspectionRequest(
            request_id=uuid.uuid4(),
            site=site,
            line="l1",
            station=f"s{i % 4}",
            part_id=f"P-{i}",
            captured_at=utcnow(),
            images=[ImagePart.from_bytes("image/jpeg", unique)],
        )
        out.append(
            (str(req.request_id), req.station_key.topic(TopicKind.REQUEST), req.to_payload())
        )
    return out


def _load_generator(cfg: PipelineBenchConfig, site: str, count: int, results: Any) -> None:
    """Publish `count` requests from `cfg.publishers` clients; report send/receive times."""
    import threading

    from inspector.mqtt import Message, MqttTransport

    broker = BrokerSettings(host=cfg.host, port=cfg.port)
    payloads = _build_payloads(cfg, site, count)
    received: dict[str, float] = {}
    done = threading.Event()
    # A bounded number of requests in flight: the load never outruns the broker's queues.
    window = threading.BoundedSemaphore(cfg.window)

    def on_verdict(message: Message) -> None:
        rid = str(parse_verdict(message.payload).request_id)
        if rid not in received:
            received[rid] = time.monotonic()
            window.release()
        if len(received) >= count:
            done.set()

    observer = MqttTransport(broker, f"bench-obs-{uuid.uuid4().hex[:8]}", clean_start=True)
    observer.subscribe(station_filter(TopicKind.VERDICT, site), on_verdict)
    observer.start()
    observer.wait_subscribed(10)
    pubs = [
        MqttTransport(
            broker, f"bench-pub-{uuid.uuid4().hex[:8]}", clean_start=True, max_inflight=64
        )
        for _ in range(cfg.publishers)
    ]
    for p in pubs:
        p.start()
        p.wait_connected(10)
    sent: dict[str, float] = {}

    def publish(chunk: list[tuple[str, str, bytes]], transport: MqttTransport) -> None:
        for rid, topic, payload in chunk:
            window.acquire()
            sent[rid] = time.monotonic()
            transport.publish(topic, payload)

    started = time.monotonic()
    threads = [
        threading.Thread(target=publish, args=(payloads[i :: len(pubs)], pubs[i]))
        for i in range(len(pubs))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    complete = done.wait(120)
    finished = time.monotonic()
    for p in pubs:
        p.stop()
    observer.stop()
    latencies = [received[r] - sent[r] for r in received if r in sent]
    results.put(
        {
            "complete": complete,
            "received": len(received),
            "elapsed_s": (max(received.values()) if received else finished) - started,
            "latencies_s": latencies,
        }
    )


def _preload(cfg: PipelineBenchConfig, site: str, count: int, results: Any) -> None:
    """Publish `count` requests for a worker that is away; report once all are PUBACKed."""
    from inspector.mqtt import MqttTransport

    payloads = _build_payloads(cfg, site, count)
    broker = BrokerSettings(host=cfg.host, port=cfg.port)
    pub = MqttTransport(
        broker, f"bench-pre-{uuid.uuid4().hex[:8]}", clean_start=True, max_inflight=64
    )
    pub.start()
    pub.wait_connected(10)
    handles = [pub.publish(topic, payload) for _, topic, payload in payloads]
    results.put(all(h.wait(60) for h in handles))
    pub.stop()


def _drain(settings: Settings, store: Any, count: int) -> dict[str, Any]:
    """Start the worker on a queue of `count` requests; time until every verdict is out."""
    import threading

    from inspector.mqtt import Message, MqttTransport
    from inspector.worker import Worker
    from inspector.worker.run import worker_transport

    seen: set[str] = set()
    done = threading.Event()

    def on_verdict(message: Message) -> None:
        seen.add(str(parse_verdict(message.payload).request_id))
        if len(seen) >= count:
            done.set()

    site = settings.worker.sites[0]
    observer = MqttTransport(
        settings.broker, f"bench-drain-{uuid.uuid4().hex[:8]}", clean_start=True
    )
    observer.subscribe(station_filter(TopicKind.VERDICT, site), on_verdict)
    observer.start()
    observer.wait_subscribed(10)
    worker = Worker(worker_transport(settings), store, InstantEngine(), settings)
    cpu_before, started = time.process_time(), time.monotonic()
    worker.start()
    complete = done.wait(120)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_before
    worker.stop(timeout=30)
    observer.stop()
    return {
        "complete": complete,
        "requests": len(seen),
        "elapsed_s": elapsed,
        "requests_per_s": len(seen) / elapsed,
        "process_cpu_ms_per_request": 1000 * cpu / max(1, len(seen)),
    }


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run_pipeline_bench(cfg: PipelineBenchConfig) -> dict[str, Any]:
    """Run the worker with an instant engine against a separate load process; return a report."""
    from inspector.store import Store
    from inspector.worker import Worker
    from inspector.worker.run import worker_transport

    site = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        url = cfg.store_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(
            broker=BrokerSettings(host=cfg.host, port=cfg.port, session_expiry_s=60),
            store=StoreSettings(url=url, blob_dir=Path(tmp) / "blobs"),
            worker=WorkerSettings(
                worker_id=site,
                group=site,
                sites=(site,),
                max_batch=cfg.max_batch,
                max_wait_ms=2,
                metrics_port=0,
                receive_maximum=512,
                queue_size=1024,
            ),
        )
        store = Store.from_settings(settings.store)
        store.upgrade()
        worker = Worker(worker_transport(settings), store, InstantEngine(), settings)
        worker.start()
        worker.wait_ready(10)
        ctx = mp.get_context("spawn")
        try:
            phases = {}
            cpu: dict[str, float] = {}
            for phase, count in (("warmup", cfg.warmup), ("measured", cfg.requests)):
                results = ctx.Queue()
                proc = ctx.Process(target=_load_generator, args=(cfg, site, count, results))
                cpu_before = time.process_time()
                proc.start()
                phases[phase] = results.get(timeout=300)
                # CPU time of this process only: the worker, not the load generator.
                cpu[phase] = time.process_time() - cpu_before
                proc.join(30)
            worker.stop(timeout=30)
            drained: dict[str, Any] = {}
            if cfg.drain:
                # The worker is away (its session kept): queue requests, then drain them.
                results = ctx.Queue()
                proc = ctx.Process(target=_preload, args=(cfg, site, cfg.drain, results))
                proc.start()
                queued = results.get(timeout=300)
                proc.join(30)
                drained = _drain(settings, store, cfg.drain) | {"queued": queued}
        finally:
            worker.stop(timeout=30)
            store.close()
    measured = phases["measured"]
    lat = sorted(measured["latencies_s"])
    return {
        "benchmark": "pipeline",
        "drain": drained,
        "config": asdict(cfg)
        | {"store_url": url.split("///")[0] + "///…" if not cfg.store_url else "given"},
        "complete": measured["complete"],
        "requests": measured["received"],
        "elapsed_s": measured["elapsed_s"],
        "requests_per_s": measured["received"] / measured["elapsed_s"],
        "latency_ms": {
            "p50": 1000 * _percentile(lat, 50),
            "p95": 1000 * _percentile(lat, 95),
            "p99": 1000 * _percentile(lat, 99),
            "max": 1000 * lat[-1],
        },
        "worker_cpu_ms_per_request": 1000 * cpu["measured"] / max(1, measured["received"]),
        "payload_bytes": len(_build_payloads(cfg, site, 1)[0][2]),
        "batch_mean": worker.metrics.batch_size._sum.get() / max(1, _count(worker)),
    }


def _count(worker: Any) -> float:
    for metric in worker.metrics.batch_size.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0
