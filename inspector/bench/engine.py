"""Engine throughput on the full-size Phi4Multimodal architecture, next to the seed recipe.

Both paths run in one process on one GPU with the same random weights' architecture, the
same photos, voice notes and prompt text, so the ratio is a like-for-like comparison:

- seed recipe: fp16, eager attention, batch 1, `generate` of 64 new tokens per request;
- engine: bf16, sdpa (flash-attn when installed), one batch of many requests, verdict from
  the prefill logits, then a bounded greedy rationale with the vision LoRA attached,
  decoded from a static KV cache through a CUDA graph (`static_decode=False`: one eager
  forward per token, the engine's earlier path).
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from peft import get_peft_model
from transformers import Phi4MultimodalForCausalLM

from inspector.engine.checkpoint import resolve_runtime
from inspector.engine.engine import PhiEngine
from inspector.engine.prompt import verdict_prompt
from inspector.engine.tiny import (
    build_processor,
    build_tokenizer,
    full_size_config,
    lora_config,
    tiny_config,
)
from inspector.engine.types import VISION_ADAPTER, EngineRequest
from inspector.settings import ModelSettings, SiteProfile

BENCH_SITE = SiteProfile(part="machined housing", threshold=0.7)


@dataclass(frozen=True)
class EngineBenchConfig:
    """What to measure; the defaults are the issue's reference workload."""

    batch_size: int = 32
    batches: int = 3
    width: int = 640
    height: int = 480
    audio_seconds: float = 8.0
    rationale_tokens: int = 48
    seed_requests: int = 4
    seed_new_tokens: int = 64
    attn_implementation: str = "auto"
    static_decode: bool = True  # False: one eager forward per decoded token (the old path)
    lora_rank: int = 256  # the public vision LoRA's rank
    skip_seed: bool = False
    # "tiny" on "cpu" runs the same code in seconds, to check the benchmark itself.
    architecture: Literal["full", "tiny"] = "full"
    device: Literal["cuda", "cpu"] = "cuda"


def _requests(cfg: EngineBenchConfig, count: int, offset: int) -> list[EngineRequest]:
    rng = np.random.default_rng(offset)
    out = []
    for i in range(count):
        image = rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8)
        audio = (rng.standard_normal(int(16_000 * cfg.audio_seconds)) * 0.1).astype(np.float32)
        out.append(EngineRequest(f"bench-{offset}-{i}", "bench", [image], audio, "checked ok"))
    return out


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0


def _build(config: Any, dtype: torch.dtype, attn: str, device: str) -> Any:
    with torch.device(device):
        model = Phi4MultimodalForCausalLM._from_config(  # type: ignore[no-untyped-call]
            config, dtype=dtype, attn_implementation=attn
        )
    model.eval()
    return model


def build_bench_engine(cfg: EngineBenchConfig, processor: Any, config: Any) -> PhiEngine:
    """The engine over a freshly built random model with a vision-shaped LoRA."""
    runtime = resolve_runtime(
        ModelSettings(device=cfg.device, attn_implementation=cfg.attn_implementation)
    )
    model = get_peft_model(
        _build(config, runtime.dtype, runtime.attn_implementation, cfg.device),
        lora_config(cfg.lora_rank),
        adapter_name=VISION_ADAPTER,
        autocast_adapter_dtype=False,  # as the engine loads its adapters
    )
    model.eval()
    settings = ModelSettings(
        path=Path(f"phi4mm-{cfg.architecture}-random"),
        device=cfg.device,
        max_rationale_tokens=cfg.rationale_tokens,
    )
    return PhiEngine(
        model, processor, settings, {"bench": BENCH_SITE}, static_decode=cfg.static_decode
    )


def measure_engine(cfg: EngineBenchConfig, engine: PhiEngine) -> dict[str, Any]:
    """Throughput of `engine` on `cfg`'s workload: with the rationale, then the verdict alone."""
    settings = engine.settings.model_copy(update={"max_rationale_tokens": cfg.rationale_tokens})
    engine.settings = settings
    engine.static_decode = cfg.static_decode
    engine.infer(_requests(cfg, cfg.batch_size, 0))  # warm-up: kernels, allocator
    _sync(cfg.device)
    walls, timings, rationale_tokens = [], [], []
    for b in range(cfg.batches):
        batch = _requests(cfg, cfg.batch_size, b + 1)
        t0 = time.perf_counter()
        results = engine.infer(batch)
        _sync(cfg.device)
        walls.append(time.perf_counter() - t0)
        timings.append(results[0].timings_ms)
        rationale_tokens += [r.rationale_tokens for r in results]
    # The verdict alone (no rationale): what one prefill costs per inspection.
    engine.settings = settings.model_copy(update={"max_rationale_tokens": 0})
    t0 = time.perf_counter()
    results_v = engine.infer(_requests(cfg, cfg.batch_size, 99))
    _sync(cfg.device)
    verdict_wall = time.perf_counter() - t0
    engine.settings = settings
    stages = {k: float(np.mean([t[k] for t in timings])) for k in timings[0]}
    return {
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "attn_implementation": engine.model.config._attn_implementation,
        "static_decode": cfg.static_decode,
        "batch_size": cfg.batch_size,
        "batches": cfg.batches,
        "lora_rank": cfg.lora_rank,
        "max_rationale_tokens": cfg.rationale_tokens,
        "mean_rationale_tokens": float(np.mean(rationale_tokens)),
        "prompt_tokens": results_v[0].prompt_tokens,
        "batch_seconds": walls,
        "inspections_per_s": cfg.batch_size * cfg.batches / sum(walls),
        "stage_ms_mean": stages,
        # Per token fed to a row: the verdict word, then up to the rationale bound.
        "decode_ms_per_step": stages["decode"] / (cfg.rationale_tokens + 1),
        "verdict_only_inspections_per_s": cfg.batch_size / verdict_wall,
        "peak_memory_gib": _peak_gib(cfg.device),
    }


def _bench_engine(cfg: EngineBenchConfig, processor: Any, config: Any) -> dict[str, Any]:
    started = time.perf_counter()
    engine = build_bench_engine(cfg, processor, config)
    build_s = time.perf_counter() - started
    report = measure_engine(cfg, engine)
    report["build_s"] = build_s
    del engine
    return report


def _bench_seed(cfg: EngineBenchConfig, processor: Any, config: Any) -> dict[str, Any]:
    # fp16 as the seed recipe; a CPU check runs it in fp32, which CPUs handle everywhere.
    dtype = torch.float16 if cfg.device == "cuda" else torch.float32
    model = _build(config, dtype, "eager", cfg.device)
    prompt = verdict_prompt(BENCH_SITE, 1, True, "checked ok")
    tokenizer = processor.tokenizer

    def one(model: Any, request: EngineRequest) -> int:
        inputs = processor(
            text=[prompt],
            images=list(request.images),
            audio=[request.audio],
            sampling_rate=16_000,
            return_tensors="pt",
        ).to(cfg.device)
        out = model.generate(
            **inputs,
            max_new_tokens=cfg.seed_new_tokens,
            min_new_tokens=cfg.seed_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        _sync(cfg.device)
        return int(out.shape[1] - inputs["input_ids"].shape[1])

    requests = _requests(cfg, cfg.seed_requests + 1, 1000)
    one(model, requests[0])  # warm-up
    walls, new_tokens = [], []
    for request in requests[1:]:
        t0 = time.perf_counter()
        new_tokens.append(one(model, request))
        walls.append(time.perf_counter() - t0)
    report = {
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": "eager",
        "batch_size": 1,
        "new_tokens": new_tokens,
        "request_seconds": walls,
        "inspections_per_s": len(walls) / sum(walls),
        "peak_memory_gib": _peak_gib(cfg.device),
    }
    del model
    return report


def run_engine_bench(cfg: EngineBenchConfig) -> dict[str, Any]:
    """Measure the engine and the seed recipe on the full-size architecture (needs CUDA)."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the engine benchmark needs a CUDA GPU")
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = full_size_config(tokenizer) if cfg.architecture == "full" else tiny_config(tokenizer)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cfg.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "workload": {
            "image": f"{cfg.width}x{cfg.height}",
            "audio_seconds": cfg.audio_seconds,
            "images_per_request": 1,
        },
        "config": asdict(cfg),
    }
    _free(cfg.device)
    report["engine"] = _bench_engine(cfg, processor, config)
    _free(cfg.device)
    if not cfg.skip_seed:
        report["seed"] = _bench_seed(cfg, processor, config)
        _free(cfg.device)
        report["speedup"] = (
            report["engine"]["inspections_per_s"] / report["seed"]["inspections_per_s"]
        )
    return report
