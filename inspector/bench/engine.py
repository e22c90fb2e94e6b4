"""Engine throughput on the full-size Phi4Multimodal architecture, next to the seed recipe.

Both paths run in one process on one GPU with the same random weights' architecture, the
same photos, voice notes and prompt text, so the ratio is a like-for-like comparison:

- seed recipe: fp16, eager attention, batch 1, `generate` of 64 new tokens per request;
- engine: bf16, sdpa (flash-attn when installed), one batch of many requests, verdict from
  the prefill logits, then a bounded greedy rationale, decoded from a static KV cache
  through a CUDA graph (`static_decode=False`: one eager forward per token, the engine's
  earlier path), on the served base: a random vision-shaped LoRA merged into the weights;
- optionally the same engine with that LoRA attached unmerged (`unmerged`), the base as
  it was served before the merge;
- the engine under each `model.quantization` asked for (`quantization`, e.g. bf16 and
  FP8), each built from the same random weights and run on the same requests, so the
  report gives each one's verdict agreement with the first: the share of requests with
  the same PASS/FAIL leaning and the largest |ΔP(PASS)|.

The seed recipe gets one untimed warm-up request per photo size, then `seed_requests`
timed ones (5 by default): the first request of a fresh process pays for CUDA's and
the allocator's start, which is no part of the recipe's steady rate.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import peft
import torch
import transformers
from peft import PeftModel, get_peft_model
from transformers import Phi4MultimodalForCausalLM

from inspector.engine import policy
from inspector.engine.checkpoint import resolve_runtime
from inspector.engine.lora import (
    Lora,
    LoraFactors,
    LoraSpec,
    attach_lora,
    difference_lora,
    lora_factors,
    lora_host,
    merge_lora,
)
from inspector.engine.prompt import verdict_prompt
from inspector.engine.quantize import stored_bytes
from inspector.engine.runtime import PhiEngine
from inspector.engine.tiny import build_processor, build_tokenizer, full_size_config, tiny_config
from inspector.engine.types import SPEECH_ADAPTER, VISION_ADAPTER, EngineRequest
from inspector.quality import decide, leaning
from inspector.settings import ModelSettings, SiteProfile

log = logging.getLogger(__name__)

BENCH_SITE = SiteProfile(part="machined housing", threshold=0.7)
# The public checkpoint's speech LoRA: rank 320, alpha 640, on the same modules as its
# vision LoRA (config.json of microsoft/Phi-4-multimodal-instruct, "speech_lora").
SPEECH_LORA = LoraSpec(rank=320)
Quantization = Literal["none", "fp8"]


@dataclass(frozen=True)
class EngineBenchConfig:
    """What to measure; the defaults are the issue's reference workload."""

    batch_size: int = 32
    batches: int = 3
    width: int = 640
    height: int = 480
    audio_seconds: float = 8.0
    rationale_tokens: int = 48
    seed_requests: int = 5  # timed, after one untimed warm-up request
    seed_new_tokens: int = 64
    attn_implementation: str = "auto"
    static_decode: bool = True  # False: one eager forward per decoded token (the old path)
    lora_rank: int = 256  # the public vision LoRA's rank
    baseline: bool = True  # also time the seed recipe, in the same process
    unmerged: bool = False  # also time the vision LoRA attached, not merged (the old base)
    # torch.compile the engine's repeated blocks (on a GPU), as `inspector serve` does
    compile: bool = ModelSettings.model_fields["compile"].default
    # One engine per entry, same weights and requests; the first is the agreement reference.
    quantization: tuple[Quantization, ...] = ("none",)
    profile_runs: int = 3  # stage-by-stage runs (each stage synchronised), minimum taken
    # Also measure a line where this share of parts passes and only FAIL/REVIEW verdicts get a
    # rationale (sites.<site>.rationale = "fail_and_review"); None: not measured. Random
    # weights lean at random, so which rows pass is drawn with this share.
    pass_share: float | None = None
    # Also measure the cost of a shadow adapter judging this share of the requests again in
    # the same batches (`inspector adapters shadow --share`), against share 0; None: not.
    shadow_share: float | None = None
    # Also measure the note/photo disagreement check (`sites.<site>.note_disagreement` off,
    # flag, review) with transcripts of up to this many tokens (bench/notes.py); the engine
    # then carries a random speech LoRA of the public one's rank, as a checkpoint loads it.
    note_check_tokens: int | None = None
    # Batch sizes of the latency curve the worker's batching works on (verdict and rationale
    # time per batch size); empty: not measured.
    curve_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    # Ceilings the MFU and the decode floor are taken against: the bf16 matrix rate and the
    # copy bandwidth measured on one H200 (a datasheet's numbers are higher).
    peak_tflops: float = 790.0
    bandwidth_tbs: float = 4.3
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


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0


def _build(config: Any, dtype: torch.dtype, attn: str, device: str) -> Any:
    with torch.device(device):
        model = Phi4MultimodalForCausalLM._from_config(  # type: ignore[no-untyped-call]
            config, dtype=dtype, attn_implementation=attn
        )
    model.eval()
    return model


def build_bench_engine(
    cfg: EngineBenchConfig,
    processor: Any,
    config: Any,
    sites: Mapping[str, SiteProfile] | None = None,
    merged: bool = True,
    quantization: Quantization = "none",
) -> PhiEngine:
    """The engine over a freshly built random model and a random vision-shaped LoRA.

    `merged` serves as the engine loads a checkpoint: the LoRA merged into the weights and
    no LoRA on the verdict rows; otherwise the LoRA stays attached and runs on every row,
    as the engine did before merging.
    """
    runtime = resolve_runtime(
        ModelSettings(device=cfg.device, attn_implementation=cfg.attn_implementation)
    )
    model: PeftModel = get_peft_model(
        _build(config, runtime.dtype, runtime.attn_implementation, cfg.device),
        LoraSpec(rank=cfg.lora_rank).config(random_init=True),
        adapter_name=VISION_ADAPTER,
        autocast_adapter_dtype=False,  # as the engine loads its adapters
    )
    model.eval()
    if merged:
        vision = lora_factors(model, VISION_ADAPTER)
        base: Any = model.unload()
        merge_lora(base, vision)
        model = lora_host(base)
        if cfg.note_check_tokens is not None:
            # As load_checkpoint attaches the transcription adapter: its difference from
            # the merged vision LoRA, on the rows that transcribe.
            attach_lora(model, SPEECH_ADAPTER, difference_lora(random_lora(vision), vision))
        del vision
    settings = ModelSettings(
        path=Path(f"phi4mm-{cfg.architecture}-random"),
        device=cfg.device,
        max_rationale_tokens=cfg.rationale_tokens,
        compile=cfg.compile,
        quantization=quantization,
    )
    return PhiEngine(
        model,
        processor,
        settings,
        sites if sites is not None else {"bench": BENCH_SITE},
        static_decode=cfg.static_decode,
    )


def random_lora(like: Lora, spec: LoraSpec = SPEECH_LORA) -> Lora:
    """Random factors of `spec`'s rank on the modules of `like`, in float32."""
    out = {}
    for name, factors in like.items():
        a = torch.randn(spec.rank, factors.a.shape[1], device=factors.a.device) * 0.01
        b = torch.randn(factors.b.shape[0], spec.rank, device=factors.b.device) * 0.01
        out[name] = LoraFactors(a, b, spec.scaling)
    return out


def build_random_engine(cfg: EngineBenchConfig, sites: Mapping[str, SiteProfile]) -> PhiEngine:
    """`cfg`'s architecture with random weights, tokenizer and processor, serving `sites`."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = full_size_config(tokenizer) if cfg.architecture == "full" else tiny_config(tokenizer)
    return build_bench_engine(cfg, processor, config, sites, quantization=cfg.quantization[0])


def report_head(benchmark: str, device: str, cfg: Any) -> dict[str, Any]:
    """What every GPU benchmark's JSON starts with: what ran, where, on which versions."""
    return {
        "benchmark": benchmark,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "config": asdict(cfg),
    }


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class _Timed:
    """One batch through `infer` with a verdict callback: when the verdicts came, when all did."""

    def __init__(self, engine: PhiEngine, batch: list[EngineRequest], device: str) -> None:
        self.verdicts_s = 0.0
        t0 = time.perf_counter()

        def on_verdicts(results: list[Any]) -> None:
            # P(PASS) was read off the device to decide: the prefill has finished.
            self.verdicts_s = max(self.verdicts_s, time.perf_counter() - t0)

        self.results = engine.infer(batch, on_verdicts)
        _sync(device)
        self.wall_s = time.perf_counter() - t0


def drawn_rationales(pass_share: float, seed: int = 7) -> Any:
    """A rationale rule for random weights: each row passes (no rationale) with `pass_share`."""
    rng = np.random.default_rng(seed)
    return lambda profile, scored: bool(rng.random() >= pass_share)


def _measure_mix(
    cfg: EngineBenchConfig, engine: PhiEngine, inputs: list[list[EngineRequest]]
) -> dict[str, Any]:
    """The same batches on a line where `cfg.pass_share` of parts pass: FAIL/REVIEW explained."""
    assert cfg.pass_share is not None
    try:
        # An untimed pass first, with the same draws: the few-row decodes run at batch
        # buckets the full batches never used, whose static caches and CUDA graphs are built
        # once (as a worker's first such batches build them), not in every batch.
        for _untimed_then_timed in range(2):
            engine.wants_rationale = drawn_rationales(cfg.pass_share)
            runs = [_Timed(engine, batch, cfg.device) for batch in inputs]
    finally:
        engine.wants_rationale = policy.wants_rationale
    walls = [r.wall_s for r in runs]
    explained = [res.rationale_state.value == "produced" for r in runs for res in r.results]
    return {
        "pass_share": cfg.pass_share,
        "rationale": "fail_and_review",
        "explained_share": sum(explained) / len(explained),
        "batch_seconds": walls,
        "verdict_seconds": [r.verdicts_s for r in runs],
        "inspections_per_s": cfg.batch_size * len(runs) / sum(walls),
    }


def _measure_shadow(
    cfg: EngineBenchConfig, engine: PhiEngine, inputs: list[list[EngineRequest]]
) -> dict[str, Any]:
    """The same batches at shadow share 0 and at `cfg.shadow_share` (see bench/shadow.py)."""
    from inspector.bench.shadow import measure_shadow

    assert cfg.shadow_share is not None
    return measure_shadow(
        engine, inputs, cfg.shadow_share, lambda batch: _Timed(engine, batch, cfg.device).wall_s
    )


def _measure_notes(
    cfg: EngineBenchConfig, engine: PhiEngine, inputs: list[list[EngineRequest]]
) -> dict[str, Any]:
    """The same batches with the note check off, flagging and forcing REVIEW (bench/notes.py)."""
    from inspector.bench.notes import measure_note_check

    assert cfg.note_check_tokens is not None
    return measure_note_check(
        engine, inputs, cfg.note_check_tokens, lambda batch: _Timed(engine, batch, cfg.device)
    )


def measure_curve(cfg: EngineBenchConfig, engine: PhiEngine) -> list[dict[str, Any]]:
    """Verdict and whole-batch time by batch size: what a small batch costs the worker."""
    out = []
    for size in cfg.curve_sizes:
        _Timed(engine, _requests(cfg, size, 500 + size), cfg.device)  # its bucket's graphs
        runs = [_Timed(engine, _requests(cfg, size, 600 + size + k), cfg.device) for k in (0, 1)]
        verdict = min(r.verdicts_s for r in runs)
        wall = min(r.wall_s for r in runs)
        out.append(
            {
                "batch_size": size,
                "verdict_s": verdict,
                "batch_s": wall,
                "inspections_per_s": size / wall,
                "verdict_only_inspections_per_s": size / verdict,
            }
        )
    return out


def measure_engine(cfg: EngineBenchConfig, engine: PhiEngine) -> dict[str, Any]:
    """Sustained throughput of `engine` on `cfg`'s workload, then the verdict alone."""
    settings = engine.settings.model_copy(update={"max_rationale_tokens": cfg.rationale_tokens})
    engine.settings = settings
    engine.static_decode = cfg.static_decode
    engine.infer(_requests(cfg, cfg.batch_size, 0))  # warm-up: kernels, allocator, graphs
    _sync(cfg.device)
    _reset_peak(cfg.device)
    # Batches back to back, as a loaded worker runs them: the sum of their walls is the
    # sustained rate, each one's wall a batch latency; the verdicts are out after the
    # prefill, before the rationales are decoded.
    inputs = [_requests(cfg, cfg.batch_size, b + 1) for b in range(cfg.batches)]
    walls, verdict_walls, timings, rationale_tokens, p_pass = [], [], [], [], []
    before = engine.decode_stats()
    for batch in inputs:
        timed = _Timed(engine, batch, cfg.device)
        results = timed.results
        walls.append(timed.wall_s)
        verdict_walls.append(timed.verdicts_s)
        timings.append(results[0].timings_ms)
        rationale_tokens += [r.rationale_tokens for r in results]
        p_pass += [r.p_pass for r in results]
    peak = _peak_gib(cfg.device)
    # What the timed batches' decodes did: after the warm-up, no builds and no captures, and
    # on a GPU every step but a row group's first-ever one replayed.
    graphs = {k: v - before[k] for k, v in engine.decode_stats().items()}
    # The verdict alone (no rationale): what one prefill costs per inspection.
    engine.settings = settings.model_copy(update={"max_rationale_tokens": 0})
    verdict_batch = _requests(cfg, cfg.batch_size, 99)
    t0 = time.perf_counter()
    results_v = engine.infer(verdict_batch)
    _sync(cfg.device)
    verdict_wall = time.perf_counter() - t0
    engine.settings = settings
    p_pass += [r.p_pass for r in results_v]
    stages = {k: float(np.mean([t[k] for t in timings])) for k in timings[0]}
    mix = _measure_mix(cfg, engine, inputs) if cfg.pass_share is not None else None
    shadow = _measure_shadow(cfg, engine, inputs) if cfg.shadow_share is not None else None
    notes = _measure_notes(cfg, engine, inputs) if cfg.note_check_tokens is not None else None
    curve = measure_curve(cfg, engine) if cfg.curve_sizes else None
    return {
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "quantization": settings.quantization,
        "quantized_layers": engine.quantized_layers,
        # False where the blocks run eagerly (--no-compile, or float8 layers that this
        # torch/torchao pair could not compile at load).
        "compiled": engine.compiled,
        "attn_implementation": engine.model.config._attn_implementation,
        "static_decode": cfg.static_decode,
        "batch_size": cfg.batch_size,
        "batches": cfg.batches,
        "lora_rank": cfg.lora_rank,
        "max_rationale_tokens": cfg.rationale_tokens,
        "mean_rationale_tokens": float(np.mean(rationale_tokens)),
        "prompt_tokens": results_v[0].prompt_tokens,
        "batch_seconds": walls,
        "batch_latency_s": {"p50": _percentile(walls, 50), "p95": _percentile(walls, 95)},
        # From a batch's start to its verdicts (after the prefill), in the same batches.
        "verdict_latency_s": {
            "p50": _percentile(verdict_walls, 50),
            "p95": _percentile(verdict_walls, 95),
        },
        "inspections_per_s": cfg.batch_size * cfg.batches / sum(walls),
        "stage_ms_mean": stages,
        # Per token fed to a row: the verdict word, then up to the rationale bound.
        "decode_ms_per_step": stages["decode"] / (cfg.rationale_tokens + 1),
        "decode_graphs": graphs,
        "verdict_only_inspections_per_s": cfg.batch_size / verdict_wall,
        "peak_memory_gib": peak,
        "pass_share_mix": mix,
        "shadow": shadow,
        "note_check": notes,
        "batch_size_curve": curve,
        # P(PASS) of every timed request, then of the verdict-only batch, in order: the same
        # requests in every engine of the run, for `verdict_agreement`.
        "p_pass": p_pass,
    }


def verdict_agreement(reference: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
    """How `other`'s P(PASS) differs from `reference`'s on the same requests, in order."""
    if len(reference) != len(other) or not reference:
        raise ValueError("agreement needs the same non-empty list of requests on both sides")
    deltas = [abs(a - b) for a, b in zip(reference, other, strict=True)]
    pairs = list(zip(reference, other, strict=True))
    same_leaning = sum(leaning(a) == leaning(b) for a, b in pairs)
    threshold = BENCH_SITE.threshold
    same_decision = sum(
        decide(a, threshold).decision == decide(b, threshold).decision for a, b in pairs
    )
    return {
        "requests": len(pairs),
        "same_leaning_share": same_leaning / len(pairs),
        "same_decision_share": same_decision / len(pairs),
        "decision_threshold": threshold,
        "max_abs_delta_p_pass": max(deltas),
        "mean_abs_delta_p_pass": float(np.mean(deltas)),
        # How spread the reference's P(PASS) is: random weights may lean one way throughout.
        "reference_pass_leaning_share": sum(leaning(a) == leaning(1.0) for a in reference)
        / len(pairs),
        "reference_p_pass_range": [min(reference), max(reference)],
    }


class _Laps:
    """Milliseconds between synchronised points: each lap ends once the device is idle."""

    def __init__(self, device: str) -> None:
        self._device = device
        _sync(device)
        self._last = time.perf_counter()

    def lap(self) -> float:
        _sync(self._device)
        now = time.perf_counter()
        ms, self._last = (now - self._last) * 1e3, now
        return ms


def _attention_flops(
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *_: Any,
    **__: Any,
) -> int:
    """QKᵀ and PV of one attention call, counted dense; the query's heads may share K and V."""
    batch, heads, queries, dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * (dim + value_dim)


def _flop_counter() -> Any:
    """torch's FLOP counter, with attention counted for grouped-query shapes too."""
    from torch.utils.flop_counter import FlopCounterMode

    names = (
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    )
    kernels = [getattr(torch.ops.aten, n) for n in names if hasattr(torch.ops.aten, n)]
    return FlopCounterMode(display=False, custom_mapping=dict.fromkeys(kernels, _attention_flops))


def _lm_step_bytes(engine: PhiEngine, batch: int, cache_len: int) -> float:
    """Bytes one decode step must read at least: the language model's weights and KV cache."""
    model: Any = engine.model.get_base_model()
    cfg = model.config
    towers = ("embed_tokens_extend", "embed_tokens.")
    weights = sum(
        stored_bytes(p)
        for name, p in model.named_parameters()
        if not any(t in name for t in towers)
    )
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * batch * cache_len
    return float(weights + kv * model.dtype.itemsize)


@torch.inference_mode()  # as the engine runs its batches
def _decode_all(cfg: EngineBenchConfig, engine: PhiEngine, state: Any, forced: list[Any]) -> None:
    """Decode every row to the bound (no stop tokens), from the engine's own static caches
    and graphs: replayed, as a served batch's are, not built for the profile."""
    from inspector.engine.decode import greedy_continue

    greedy_continue(
        engine.model,
        state,
        forced,
        cfg.rationale_tokens,
        [],
        engine.core.pad_id,
        static=cfg.static_decode,
        graphs=engine.decode_graphs(),
    )


def _decode_kernels(
    cfg: EngineBenchConfig, engine: PhiEngine, state: Any, forced: list[Any], top: int = 15
) -> list[dict[str, Any]]:
    """Where a decode step's time goes: the busiest kernels (CPU ops without a GPU) of one
    profiled decode, per step, busiest first."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = cfg.device == "cuda"
    activities = [ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    steps = cfg.rationale_tokens + len(forced[0])
    with profile(activities=activities) as prof:
        _decode_all(cfg, engine, state, forced)
        _sync(cfg.device)
    rows = []
    for event in prof.key_averages():
        spent = event.self_device_time_total if on_gpu else event.self_cpu_time_total
        if spent > 0:
            rows.append((spent, event.key, event.count))
    rows.sort(reverse=True)
    total = sum(spent for spent, _, _ in rows) or 1.0
    return [
        {
            "name": name[:120],
            "calls_per_step": count / steps,
            "ms_per_step": spent / 1e3 / steps,
            "share": spent / total,
        }
        for spent, name, count in rows[:top]
    ]


def profile_engine(cfg: EngineBenchConfig, engine: PhiEngine) -> dict[str, Any]:
    """One batch stage by stage, each stage synchronised: times, FLOPs and MFU.

    Preprocessing (photos, voice notes, tokens), the vision and audio towers, the LM
    prefill and the rationale decode, each the minimum over `profile_runs` runs.
    """
    from inspector.engine.decode import prefill
    from inspector.engine.inputs import embed, encode
    from inspector.engine.prompt import verdict_prompt as prompt_for

    device = engine.device
    batch = _requests(cfg, cfg.batch_size, 500)
    prompts = [
        prompt_for(
            BENCH_SITE,
            len(r.images),
            r.audio is not None,
            r.note,
            engine.processor.image_token,  # type: ignore[attr-defined]
            engine.processor.audio_token,  # type: ignore[attr-defined]
        )
        for r in batch
    ]
    images = [image for r in batch for image in r.images]
    audios = [r.audio for r in batch]
    adapters = [VISION_ADAPTER] * len(batch)
    forced = [engine.core.verdict.pass_ids] * len(batch)
    model = engine.model
    times: dict[str, list[float]] = {"preprocess": [], "towers": [], "prefill": [], "decode": []}
    before = engine.decode_stats()
    # One untimed run first: the profile's decode bucket (its prompts are the bare verdict
    # prompt's) gets its static cache and graph once, as a worker's first batches do.
    for run in range(max(1, cfg.profile_runs) + 1):
        if run == 1:
            times = {k: [] for k in times}
            before = engine.decode_stats()
        laps = _Laps(cfg.device)
        inputs = encode(engine.processor, prompts, images, audios, device)
        times["preprocess"].append(laps.lap())
        embeds = embed(model, inputs)
        times["towers"].append(laps.lap())
        state = prefill(model, embeds, inputs.attention_mask, adapters)
        times["prefill"].append(laps.lap())
        _decode_all(cfg, engine, state, forced)
        times["decode"].append(laps.lap())
        del state, embeds
    # Where the decode's time goes: one more decode, profiled kernel by kernel.
    state = prefill(model, embed(model, inputs), inputs.attention_mask, adapters)
    kernels = _decode_kernels(cfg, engine, state, forced)
    del state
    graphs = {k: v - before[k] for k, v in engine.decode_stats().items()}
    stage_ms = {k: min(v) for k, v in times.items()}
    # Counted eagerly: compiled kernels run past the counter's dispatch hook.
    with torch.compiler.set_stance("force_eager"):
        counter = _flop_counter()
        with counter:
            embeds = embed(model, inputs)
        tower_flops = float(counter.get_total_flops())
        counter = _flop_counter()
        with counter:
            prefill(model, embeds, inputs.attention_mask, adapters)
        prefill_flops = float(counter.get_total_flops())
    del embeds
    peak = cfg.peak_tflops * 1e12
    steps = cfg.rationale_tokens + len(forced[0])
    prompt_len = int(inputs.attention_mask.shape[1])
    floor_ms = (
        _lm_step_bytes(engine, cfg.batch_size, prompt_len + steps)
        / (cfg.bandwidth_tbs * 1e12)
        * 1e3
    )
    decode_step = stage_ms["decode"] / steps
    return {
        "batch_size": cfg.batch_size,
        "runs": max(1, cfg.profile_runs),
        "stage_ms": stage_ms,
        "stage_ms_all": times,
        "towers_tflop": tower_flops / 1e12,
        "prefill_tflop": prefill_flops / 1e12,
        "towers_tflops_per_s": tower_flops / (stage_ms["towers"] / 1e3) / 1e12,
        "prefill_tflops_per_s": prefill_flops / (stage_ms["prefill"] / 1e3) / 1e12,
        "mfu_towers": tower_flops / (stage_ms["towers"] / 1e3) / peak,
        "mfu_prefill": prefill_flops / (stage_ms["prefill"] / 1e3) / peak,
        "decode_steps": steps,
        "decode_ms_per_step": decode_step,
        "decode_floor_ms_per_step": floor_ms,
        "decode_kernels": kernels,
        # What the profiled decodes did in the engine's pool (no builds: replays on a GPU).
        "decode_graphs": graphs,
        "peak_tflops": cfg.peak_tflops,
        "bandwidth_tbs": cfg.bandwidth_tbs,
    }


def _bench_engine(
    cfg: EngineBenchConfig,
    sizes: list[tuple[int, int]],
    processor: Any,
    config: Any,
    merged: bool = True,
    quantization: Quantization = "none",
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    # The same seed before every build: each engine of a run holds the same random weights.
    torch.manual_seed(0)
    engine = build_bench_engine(cfg, processor, config, merged=merged, quantization=quantization)
    _sync(cfg.device)
    build_s = time.perf_counter() - started
    reports = []
    for width, height in sizes:
        sized = replace(cfg, width=width, height=height)
        if not merged or quantization != cfg.quantization[0]:
            # The line mixes, the shadow, the note check and the curve are measured on the
            # run's reference engine (site, shadow and speech adapters sit on the merged
            # base only); the others give throughput, stages and verdict agreement.
            sized = replace(
                sized, pass_share=None, shadow_share=None, note_check_tokens=None, curve_sizes=()
            )
        report = measure_engine(sized, engine)
        report["vision_lora"] = "merged" if merged else "attached"
        report["build_s"] = build_s
        if cfg.profile_runs > 0:
            report["profile"] = profile_engine(sized, engine)
        reports.append(report)
    del engine
    return reports


def _bench_seed(
    cfg: EngineBenchConfig, sizes: list[tuple[int, int]], processor: Any, config: Any
) -> list[dict[str, Any]]:
    # fp16 as the seed recipe; a CPU check runs it in fp32, which CPUs handle everywhere.
    dtype = torch.float16 if cfg.device == "cuda" else torch.float32
    model = _build(config, dtype, "eager", cfg.device)
    reports = [
        _measure_seed(replace(cfg, width=w, height=h), model, dtype, processor) for w, h in sizes
    ]
    del model
    return reports


def _measure_seed(
    cfg: EngineBenchConfig, model: Any, dtype: torch.dtype, processor: Any
) -> dict[str, Any]:
    _reset_peak(cfg.device)
    prompt = verdict_prompt(
        BENCH_SITE, 1, True, "checked ok", processor.image_token, processor.audio_token
    )
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
    t0 = time.perf_counter()
    one(model, requests[0])  # warm-up, untimed: kernels, allocator, the first photo's crops
    warmup_s = time.perf_counter() - t0
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
        "warmup_request_seconds": warmup_s,
        "timed_requests": len(walls),
        "request_seconds": walls,
        "inspections_per_s": len(walls) / sum(walls),
        "peak_memory_gib": _peak_gib(cfg.device),
    }
    return report


def run_engine_bench(
    cfg: EngineBenchConfig,
    sizes: list[tuple[int, int]] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The engines, then the seed recipe, on each photo size (default: `cfg`'s), as one report.

    One engine per quantization and one seed model serve every size, so each size's ratio
    compares them on the same photos and voice notes in the same process. The first
    quantization's engine is the run's `engine`; each other one is `engine_<name>`, with
    its ratio to the seed recipe and to `engine`, and its verdict agreement with `engine`.
    `progress` gets a partial report (`"partial": true`, what each engine measured so far)
    after each engine, so a run cut short keeps what it measured.
    """
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the engine benchmark needs a CUDA GPU")
    if not cfg.quantization or len(set(cfg.quantization)) != len(cfg.quantization):
        raise ValueError(f"quantization must name each variant once, not {cfg.quantization}")
    sizes = sizes or [(cfg.width, cfg.height)]
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = full_size_config(tokenizer) if cfg.architecture == "full" else tiny_config(tokenizer)
    _free(cfg.device)
    variants: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for quantization in cfg.quantization:
        try:
            variants[quantization] = _bench_engine(
                cfg, sizes, processor, config, quantization=quantization
            )
        except Exception as exc:
            if quantization == cfg.quantization[0]:
                raise
            # A variant that cannot run on this machine is a finding, not the run's end.
            log.exception("the %s engine failed", quantization)
            failed[quantization] = f"{type(exc).__name__}: {exc}"[:4000]
        _free(cfg.device)
        if progress is not None:
            progress(
                {
                    **report_head("engine", cfg.device, cfg),
                    "partial": True,
                    "sizes": [f"{w}x{h}" for w, h in sizes],
                    "engines": variants,
                    "failed": failed,
                }
            )
    unmerged: list[dict[str, Any] | None] = [None] * len(sizes)
    if cfg.unmerged:
        unmerged = list(_bench_engine(cfg, sizes, processor, config, merged=False))
        _free(cfg.device)
    seeds = _bench_seed(cfg, sizes, processor, config) if cfg.baseline else [None] * len(sizes)
    _free(cfg.device)
    reference, *others = cfg.quantization
    runs = []
    for i, ((width, height), seed, before) in enumerate(zip(sizes, seeds, unmerged, strict=True)):
        engine = variants[reference][i]
        run: dict[str, Any] = {
            "workload": {
                "image": f"{width}x{height}",
                "audio_seconds": cfg.audio_seconds,
                "images_per_request": 1,
            },
            "engine": engine,
        }
        if seed is not None:
            run["seed"] = seed
            run["speedup"] = engine["inspections_per_s"] / seed["inspections_per_s"]
        for name in others:
            if name in failed:
                run[f"engine_{name}_error"] = failed[name]
                continue
            other = variants[name][i]
            run[f"engine_{name}"] = other
            run[f"{name}_vs_engine"] = other["inspections_per_s"] / engine["inspections_per_s"]
            run[f"{name}_agreement"] = verdict_agreement(engine["p_pass"], other["p_pass"])
            if seed is not None:
                run[f"{name}_speedup"] = other["inspections_per_s"] / seed["inspections_per_s"]
        if before is not None:
            run["engine_unmerged"] = before
            run["merged_speedup"] = engine["inspections_per_s"] / before["inspections_per_s"]
        runs.append(run)
    return {**report_head("engine", cfg.device, cfg), "runs": runs}
