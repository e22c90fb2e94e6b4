"""`inspector bench line` on a CPU: numbers mean nothing, the path is real."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.bench.fleet import placement
from inspector.bench.line import LineBenchConfig, run_line_bench
from inspector.errors import BenchFailed
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
    # Verdict first: every verdict's rationale followed it, and is timed on its own.
    assert measured["rationales"] == 8 and measured["rationales_complete"]
    assert 0 < measured["rationale_latency_ms"]["p50"] <= measured["rationale_latency_ms"]["max"]
    assert report["warmup"]["verdicts"] == 2
    # The worker's own metrics cover the timed phase: every request went through a batch.
    worker = report["worker"]
    assert worker["batches"] >= 1 and worker["batch_mean"] >= 1
    assert worker["inference_s_mean"] > 0


def test_three_workers_on_one_shared_subscription_answer_every_request_exactly_once(
    broker: tuple[str, int],
) -> None:
    # The CPU rehearsal of a multi-GPU host: three `inspector serve` processes in one group,
    # with the paced engine (a fixed time per batch, as a GPU takes) standing in for the model.
    host, port = broker
    cfg = LineBenchConfig(
        rate=20.0,
        duration_s=3.0,
        warmup_s=0.5,
        stations=3,
        width=64,
        height=48,
        audio_seconds=1.0,
        engine="paced",
        batch_s=0.05,
        workers=3,
        max_batch=8,
        host=host,
        port=port,
        start_timeout_s=60,
        drain_timeout_s=30,
    )
    report = run_line_bench(cfg)
    measured = report["measured"]
    assert measured["requests"] == 60
    assert measured["verdicts"] == 60 and measured["missing"] == 0 and not measured["rejected"]
    assert measured["complete"]
    # The store holds each request once, judged once, whichever worker took it.
    once = report["exactly_once"]
    assert once["requests"] == once["inspections"] == once["verdict_rows"] == 70
    assert once["judged_once"] == 70 and once["duplicates"] == 0 and once["without_verdict"] == 0
    assert once["exactly_once"]
    # The broker spread the load: every worker answered a share, batched, and spent engine time.
    workers = report["workers"]
    ids = [w["worker_id"] for w in workers]
    assert len(set(ids)) == 3
    assert sorted(once["rows_by_worker"]) == sorted(ids)
    assert all(rows > 0 for rows in once["rows_by_worker"].values())
    assert sum(w["verdicts"] for w in workers) == 60
    for w in workers:
        assert w["verdicts"] > 0 and w["batches"] >= 1 and w["batch_mean"] >= 1
        assert w["inference_s_mean"] >= 0.05 and 0 < w["engine_busy_share"] < 1
        assert w["latency_ms"]["p95"] >= 50
    assert report["worker"]["batches"] == sum(w["batches"] for w in workers)


def test_workers_gpus_puts_one_worker_on_each_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert placement("gpus", "cuda") == (2, ("2", "3"))
    # A count spreads over the GPUs in turn; a CPU run shares the device.
    assert placement(4, "auto") == (4, ("2", "3"))
    assert placement(3, "cpu") == (3, ())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert placement(2, "cuda") == (2, ())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(BenchFailed, match="no CUDA device"):
        placement("gpus", "cuda")
