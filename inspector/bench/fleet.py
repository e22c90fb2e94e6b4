"""The line benchmark's workers: N `inspector serve` processes in one shared-subscription group.

As in production (`inspector-worker@N`), each worker is a process of its own with its own
worker id (its MQTT session), its own metrics port and, on a multi-GPU host, its own GPU
through `CUDA_VISIBLE_DEVICES`; all of them join one `$share/{group}/…` subscription and the
broker spreads the requests over them. With more workers than GPUs (or on a CPU) they share
the device: a rehearsal of the path, not of the scaling.

Engines: `model` loads `model.path`; `random-full` builds the full-size architecture with
random weights (as `inspector bench engine` does); `instant` answers at once and `paced`
after `batch_s` per batch (the load-test engines of `bench pipeline` and `bench delivery`),
so the host side (broker, validation, store) is measured without a model.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from inspector.engine.types import InferenceEngine
from inspector.errors import BenchFailed
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import parse_status, status_topic
from inspector.settings import BrokerSettings, Settings

log = logging.getLogger(__name__)

EngineKind = Literal["model", "random-full", "instant", "paced"]
ENGINE_KINDS: tuple[EngineKind, ...] = ("model", "random-full", "instant", "paced")


def _engine(
    kind: EngineKind, batch_s: float, settings: Settings, pass_share: float | None = None
) -> InferenceEngine | None:
    """The engine a bench worker serves; None: `serve` loads `model.path` itself.

    `pass_share` (random-full only): random weights lean at random, so which parts pass, and
    get no rationale under the sites' fail_and_review policy, is drawn with this share.
    """
    if kind == "instant":
        from inspector.bench.pipeline import InstantEngine

        return InstantEngine()
    if kind == "paced":
        from inspector.bench.delivery import PacedEngine

        return PacedEngine(batch_s)
    if kind == "random-full":
        from inspector.bench.engine import (
            EngineBenchConfig,
            build_random_engine,
            drawn_rationales,
        )

        engine = build_random_engine(
            EngineBenchConfig(
                rationale_tokens=settings.model.max_rationale_tokens,
                compile=settings.model.compile,
                quantization=(settings.model.quantization,),
            ),
            settings.sites,
        )
        if pass_share is not None:
            engine.wants_rationale = drawn_rationales(pass_share)
        return engine
    return None


def _serve_main(argv: list[str]) -> None:
    """The worker process: `inspector serve`'s code path, with the bench's engine.

    argv: the settings as a JSON file, the engine kind, the paced engine's seconds per batch,
    and optionally the drawn pass share (see `_engine`).
    """
    logging.basicConfig(level=logging.WARNING, format="worker %(levelname)s %(name)s: %(message)s")
    from inspector.worker.run import serve

    settings = Settings.model_validate_json(Path(argv[0]).read_text())
    kind: EngineKind = "model"
    for known in ENGINE_KINDS:
        if argv[1] == known:
            kind = known
    pass_share = float(argv[3]) if len(argv) > 3 else None
    serve(settings, _engine(kind, float(argv[2]), settings, pass_share))


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as `CUDA_VISIBLE_DEVICES` entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and not d.strip().startswith("-")]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def placement(workers: int | Literal["gpus"], device: str) -> tuple[int, tuple[str, ...]]:
    """How many workers, and the `CUDA_VISIBLE_DEVICES` of each in turn (empty: inherited).

    `gpus`: one worker per visible GPU. A number on a host with several GPUs spreads the
    workers over them (worker i on GPU i mod n), so 1, 2 and 4 workers on a 4-GPU host
    measure 1, 2 and 4 GPUs; on one GPU or a CPU they share the device.
    """
    gpus = [] if device == "cpu" else visible_gpus()
    if workers == "gpus":
        if not gpus:
            raise BenchFailed("--workers gpus: no CUDA device is visible; give a number instead")
        return len(gpus), tuple(gpus)
    return workers, tuple(gpus) if len(gpus) > 1 else ()


@dataclass(frozen=True)
class WorkerSpec:
    """One worker of the group: its id, metrics port and device."""

    worker_id: str
    metrics_port: int
    cuda_visible_devices: str | None
    # OMP_NUM_THREADS: torch's CPU threads default to every core in each process, so N
    # workers on one host oversubscribe its CPUs N times over. None: inherited.
    cpu_threads: int | None = None


class WorkerProcess:
    """One worker as a child process, its output in a log file of its own."""

    def __init__(
        self,
        spec: WorkerSpec,
        settings: Settings,
        engine: EngineKind,
        batch_s: float,
        workdir: Path,
        pass_share: float | None = None,
    ) -> None:
        self.spec = spec
        path = workdir / f"{spec.worker_id}.json"
        path.write_text(settings.model_dump_json())
        self.log_path = workdir / f"{spec.worker_id}.log"
        self._argv = [
            sys.executable,
            "-m",
            "inspector.bench.fleet",
            str(path),
            engine,
            str(batch_s),
            *([str(pass_share)] if pass_share is not None else []),
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.spec.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.spec.cuda_visible_devices
        if self.spec.cpu_threads is not None:
            env["OMP_NUM_THREADS"] = str(self.spec.cpu_threads)
        with self.log_path.open("wb") as log_file:
            self._proc = subprocess.Popen(
                self._argv, stdout=log_file, stderr=subprocess.STDOUT, env=env
            )

    def exit_code(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    def cpu_s(self) -> float | None:
        """CPU seconds the process has used (user + system, every thread); None off Linux."""
        if self._proc is None:
            return None
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


def wait_online(broker: BrokerSettings, workers: Sequence[WorkerProcess], timeout_s: float) -> None:
    """Block until every worker's retained status says online; fail if one exits."""
    pending = {w.spec.worker_id for w in workers}
    lock = threading.Lock()
    all_online = threading.Event()

    def on_status(message: Message) -> None:
        if not message.payload:
            return
        status = parse_status(message.payload)
        if status.state == "online":
            with lock:
                pending.discard(status.worker_id)
                if not pending:
                    all_online.set()

    watcher = MqttTransport(
        broker.model_copy(update={"session_expiry_s": 0}),
        f"bench-line-watch-{uuid.uuid4().hex[:8]}",
        clean_start=True,
    )
    for worker in workers:
        watcher.subscribe(status_topic(worker.spec.worker_id), on_status)
    watcher.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not all_online.wait(0.5):
            for worker in workers:
                if (code := worker.exit_code()) is not None:
                    raise BenchFailed(
                        f"bench worker {worker.spec.worker_id} exited with code {code}:\n"
                        f"{worker.log_tail()}"
                    )
            if time.monotonic() > deadline:
                with lock:
                    late = ", ".join(sorted(pending))
                raise BenchFailed(f"bench workers not online within {timeout_s:g} s: {late}")
    finally:
        watcher.stop()


def metric_totals(port: int) -> dict[str, float]:
    """Sums and counts of a worker's histograms, from its Prometheus endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:
        log.warning("could not read the worker's metrics on port %d: %s", port, exc)
        return {}
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count")) and not sample.labels
    }


def host_cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole host since boot, from /proc/stat; None off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


if __name__ == "__main__":
    _serve_main(sys.argv[1:])
