"""The training benchmark's own code path, on the tiny architecture and a CPU."""

from __future__ import annotations

import math

from inspector.bench.train import TrainBenchConfig, run_train_bench


def test_train_bench_times_real_steps_per_batch_size_and_the_adapter_swap() -> None:
    cfg = TrainBenchConfig(
        batch_sizes=(2,),
        steps=2,
        width=64,
        height=48,
        audio_seconds=1.0,
        rank=4,
        architecture="tiny",
        device="cpu",
    )
    report = run_train_bench(cfg)
    assert [run["batch_size"] for run in report["runs"]] == [2]
    for run in report["runs"]:
        assert len(run["step_seconds"]) == 2 and all(s > 0 for s in run["step_seconds"])
        assert run["examples_per_s"] == run["batch_size"] / run["step_s_median"]
        assert run["prompt_tokens"] > 256  # the photo's tokens are in the prompt
        assert all(math.isfinite(loss) for loss in run["losses"])
    # Steps train: the same batch's loss falls from one step to the next.
    assert report["runs"][0]["losses"][-1] < report["runs"][0]["losses"][0]
    assert report["trainable_parameters"] > 0 and report["dtype"] == "float32"
    swap = report["adapter"]
    assert swap["bytes"] > 0 and swap["attach_s"] > 0
