"""The engine benchmark's own code path, on the tiny architecture and a CPU."""

from __future__ import annotations

from inspector.bench.engine import EngineBenchConfig, run_engine_bench


def test_bench_reports_both_paths_their_ratio_and_the_stage_profile() -> None:
    cfg = EngineBenchConfig(
        architecture="tiny",
        device="cpu",
        batch_size=2,
        batches=2,
        seed_requests=1,
        rationale_tokens=4,
        seed_new_tokens=4,
        lora_rank=8,
        width=64,
        height=48,
        audio_seconds=1.0,
        profile_runs=1,
        unmerged=True,
    )
    report = run_engine_bench(cfg)
    (small,) = report["runs"]
    assert small["workload"]["image"] == "64x48"
    engine, seed = small["engine"], small["seed"]
    assert engine["batch_size"] == 2 and seed["batch_size"] == 1
    assert seed["new_tokens"] == [4]
    assert engine["mean_rationale_tokens"] == 4
    assert engine["static_decode"] and engine["decode_ms_per_step"] > 0
    # The timed batches reuse the warm-up's static cache; on a CPU every step runs eagerly.
    graphs = engine["decode_graphs"]
    assert graphs["builds"] == 0 and graphs["captures"] == 0 and graphs["eager_steps"] > 0
    assert engine["inspections_per_s"] > 0 and seed["inspections_per_s"] > 0
    assert small["speedup"] == engine["inspections_per_s"] / seed["inspections_per_s"]
    assert engine["prompt_tokens"] > 256  # the photo's tokens are in the prompt
    assert len(engine["batch_seconds"]) == 2
    lat = engine["batch_latency_s"]
    assert min(engine["batch_seconds"]) <= lat["p50"] <= lat["p95"] <= max(engine["batch_seconds"])
    prof = engine["profile"]
    assert set(prof["stage_ms"]) == {"preprocess", "towers", "prefill", "decode"}
    assert all(ms > 0 for ms in prof["stage_ms"].values())
    assert prof["towers_tflop"] > 0 and prof["prefill_tflop"] > 0
    assert prof["mfu_prefill"] > 0 and prof["mfu_towers"] > 0
    assert prof["decode_steps"] == 5 and prof["decode_floor_ms_per_step"] > 0
    # The served base has the vision LoRA merged: its prefill does none of the LoRA's work.
    before = small["engine_unmerged"]
    assert (engine["vision_lora"], before["vision_lora"]) == ("merged", "attached")
    assert before["profile"]["prefill_tflop"] > prof["prefill_tflop"]
    assert small["merged_speedup"] == engine["inspections_per_s"] / before["inspections_per_s"]


def test_bench_without_the_baseline_measures_the_engine_alone_at_each_size() -> None:
    cfg = EngineBenchConfig(
        architecture="tiny",
        device="cpu",
        batch_size=2,
        batches=1,
        rationale_tokens=2,
        lora_rank=8,
        width=64,
        height=48,
        audio_seconds=1.0,
        baseline=False,
        profile_runs=0,
    )
    runs = run_engine_bench(cfg, [(64, 48), (48, 64)])["runs"]
    assert [r["workload"]["image"] for r in runs] == ["64x48", "48x64"]
    for run in runs:
        assert "seed" not in run and "speedup" not in run and "profile" not in run["engine"]
        assert "engine_unmerged" not in run
        assert run["engine"]["inspections_per_s"] > 0
