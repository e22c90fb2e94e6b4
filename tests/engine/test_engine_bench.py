"""The engine benchmark's own code path, on the tiny architecture and a CPU."""

from __future__ import annotations

from inspector.bench.engine import EngineBenchConfig, run_engine_bench


def test_bench_reports_both_paths_and_their_ratio() -> None:
    cfg = EngineBenchConfig(
        architecture="tiny",
        device="cpu",
        batch_size=3,
        batches=1,
        seed_requests=1,
        rationale_tokens=4,
        seed_new_tokens=4,
        lora_rank=8,
        width=64,
        height=48,
        audio_seconds=1.0,
    )
    report = run_engine_bench(cfg)
    engine, seed = report["engine"], report["seed"]
    assert engine["batch_size"] == 3 and seed["batch_size"] == 1
    assert seed["new_tokens"] == [4]
    assert engine["mean_rationale_tokens"] == 4
    assert engine["static_decode"] and engine["decode_ms_per_step"] > 0
    assert engine["inspections_per_s"] > 0 and seed["inspections_per_s"] > 0
    assert report["speedup"] == engine["inspections_per_s"] / seed["inspections_per_s"]
    assert engine["prompt_tokens"] > 256  # the photo's tokens are in the prompt
