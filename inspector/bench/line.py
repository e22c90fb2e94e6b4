"""The line benchmark: paced open-loop load from simulated stations through the real path.

Stations publish on a fixed schedule (request k at start + k / rate, whatever the answers
do), through the broker, to `inspector serve` running in a process of its own, which
validates, batches, infers, commits to the store and publishes the verdict; each station
times publish → verdict received. A warm-up at the same rate runs first and is waited out,
so the timed phase starts on a warm engine with no backlog.

The worker runs the model at `model.path`, or with `random_full` the full-size architecture
with random weights (as `inspector bench engine` builds it), so a GPU host needs no
checkpoint on disk.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from inspector.bench.pipeline import photo
from inspector.errors import BenchFailed
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    AudioPart,
    ImagePart,
    InspectionRequest,
    TopicKind,
    parse_rejection,
    parse_status,
    parse_verdict,
    station_filter,
    status_topic,
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
    """The offered load, the photos and notes it carries, and the worker it runs against."""

    rate: float = 25.0  # requests per second, over all stations
    duration_s: float = 60.0
    warmup_s: float = 10.0
    stations: int = 8
    width: int = 640
    height: int = 480
    audio_seconds: float = 8.0
    model: ModelSettings = field(default_factory=ModelSettings)
    random_full: bool = False  # full-size random weights instead of model.path
    max_batch: int = 32
    max_wait_ms: float = 20.0
    validation_threads: int = 4
    store_url: str | None = None  # default: a SQLite file in a temporary directory
    host: str = "127.0.0.1"
    port: int = 1883
    start_timeout_s: float = 600.0
    drain_timeout_s: float = 60.0  # how long to wait for the last verdicts after publishing


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_main(argv: list[str]) -> None:
    """The worker process: `inspector serve`'s code path, with the bench's model.

    argv: the settings as a JSON file, then `--random-full` to serve random full-size
    weights instead of loading `model.path`.
    """
    logging.basicConfig(level=logging.WARNING, format="worker %(levelname)s %(name)s: %(message)s")
    from inspector.worker.run import serve

    settings = Settings.model_validate_json(Path(argv[0]).read_text())
    engine = None
    if "--random-full" in argv[1:]:
        from inspector.bench.engine import EngineBenchConfig, build_random_engine

        engine = build_random_engine(
            EngineBenchConfig(
                rationale_tokens=settings.model.max_rationale_tokens,
                compile=settings.model.compile,
            ),
            settings.sites,
        )
    serve(settings, engine)


class _Worker:
    """The worker as a child process, its output in a log file."""

    def __init__(self, settings: Settings, random_full: bool, workdir: Path) -> None:
        path = workdir / "settings.json"
        path.write_text(settings.model_dump_json())
        self.log_path = workdir / "worker.log"
        argv = [sys.executable, "-m", "inspector.bench.line", str(path)]
        self._argv = argv + (["--random-full"] if random_full else [])
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log_file:
            self._proc = subprocess.Popen(
                self._argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def exit_code(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (the worker drains and disconnects), then SIGKILL if it lingers."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


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
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self.sent: dict[str, float] = {}
        self.verdicts: dict[str, float] = {}
        self.rejected: dict[str, str] = {}
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
        rid = str(parse_verdict(message.payload).request_id)
        now = time.monotonic()
        with self._lock:
            self.verdicts.setdefault(rid, now)
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


def _voice_note(seconds: float) -> bytes:
    from inspector.demo.samples import voice_note_wav

    return voice_note_wav(seconds)


def _wait_online(broker: BrokerSettings, worker_id: str, worker: _Worker, timeout_s: float) -> None:
    """Block until the worker's retained status says online; fail if the process exits."""
    online = threading.Event()

    def on_status(message: Message) -> None:
        if message.payload and parse_status(message.payload).state == "online":
            online.set()

    watcher = MqttTransport(
        broker.model_copy(update={"session_expiry_s": 0}),
        f"bench-line-watch-{uuid.uuid4().hex[:8]}",
        clean_start=True,
    )
    watcher.subscribe(status_topic(worker_id), on_status)
    watcher.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not online.wait(0.5):
            if (code := worker.exit_code()) is not None:
                raise BenchFailed(f"the bench worker exited with code {code}:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchFailed(f"the bench worker was not online within {timeout_s:g} s")
    finally:
        watcher.stop()


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


def _worker_totals(port: int) -> dict[str, float]:
    """Sums and counts of the worker's histograms, from its Prometheus endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:
        log.warning("could not read the worker's metrics: %s", exc)
        return {}
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count")) and not sample.labels
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


def _phase(stations: _Stations, cfg: LineBenchConfig, seconds: float) -> dict[str, Any]:
    count = max(1, round(cfg.rate * seconds))
    sent = stations.run(count)
    published = time.monotonic()
    complete = stations.wait_answered(sent["ids"], cfg.drain_timeout_s)
    ids = sent["ids"]
    with stations._lock:
        sent_at = [stations.sent[r] for r in ids]
        answered = {r: stations.verdicts[r] for r in ids if r in stations.verdicts}
        rejected = Counter(stations.rejected[r] for r in ids if r in stations.rejected)
    latencies = [answered[r] - stations.sent[r] for r in answered]
    first, last_sent = min(sent_at), max(sent_at)
    last_answer = max(answered.values(), default=published)
    return {
        "requests": count,
        "verdicts": len(answered),
        "rejected": dict(rejected),
        "missing": count - len(answered) - sum(rejected.values()),
        "complete": complete,
        "offered_per_s": (count - 1) / (last_sent - first) if count > 1 else 0.0,
        "achieved_per_s": len(answered) / (last_answer - first) if last_answer > first else 0.0,
        "publish_lag_ms_max": 1e3 * max(sent["lag_s"]),
        "latency_ms": _percentiles(latencies),
    }


def run_line_bench(cfg: LineBenchConfig) -> dict[str, Any]:
    """Start a worker, offer the paced load through the broker, report what came back."""
    site = f"line-{uuid.uuid4().hex[:8]}"
    metrics_port = _free_port()
    with tempfile.TemporaryDirectory(prefix="inspector-line-") as tmp:
        url = cfg.store_url or f"sqlite:///{Path(tmp) / 'line.db'}"
        settings = Settings(
            broker=BrokerSettings(host=cfg.host, port=cfg.port, session_expiry_s=60),
            store=StoreSettings(url=url, blob_dir=Path(tmp) / "blobs"),
            model=cfg.model,
            sites={site: BENCH_PROFILE},
            worker=WorkerSettings(
                worker_id=site,
                group=site,
                sites=(site,),
                max_batch=cfg.max_batch,
                max_wait_ms=cfg.max_wait_ms,
                validation_threads=cfg.validation_threads,
                metrics_port=metrics_port,
                receive_maximum=max(64, 4 * cfg.max_batch),
                queue_size=max(256, 8 * cfg.max_batch),
            ),
        )
        stations = _Stations(cfg, site)
        stations.start()
        worker = _Worker(settings, cfg.random_full, Path(tmp))
        started = time.monotonic()
        worker.start()
        try:
            _wait_online(settings.broker, site, worker, cfg.start_timeout_s)
            ready_s = time.monotonic() - started
            warmup = _phase(stations, cfg, cfg.warmup_s) if cfg.warmup_s > 0 else None
            before = _worker_totals(metrics_port)
            measured = _phase(stations, cfg, cfg.duration_s)
            after = _worker_totals(metrics_port)
        finally:
            stations.stop()
            worker.stop()
    return {
        "benchmark": "line",
        "config": asdict(cfg) | {"model": cfg.model.model_dump(mode="json")},
        "payload_bytes": len(stations._request(0).to_payload()),
        "worker_ready_s": ready_s,
        "warmup": warmup,
        "measured": measured,
        "worker": _worker_means(before, after),
    }


if __name__ == "__main__":
    _serve_main(sys.argv[1:])
