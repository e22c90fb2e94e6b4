"""`inspector bench line` on a CPU with the tiny model: numbers mean nothing, the path is real."""

from __future__ import annotations

from pathlib import Path

from inspector.bench.line import LineBenchConfig, run_line_bench
from inspector.settings import ModelSettings


def test_line_bench_paces_the_load_and_times_every_verdict_through_serve(
    tiny_model_dir: Path,
) -> None:
    cfg = LineBenchConfig(
        rate=4.0,
        duration_s=2.0,
        warmup_s=0.5,
        stations=3,
        width=64,
        height=48,
        audio_seconds=1.0,
        model=ModelSettings(path=tiny_model_dir, device="cpu", max_rationale_tokens=4),
        max_batch=8,
        start_timeout_s=120,
        drain_timeout_s=60,
    )
    report = run_line_bench(cfg)
    measured = report["measured"]
    # Open loop: all 8 requests go out on schedule, whatever the worker does.
    assert measured["requests"] == 8
    assert 3.0 < measured["offered_per_s"] < 5.0
    assert measured["verdicts"] == 8 and measured["missing"] == 0 and not measured["rejected"]
    assert measured["complete"] and measured["achieved_per_s"] > 0
    lat = measured["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["warmup"]["verdicts"] == 2
    # The worker's own metrics cover the timed phase: every request went through a batch.
    worker = report["worker"]
    assert worker["batches"] >= 1 and worker["batch_mean"] >= 1
    assert worker["inference_s_mean"] > 0
