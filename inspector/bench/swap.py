"""Hot swap of a site adapter on the full-size architecture (random bf16 weights).

What an operator waits for after `inspector adapters promote`, measured on the engine the
workers run:

- load: reading the adapter file and checking its sha256 (outside the batch lock, also
  timed alone as `read_sha256_s`), then attaching it between batches (under the lock), on
  an idle engine;
- swap under load: a promotion arriving while a batch is in flight waits for that batch,
  which finishes on the old version; the next batch runs on the new one;
- the first batch after a swap, against a steady one: the decode graphs captured with the
  old adapter are dropped and captured again.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from peft import get_peft_model_state_dict
from safetensors.torch import save_file

from inspector.bench.engine import (
    BENCH_SITE,
    EngineBenchConfig,
    _requests,
    _sync,
    build_random_engine,
)
from inspector.engine.lora import WEIGHTS_FILE, ZERO_ADAPTER, LoraSpec
from inspector.engine.runtime import PhiEngine
from inspector.quality import AdapterRef

SITE = "bench"


@dataclass(frozen=True)
class SwapBenchConfig:
    """The workload around the swaps."""

    rank: int = 32  # the site adapter's rank (the default of `train.rank`)
    swaps: int = 3
    batch_size: int = 32
    width: int = 640
    height: int = 480
    audio_seconds: float = 8.0
    rationale_tokens: int = 48
    vision_rank: int = 256  # the checkpoint's own LoRA, attached as on a worker
    architecture: Literal["full", "tiny"] = "full"
    device: Literal["cuda", "cpu"] = "cuda"


def write_site_adapter(engine: PhiEngine, directory: Path, rank: int, seed: int) -> str:
    """A random site adapter for `engine`'s model in peft's format; returns its sha256."""
    generator = torch.Generator().manual_seed(seed)
    shapes = get_peft_model_state_dict(engine.model, adapter_name=ZERO_ADAPTER)
    state = {}
    for key, tensor in shapes.items():
        out_f, in_f = tensor.shape
        shape = (rank, in_f) if ".lora_A." in key else (out_f, rank)
        state[key] = (torch.randn(shape, generator=generator) * 0.01).to(tensor.dtype)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / WEIGHTS_FILE))
    LoraSpec(rank=rank).config().save_pretrained(str(directory))
    return hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()


def _batch(engine: PhiEngine, requests: list[Any], device: str) -> tuple[float, set[int | None]]:
    t0 = time.perf_counter()
    results = engine.infer(requests)
    _sync(device)
    return time.perf_counter() - t0, {r.adapter_version for r in results}


def run_swap_bench(cfg: SwapBenchConfig) -> dict[str, Any]:
    """Load, swap-under-load and first-batch-after figures for `cfg.swaps` versions."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the hot-swap benchmark needs a CUDA GPU")
    ecfg = EngineBenchConfig(
        batch_size=cfg.batch_size,
        width=cfg.width,
        height=cfg.height,
        audio_seconds=cfg.audio_seconds,
        rationale_tokens=cfg.rationale_tokens,
        lora_rank=cfg.vision_rank,
        architecture=cfg.architecture,
        device=cfg.device,
    )
    engine = build_random_engine(ecfg, {SITE: BENCH_SITE})
    engine.settings = engine.settings.model_copy(
        update={"max_rationale_tokens": cfg.rationale_tokens}
    )
    requests = [_requests(ecfg, cfg.batch_size, b) for b in range(2)]
    loads: list[float] = []
    checks: list[float] = []
    swaps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:

        def adapter(version: int) -> tuple[str, str]:
            path = Path(tmp) / f"v{version}"
            return str(path), write_site_adapter(engine, path, cfg.rank, version)

        _batch(engine, requests[0], cfg.device)  # warm-up: kernels, allocator, graphs
        size_mb = 0.0
        for swap in range(cfg.swaps):
            # An idle engine: the load alone (read, sha256, attach).
            idle, swapped = 2 * swap + 1, 2 * swap + 2
            path, sha = adapter(idle)
            size_mb = Path(path, WEIGHTS_FILE).stat().st_size / 1e6
            t0 = time.perf_counter()
            hashlib.sha256(Path(path, WEIGHTS_FILE).read_bytes()).hexdigest()
            checks.append(time.perf_counter() - t0)  # the part done outside the batch lock
            t0 = time.perf_counter()
            engine.load_site_adapter(SITE, AdapterRef("bench", idle, sha), path)
            loads.append(time.perf_counter() - t0)
            _batch(engine, requests[1], cfg.device)
            steady, _ = _batch(engine, requests[1], cfg.device)
            # A promotion while a batch runs: it waits for that batch, then attaches.
            path, sha = adapter(swapped)
            inflight: list[tuple[float, set[int | None]]] = []
            runner = threading.Thread(
                target=lambda out: out.append(_batch(engine, requests[0], cfg.device)),
                args=(inflight,),
            )
            runner.start()
            while not engine.batch_running() and runner.is_alive():
                time.sleep(0.001)  # polls the engine so that the swap starts mid-batch
            t0 = time.perf_counter()
            engine.load_site_adapter(SITE, AdapterRef("bench", swapped, sha), path)
            waited = time.perf_counter() - t0
            runner.join()
            first, served = _batch(engine, requests[1], cfg.device)
            swaps.append(
                {
                    "in_flight_batch_s": inflight[0][0],
                    "in_flight_batch_versions": sorted(v or 0 for v in inflight[0][1]),
                    "swap_wait_s": waited,
                    "next_batch_versions": sorted(v or 0 for v in served),
                    "first_batch_after_s": first,
                    "steady_batch_s": steady,
                }
            )
    return {
        "device": torch.cuda.get_device_name() if cfg.device == "cuda" else "cpu",
        "config": asdict(cfg),
        "adapter_mb": size_mb,
        "load_s": loads,
        "read_sha256_s": checks,
        "swaps": swaps,
    }
