"""The hot-swap benchmark's own code path, on the tiny architecture and a CPU."""

from __future__ import annotations

from inspector.bench.swap import SwapBenchConfig, run_swap_bench


def test_a_swap_during_a_batch_waits_for_it_and_the_next_batch_runs_the_new_version() -> None:
    cfg = SwapBenchConfig(
        architecture="tiny",
        device="cpu",
        rank=4,
        vision_rank=8,
        swaps=1,
        batch_size=2,
        width=64,
        height=48,
        audio_seconds=1.0,
        rationale_tokens=2,
    )
    report = run_swap_bench(cfg)
    assert len(report["load_s"]) == 1 and all(s > 0 for s in report["load_s"])
    assert report["adapter_mb"] > 0 and len(report["read_sha256_s"]) == 1
    for i, swap in enumerate(report["swaps"]):
        # The batch in flight finishes on the version it started with; the next has the new.
        assert swap["in_flight_batch_versions"] == [2 * i + 1]
        assert swap["next_batch_versions"] == [2 * i + 2]
        assert swap["swap_wait_s"] > 0 and swap["first_batch_after_s"] > 0
