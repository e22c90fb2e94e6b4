"""The line benchmark: paced open-loop load from simulated stations through the real path.

Stations publish on a fixed schedule (request k at start + k / rate, whatever the answers
do), through the broker, to `workers` `inspector serve` processes in one shared-subscription
group (`inspector/bench/fleet.py`), which validate, batch, infer, commit to the store and
publish the verdict; each station times publish → verdict received. A warm-up at the same
rate runs first and is waited out, so the timed phase starts on warm engines with no backlog.

Reported beside the totals: per worker, the requests it answered, its batches, mean batch,
engine time and CPU time over the timed phase, and the host's CPU share; and from the store,
that every request was answered exactly once (one inspection, one verdict row, no duplicate).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.bench.fleet import (
    EngineKind,
    WorkerProcess,
    WorkerSpec,
    host_cpu_ticks,
    metric_totals,
    wait_online,
)
from inspector.bench.ledger import read_ledger
from inspector.bench.pipeline import photo
from inspector.errors import BenchFailed
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    AudioPart,
    ImagePart,
    InspectionRequest,
    RationaleState,
    TopicKind,
    parse_rationale,
    parse_rejection,
    parse_verdict,
    station_filter,
    utcnow,
)
from inspector.settings import (
    BrokerSettings,
    ModelSettings,
    Settings,
    SiteProfile,
    StoreSettings,
    WorkerSettings,
)

log = logging.getLogger(__name__)

BENCH_PROFILE = SiteProfile(part="machined housing", threshold=0.7)


@dataclass(frozen=True)
class LineBenchConfig:
    """The offered load, the photos and notes it carries, and the workers it runs against."""

    rate: float = 25.0  # requests per second, over all stations
    duration_s: float = 60.0
    warmup_s: float = 10.0
    stations: int = 8
    width: int = 640
    height: int = 480
    audio_seconds: float = 8.0
    model: ModelSettings = field(default_factory=ModelSettings)
    engine: EngineKind = "model"  # or random-full, instant, paced (fleet.py)
    batch_s: float = 0.5  # the paced engine's seconds per batch
    workers: int = 1  # `inspector serve` processes in one shared-subscription group
    # CUDA_VISIBLE_DEVICES of worker i is gpus[i % len(gpus)]; empty: inherited (fleet.placement)
    gpus: tuple[str, ...] = ()
    cpu_threads: int | None = None  # each worker's OMP_NUM_THREADS (None: inherited)
    max_batch: int = 32
    max_wait_ms: float = 20.0
    validation_threads: int = 4
    store_url: str | None = None  # default: a SQLite file in a temporary directory
    host: str = "127.0.0.1"
    port: int = 1883
    start_timeout_s: float = 600.0
    drain_timeout_s: float = 60.0  # how long to wait for the last verdicts after publishing
    # A line where this share of parts passes and only FAIL/REVIEW verdicts get a rationale
    # (the site's rationale = "fail_and_review"; random-full draws which rows pass). None: all.
    pass_share: float | None = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Stations:
    """Simulated stations: one MQTT client each, one observer of verdicts and rejections."""

    def __init__(self, cfg: LineBenchConfig, site: str) -> None:
        self.cfg = cfg
        self.site = site
        broker = BrokerSettings(host=cfg.host, port=cfg.port, session_expiry_s=0)
        tag = uuid.uuid4().hex[:8]
        self._clients = [
            MqttTransport(broker, f"bench-line-{tag}-s{i}", clean_start=True, max_inflight=256)
            for i in range(cfg.stations)
        ]
        self._observer = MqttTransport(broker, f"bench-line-{tag}-obs", clean_start=True)
        self._observer.subscribe(station_filter(TopicKind.VERDICT, site), self._on_verdict)
        self._observer.subscribe(station_filter(TopicKind.REJECTED, site), self._on_rejected)
        self._observer.subscribe(station_filter(TopicKind.RATIONALE, site), self._on_rationale)
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self.sent: dict[str, float] = {}
        self.verdicts: dict[str, float] = {}
        self.answered_by: dict[str, str] = {}  # request id → the worker whose verdict came first
        self.repeats = 0  # verdict messages beyond the first for a request
        self.rejected: dict[str, str] = {}
        self.rationales: dict[str, float] = {}  # request id → when its rationale arrived
        self.pending: set[str] = set()  # requests whose verdict said a rationale follows
        base = photo(cfg.width, cfg.height, 0)
        # Each request's photo differs (a JPEG comment segment after the start marker), as
        # on a real line where every blob is new; the voice note is one recording.
        self._photo_head, self._photo_tail = base[:2], base[2:]
        self._note = AudioPart.from_bytes("audio/wav", _voice_note(cfg.audio_seconds))

    def start(self) -> None:
        self._observer.start()
        if not self._observer.wait_subscribed(15):
            raise BenchFailed(f"no MQTT broker answers on {self.cfg.host}:{self.cfg.port}")
        for client in self._clients:
            client.start()
            if not client.wait_connected(15):
                raise BenchFailed("a simulated station could not connect to the broker")

    def stop(self) -> None:
        for client in self._clients:
            client.stop()
        self._observer.stop()

    def _on_verdict(self, message: Message) -> None:
        verdict = parse_verdict(message.payload)
        rid = str(verdict.request_id)
        now = time.monotonic()
        with self._lock:
            if rid in self.verdicts:
                self.repeats += 1
                return
            self.verdicts[rid] = now
            self.answered_by[rid] = verdict.worker_id
            if verdict.rationale_state is RationaleState.PENDING:
                self.pending.add(rid)
            self._answered.notify_all()

    def _on_rationale(self, message: Message) -> None:
        rationale = parse_rationale(message.payload)
        with self._lock:
            self.rationales.setdefault(str(rationale.request_id), time.monotonic())
            self._answered.notify_all()

    def _on_rejected(self, message: Message) -> None:
        rejection = parse_rejection(message.payload)
        with self._lock:
            self.rejected.setdefault(str(rejection.request_id), rejection.code)
            self._answered.notify_all()

    def _request(self, k: int) -> InspectionRequest:
        unique = self._photo_head + b"\xff\xfe\x00\x0a" + uuid.uuid4().bytes[:8] + self._photo_tail
        return InspectionRequest(
            request_id=uuid.uuid4(),
            site=self.site,
            line="l1",
            station=f"s{k % self.cfg.stations}",
            part_id=f"P-{k}",
            captured_at=utcnow(),
            images=[ImagePart.from_bytes("image/jpeg", unique)],
            audio=self._note,
        )

    def run(self, count: int) -> dict[str, Any]:
        """Publish `count` requests on the paced schedule; return their ids and publish lag."""
        ids: list[str] = []
        lag: list[float] = []
        started = time.monotonic()
        for k in range(count):
            request = self._request(k)
            due = started + k / self.cfg.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # pacing the open-loop schedule, not synchronisation
            payload = request.to_payload()
            rid = str(request.request_id)
            now = time.monotonic()
            with self._lock:
                self.sent[rid] = now
            self._clients[k % len(self._clients)].publish(
                request.station_key.topic(TopicKind.REQUEST), payload, qos=1
            )
            lag.append(now - due)
            ids.append(rid)
        return {"ids": ids, "started": started, "lag_s": lag}

    def wait_answered(self, ids: list[str], timeout_s: float) -> bool:
        """Block until every request in `ids` has a verdict or a rejection, or `timeout_s`."""
        wanted = set(ids)

        def done() -> bool:
            return wanted <= (self.verdicts.keys() | self.rejected.keys())

        with self._answered:
            return self._answered.wait_for(done, timeout_s)

    def wait_explained(self, ids: list[str], timeout_s: float) -> bool:
        """Block until every request in `ids` whose verdict said so has its rationale."""
        wanted = set(ids)

        def done() -> bool:
            return (self.pending & wanted) <= self.rationales.keys()

        with self._answered:
            return self._answered.wait_for(done, timeout_s)


def _voice_note(seconds: float) -> bytes:
    from inspector.demo.samples import voice_note_wav

    return voice_note_wav(seconds)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values) * 1e3
    return {
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


_HISTOGRAMS = {
    "inspector_batch_size": "batch_mean",
    "inspector_inference_seconds": "inference_s_mean",
    "inspector_queue_wait_seconds": "queue_wait_s_mean",
    "inspector_end_to_end_seconds": "worker_end_to_end_s_mean",
}


def _worker_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Means of the worker's histograms over the timed phase alone (the warm-up subtracted)."""
    out = {}
    for name, key in _HISTOGRAMS.items():
        count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
        if count > 0:
            out[key] = (after[f"{name}_sum"] - before.get(f"{name}_sum", 0.0)) / count
    out["batches"] = after.get("inspector_batch_size_count", 0.0) - before.get(
        "inspector_batch_size_count", 0.0
    )
    return out


def _summed(totals: list[dict[str, float]]) -> dict[str, float]:
    """Several workers' histogram sums and counts added up, as if one worker had them all."""
    out: Counter[str] = Counter()
    for one in totals:
        out.update(one)
    return dict(out)


@dataclass
class _Snapshot:
    """What the workers and the host had counted at one instant."""

    at: float
    metrics: list[dict[str, float]]
    cpu_s: list[float | None]
    host_ticks: tuple[int, int] | None

    @classmethod
    def take(cls, workers: list[WorkerProcess]) -> _Snapshot:
        return cls(
            at=time.monotonic(),
            metrics=[metric_totals(w.spec.metrics_port) for w in workers],
            cpu_s=[w.cpu_s() for w in workers],
            host_ticks=host_cpu_ticks(),
        )


def _phase(stations: _Stations, cfg: LineBenchConfig, seconds: float) -> dict[str, Any]:
    count = max(1, round(cfg.rate * seconds))
    sent = stations.run(count)
    published = time.monotonic()
    complete = stations.wait_answered(sent["ids"], cfg.drain_timeout_s)
    explained_all = stations.wait_explained(sent["ids"], cfg.drain_timeout_s)
    ids = sent["ids"]
    with stations._lock:
        sent_at = [stations.sent[r] for r in ids]
        answered = {r: stations.verdicts[r] for r in ids if r in stations.verdicts}
        by = {r: stations.answered_by[r] for r in answered}
        explained = {r: stations.rationales[r] for r in ids if r in stations.rationales}
        rejected = Counter(stations.rejected[r] for r in ids if r in stations.rejected)
    latencies = {r: answered[r] - stations.sent[r] for r in answered}
    first, last_sent = min(sent_at), max(sent_at)
    last_answer = max(answered.values(), default=published)
    per_worker: dict[str, list[float]] = {}
    for rid, worker_id in by.items():
        per_worker.setdefault(worker_id, []).append(latencies[rid])
    return {
        "ids": ids,
        "requests": count,
        "verdicts": len(answered),
        "rejected": dict(rejected),
        "missing": count - len(answered) - sum(rejected.values()),
        "complete": complete,
        "offered_per_s": (count - 1) / (last_sent - first) if count > 1 else 0.0,
        "achieved_per_s": len(answered) / (last_answer - first) if last_answer > first else 0.0,
        "publish_lag_ms_max": 1e3 * max(sent["lag_s"]),
        "latency_ms": _percentiles(list(latencies.values())),
        # Verdict first: the rationale follows its verdict (none for a PASS under
        # fail_and_review); publish → rationale received, over the requests that got one.
        "rationales": len(explained),
        "rationales_complete": explained_all,
        "rationale_latency_ms": _percentiles([t - stations.sent[r] for r, t in explained.items()]),
        "by_worker": {
            worker_id: {"verdicts": len(values), "latency_ms": _percentiles(values)}
            for worker_id, values in sorted(per_worker.items())
        },
    }


def _per_worker(
    workers: list[WorkerProcess], measured: dict[str, Any], before: _Snapshot, after: _Snapshot
) -> list[dict[str, Any]]:
    """Each worker over the timed phase: what it answered, its batches, engine and CPU time."""
    wall = after.at - before.at
    out = []
    for i, worker in enumerate(workers):
        wid = worker.spec.worker_id
        means = _worker_means(before.metrics[i], after.metrics[i])
        name = "inspector_inference_seconds_sum"
        engine_s = after.metrics[i].get(name, 0.0) - before.metrics[i].get(name, 0.0)
        cpu_before, cpu_after = before.cpu_s[i], after.cpu_s[i]
        cpu_s = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        station_view = measured["by_worker"].get(wid, {"verdicts": 0, "latency_ms": {}})
        out.append(
            {
                "worker_id": wid,
                "cuda_visible_devices": worker.spec.cuda_visible_devices,
                "cpu_threads": worker.spec.cpu_threads,
                "verdicts": station_view["verdicts"],
                "latency_ms": station_view["latency_ms"],
                **means,
                "engine_s": engine_s,
                "engine_busy_share": engine_s / wall if wall > 0 else 0.0,
                "cpu_s": cpu_s,
                "cpu_cores": cpu_s / wall if cpu_s is not None and wall > 0 else None,
            }
        )
    return out


def _host(before: _Snapshot, after: _Snapshot) -> dict[str, Any]:
    """The host's CPUs and how busy they were over the timed phase (every process on it)."""
    busy_share = None
    if before.host_ticks is not None and after.host_ticks is not None:
        busy = after.host_ticks[0] - before.host_ticks[0]
        total = after.host_ticks[1] - before.host_ticks[1]
        busy_share = busy / total if total > 0 else None
    return {"cpus": os.cpu_count(), "cpu_busy_share": busy_share}


def _settings(cfg: LineBenchConfig, site: str, url: str, blob_dir: Path) -> Settings:
    """The settings every worker of the group shares (each then gets its id and port)."""
    return Settings(
        broker=BrokerSettings(host=cfg.host, port=cfg.port, session_expiry_s=60),
        store=StoreSettings(url=url, blob_dir=blob_dir),
        model=cfg.model,
        sites={
            site: BENCH_PROFILE.model_copy(
                update={"rationale": "all" if cfg.pass_share is None else "fail_and_review"}
            )
        },
        worker=WorkerSettings(
            worker_id=site,
            group=site,
            sites=(site,),
            max_batch=cfg.max_batch,
            max_wait_ms=cfg.max_wait_ms,
            validation_threads=cfg.validation_threads,
            receive_maximum=max(64, 4 * cfg.max_batch),
            queue_size=max(256, 8 * cfg.max_batch),
        ),
    )


def _group(cfg: LineBenchConfig, base: Settings, workdir: Path) -> list[WorkerProcess]:
    """`cfg.workers` worker processes, each with its own id, metrics port and device."""
    workers = []
    for i in range(cfg.workers):
        spec = WorkerSpec(
            worker_id=f"{base.worker.group}-w{i}",
            metrics_port=_free_port(),
            cuda_visible_devices=cfg.gpus[i % len(cfg.gpus)] if cfg.gpus else None,
            cpu_threads=cfg.cpu_threads,
        )
        own = base.worker.model_copy(
            update={"worker_id": spec.worker_id, "metrics_port": spec.metrics_port}
        )
        settings = base.model_copy(update={"worker": own})
        workers.append(
            WorkerProcess(spec, settings, cfg.engine, cfg.batch_s, workdir, cfg.pass_share)
        )
    return workers


def run_line_bench(cfg: LineBenchConfig) -> dict[str, Any]:
    """Start the workers, offer the paced load through the broker, report what came back."""
    from inspector.store import Store

    if cfg.workers < 1:
        raise BenchFailed("the line benchmark needs at least one worker")
    site = f"line-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="inspector-line-") as tmp:
        url = cfg.store_url or f"sqlite:///{Path(tmp) / 'line.db'}"
        settings = _settings(cfg, site, url, Path(tmp) / "blobs")
        # Once, before any worker starts, as `inspector db upgrade` is run in production:
        # workers migrating one fresh database at once would race.
        store = Store.from_settings(settings.store)
        store.upgrade()
        stations = _Stations(cfg, site)
        workers = _group(cfg, settings, Path(tmp))
        try:
            stations.start()
            started = time.monotonic()
            for worker in workers:
                worker.start()
            wait_online(settings.broker, workers, cfg.start_timeout_s)
            ready_s = time.monotonic() - started
            warmup = _phase(stations, cfg, cfg.warmup_s) if cfg.warmup_s > 0 else None
            before = _Snapshot.take(workers)
            measured = _phase(stations, cfg, cfg.duration_s)
            after = _Snapshot.take(workers)
        finally:
            stations.stop()
            for worker in workers:
                worker.stop()
        sent = (warmup["ids"] if warmup else []) + measured["ids"]
        ledger = read_ledger(store, site, sent)
        store.close()
    for phase in (warmup, measured):
        if phase is not None:
            del phase["ids"]
    return {
        "benchmark": "line",
        "config": asdict(cfg) | {"model": cfg.model.model_dump(mode="json")},
        "payload_bytes": len(stations._request(0).to_payload()),
        "worker_ready_s": ready_s,
        "warmup": warmup,
        "measured": measured,
        "worker": _worker_means(_summed(before.metrics), _summed(after.metrics)),
        "workers": _per_worker(workers, measured, before, after),
        "host": _host(before, after),
        "exactly_once": ledger.report() | {"verdict_messages_repeated": stations.repeats},
    }
