"""Site-adapter training steps on the full-size Phi4Multimodal architecture (random weights).

Each step is the one `inspector train` takes (the trainer's `LoraSteps`): the serving
prompt and media embedding, the language model with the site LoRA, gradient checkpointing,
the verdict-token loss, AdamW. Timed per batch size, with the peak GPU memory, and the time
to save the adapter and attach it again (what a worker's hot swap reads and loads).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from inspector.bench.engine import (
    BENCH_SITE,
    EngineBenchConfig,
    _build,
    _free,
    _peak_gib,
    _requests,
    _reset_peak,
    _sync,
    report_head,
)
from inspector.engine.checkpoint import resolve_runtime
from inspector.engine.tiny import build_processor, build_tokenizer, full_size_config, tiny_config
from inspector.settings import ModelSettings, TrainSettings
from inspector.train.trainer import LoraSteps


@dataclass(frozen=True)
class TrainBenchConfig:
    """What to measure: the reference workload's inspections at a few batch sizes."""

    batch_sizes: tuple[int, ...] = (1, 4, 8)
    steps: int = 5  # timed steps per batch size, after one untimed warm-up step
    width: int = 640
    height: int = 480
    audio_seconds: float = 8.0
    rank: int = 32
    gradient_checkpointing: bool = True
    architecture: Literal["full", "tiny"] = "full"
    device: Literal["cuda", "cpu"] = "cuda"


def run_train_bench(cfg: TrainBenchConfig) -> dict[str, Any]:
    """Step time and peak memory per batch size, then the adapter's save and attach time."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the training benchmark needs a CUDA GPU")
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = full_size_config(tokenizer) if cfg.architecture == "full" else tiny_config(tokenizer)
    runtime = resolve_runtime(ModelSettings(device=cfg.device))
    base = _build(config, runtime.dtype, runtime.attn_implementation, cfg.device)
    settings = TrainSettings(rank=cfg.rank, gradient_checkpointing=cfg.gradient_checkpointing)
    lora = LoraSteps(base, processor, runtime.device, BENCH_SITE, settings)
    lora.model.train()
    workload = EngineBenchConfig(
        width=cfg.width, height=cfg.height, audio_seconds=cfg.audio_seconds
    )
    runs = []
    for size in cfg.batch_sizes:
        _free(cfg.device)
        embeds, mask = lora.embedded(_requests(workload, size, offset=size))
        target = (torch.arange(size) % 2).to(runtime.device)
        lora.step(embeds, mask, target)  # warm-up: allocator, kernels, optimiser state
        _sync(cfg.device)
        _reset_peak(cfg.device)
        seconds, losses = [], []
        for _ in range(cfg.steps):
            started = time.perf_counter()
            losses.append(lora.step(embeds, mask, target))
            _sync(cfg.device)
            seconds.append(time.perf_counter() - started)
        runs.append(
            {
                "batch_size": size,
                "prompt_tokens": int(mask.shape[1]),
                "step_seconds": seconds,
                "step_s_median": statistics.median(seconds),
                "examples_per_s": size / statistics.median(seconds),
                "peak_memory_gib": _peak_gib(cfg.device),
                "losses": losses,
            }
        )
    swap = _save_and_attach(lora, cfg.device)
    trainable = sum(p.numel() for p in lora.params)
    return {
        **report_head("train", cfg.device, cfg),
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "trainable_parameters": trainable,
        "runs": runs,
        "adapter": swap,
    }


def _save_and_attach(lora: LoraSteps, device: str) -> dict[str, Any]:
    """Write the adapter as `inspector train` does, then attach it to the model again."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "site"
        started = time.perf_counter()
        size = lora.save(out).stat().st_size
        saved = time.perf_counter() - started
        _sync(device)
        started = time.perf_counter()
        lora.model.load_adapter(str(out), adapter_name="swapped", autocast_adapter_dtype=False)
        lora.model.set_adapter("swapped")
        _sync(device)
        attached = time.perf_counter() - started
    return {"bytes": size, "save_s": saved, "attach_s": attached}
