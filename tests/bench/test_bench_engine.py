"""The engine benchmark's own code path, on the tiny architecture and a CPU."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from inspector.bench.cli import _render_engine
from inspector.bench.engine import EngineBenchConfig, run_engine_bench, verdict_agreement


def tiny(**overrides: Any) -> EngineBenchConfig:
    """The tiny architecture on a CPU, at a small photo and note: the benchmark's own path."""
    base = {"lora_rank": 8, "width": 64, "height": 48, "audio_seconds": 1.0}
    return EngineBenchConfig(architecture="tiny", device="cpu", **{**base, **overrides})


def test_bench_reports_both_paths_their_ratio_and_the_stage_profile() -> None:
    cfg = tiny(
        batch_size=2,
        batches=2,
        seed_requests=2,
        rationale_tokens=4,
        seed_new_tokens=4,
        profile_runs=1,
        unmerged=True,
        pass_share=0.5,
        shadow_share=0.5,
        curve_sizes=(1, 3),
    )
    report = run_engine_bench(cfg)
    _render_engine(report)  # the table and lines people read, from every part of the report
    (small,) = report["runs"]
    assert small["workload"]["image"] == "64x48"
    engine, seed = small["engine"], small["seed"]
    assert engine["batch_size"] == 2 and seed["batch_size"] == 1
    # One untimed warm-up request, then the timed ones.
    assert seed["new_tokens"] == [4, 4] and seed["timed_requests"] == 2
    assert len(seed["request_seconds"]) == 2 and seed["warmup_request_seconds"] > 0
    assert engine["quantization"] == "none" and engine["quantized_layers"] == 0
    # P(PASS) of the two timed batches and the verdict-only batch, for agreement figures.
    assert len(engine["p_pass"]) == 3 * 2 and all(0 <= p <= 1 for p in engine["p_pass"])
    assert engine["mean_rationale_tokens"] == 4
    assert engine["static_decode"] and engine["decode_ms_per_step"] > 0
    # The timed batches reuse the warm-up's static cache; on a CPU every step runs eagerly.
    graphs = engine["decode_graphs"]
    assert graphs["builds"] == 0 and graphs["captures"] == 0 and graphs["eager_steps"] > 0
    assert engine["inspections_per_s"] > 0 and seed["inspections_per_s"] > 0
    assert small["speedup"] == engine["inspections_per_s"] / seed["inspections_per_s"]
    assert engine["prompt_tokens"] > 256  # the photo's tokens are in the prompt
    assert len(engine["batch_seconds"]) == 2
    # Verdict first: the verdicts are out before the batch's rationales are decoded.
    verdicts = engine["verdict_latency_s"]
    assert 0 < verdicts["p50"] <= verdicts["p95"] <= max(engine["batch_seconds"])
    mix = engine["pass_share_mix"]
    assert mix["pass_share"] == 0.5 and 0 <= mix["explained_share"] <= 1
    assert len(mix["batch_seconds"]) == 2 and mix["inspections_per_s"] > 0
    # A shadow adapter judging a share again: the same live batches, with extra rows.
    shadow = engine["shadow"]
    assert shadow["shadow_share"] == 0.5 and len(shadow["shadow_rows_per_batch"]) == 2
    assert len(shadow["batch_seconds"]) == len(shadow["batch_seconds_share_0"]) == 2
    assert shadow["inspections_per_s"] > 0 and shadow["inspections_per_s_share_0"] > 0
    assert shadow["throughput_ratio"] == (
        shadow["inspections_per_s"] / shadow["inspections_per_s_share_0"]
    )
    curve = engine["batch_size_curve"]
    assert [point["batch_size"] for point in curve] == [1, 3]
    assert all(0 < point["verdict_s"] <= point["batch_s"] for point in curve)
    lat = engine["batch_latency_s"]
    assert min(engine["batch_seconds"]) <= lat["p50"] <= lat["p95"] <= max(engine["batch_seconds"])
    prof = engine["profile"]
    assert set(prof["stage_ms"]) == {"preprocess", "towers", "prefill", "decode"}
    assert all(ms > 0 for ms in prof["stage_ms"].values())
    assert prof["towers_tflop"] > 0 and prof["prefill_tflop"] > 0
    assert prof["mfu_prefill"] > 0 and prof["mfu_towers"] > 0
    assert prof["decode_steps"] == 5 and prof["decode_floor_ms_per_step"] > 0
    # The busiest ops of a profiled decode, per step, busiest first (kernels on a GPU).
    kernels = prof["decode_kernels"]
    assert kernels and all(k["ms_per_step"] > 0 and k["calls_per_step"] > 0 for k in kernels)
    times = [k["ms_per_step"] for k in kernels]
    assert times == sorted(times, reverse=True) and sum(k["share"] for k in kernels) <= 1 + 1e-9
    # The profile decodes from the engine's own static caches, as served batches do.
    profiled = prof["decode_graphs"]
    assert profiled["builds"] == 0 and profiled["eager_steps"] > 0
    # The served base has the vision LoRA merged: its prefill does none of the LoRA's work.
    before = small["engine_unmerged"]
    assert (engine["vision_lora"], before["vision_lora"]) == ("merged", "attached")
    assert before["profile"]["prefill_tflop"] > prof["prefill_tflop"]
    assert small["merged_speedup"] == engine["inspections_per_s"] / before["inspections_per_s"]


def test_bench_without_the_baseline_measures_the_engine_alone_at_each_size() -> None:
    cfg = tiny(
        batch_size=2,
        batches=1,
        rationale_tokens=2,
        baseline=False,
        profile_runs=0,
        note_check_tokens=3,
    )
    report = run_engine_bench(cfg, [(64, 48), (48, 64)])
    _render_engine(report)
    runs = report["runs"]
    assert [r["workload"]["image"] for r in runs] == ["64x48", "48x64"]
    for run in runs:
        assert "seed" not in run and "speedup" not in run and "profile" not in run["engine"]
        assert "engine_unmerged" not in run
        assert run["engine"]["inspections_per_s"] > 0
        # The note check: the same batches with no check and no transcript, transcribed
        # after the rationales (flag), before the verdict (review), and before it with one
        # token (the cost of a second one-position prompt on the note alone).
        notes = run["engine"]["note_check"]
        assert notes["transcript_tokens"] == 3
        modes = notes["modes"]
        assert set(modes) == {"off", "flag", "review", "one_position"}
        assert modes["off"]["transcribed_share"] == modes["off"]["note_disagrees_share"] == 0
        for mode in ("flag", "review", "one_position"):
            assert modes[mode]["transcribed_share"] == 1
            assert modes[mode]["inspections_per_s"] > 0
            assert modes[mode]["throughput_ratio"] == (
                modes[mode]["inspections_per_s"] / modes["off"]["inspections_per_s"]
            )
            assert len(modes[mode]["verdict_seconds"]) == 1


def test_a_variant_that_cannot_run_is_reported_and_the_run_goes_on() -> None:
    # FP8 needs a float8-capable GPU: on a CPU its engine is refused, and the report says why
    # beside the reference engine's figures instead of losing them.
    cfg = tiny(
        batch_size=1,
        batches=1,
        rationale_tokens=1,
        baseline=False,
        profile_runs=0,
        curve_sizes=(),
        quantization=("none", "fp8"),
    )
    partials: list[dict[str, Any]] = []
    report = run_engine_bench(cfg, progress=partials.append)
    _render_engine(report)
    # After each engine, what it measured so far: a run cut short keeps it.
    assert [sorted(p["engines"]) for p in partials] == [["none"], ["none"]]
    assert all(p["partial"] for p in partials) and "fp8" in partials[-1]["failed"]
    assert partials[0]["engines"]["none"][0]["inspections_per_s"] > 0
    (run,) = report["runs"]
    assert run["engine"]["inspections_per_s"] > 0
    assert "engine_fp8" not in run and "fp8_agreement" not in run
    assert "cannot run here" in run["engine_fp8_error"]
    # The reference engine failing ends the run: there is nothing to compare with.
    with pytest.raises(Exception, match="cannot run here"):
        run_engine_bench(replace(cfg, quantization=("fp8", "none")))


def test_bench_refuses_a_quantization_named_twice() -> None:
    cfg = EngineBenchConfig(architecture="tiny", device="cpu", quantization=("none", "none"))
    with pytest.raises(ValueError, match="each variant once"):
        run_engine_bench(cfg)


def test_agreement_counts_same_leanings_and_the_largest_probability_move() -> None:
    reference = [0.9, 0.55, 0.2, 0.75]
    other = [0.8, 0.45, 0.25, 0.75]  # the second request flips from PASS to FAIL
    agreement = verdict_agreement(reference, other)
    assert agreement["requests"] == 4
    assert agreement["same_leaning_share"] == 0.75
    assert agreement["max_abs_delta_p_pass"] == pytest.approx(0.1)
    assert agreement["mean_abs_delta_p_pass"] == pytest.approx(0.25 / 4)
    # At the bench threshold 0.7: PASS, REVIEW, FAIL, PASS against PASS, REVIEW, FAIL, PASS.
    assert agreement["same_decision_share"] == 1.0
    assert agreement["reference_pass_leaning_share"] == 0.75
    assert agreement["reference_p_pass_range"] == [0.2, 0.9]
    assert verdict_agreement(reference, reference)["max_abs_delta_p_pass"] == 0.0
    with pytest.raises(ValueError):
        verdict_agreement(reference, other[:3])
