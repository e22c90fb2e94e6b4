"""The engine on a CUDA device: bf16 runtime, and verdicts that agree with the CPU's."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from inspector.engine import EngineRequest
from inspector.engine.checkpoint import resolve_runtime
from inspector.engine.quantize import FP8_CAPABILITY, fp8_targets, is_quantized
from inspector.engine.runtime import load_engine
from inspector.quality import AdapterRef
from inspector.settings import ModelSettings
from tests.engine.media import photo, voice
from tests.fixtures.model import adapter_sha256

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
needs_fp8 = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None
    or not torch.cuda.is_available()
    or torch.cuda.get_device_capability() < FP8_CAPABILITY,
    reason="needs torchao and a GPU with float8 matmuls",
)


def batch() -> list[EngineRequest]:
    return [
        EngineRequest("g1", "s", [photo(480, 640, 1)], voice(8.0, 1), "all good"),
        EngineRequest("g2", "s", [photo(48, 64, 2)], None, None),
        EngineRequest("g3", "s", [photo(120, 90, 3), photo(64, 64, 4)], voice(2.0, 3), None),
    ]


def test_cuda_runtime_is_bf16(tiny_model_dir: Path) -> None:
    runtime = resolve_runtime(ModelSettings(path=tiny_model_dir))
    assert runtime.device.type == "cuda"
    assert runtime.dtype is torch.bfloat16
    assert runtime.attn_implementation in ("flash_attention_2", "sdpa")


def test_gpu_verdicts_agree_with_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    common = {"path": tiny_model_dir, "max_rationale_tokens": 8, "adapters_dir": tmp_path}
    gpu = load_engine(ModelSettings(device="cuda", **common), {})
    cpu = load_engine(ModelSettings(device="cpu", **common), {})
    on_gpu, on_cpu = gpu.infer(batch()), cpu.infer(batch())
    assert [r.request_id for r in on_gpu] == ["g1", "g2", "g3"]
    for g, c in zip(on_gpu, on_cpu, strict=True):
        assert g.p_pass == pytest.approx(c.p_pass, abs=0.02)
        assert 1 <= g.rationale_tokens <= 8
    alone = [gpu.infer([r])[0] for r in batch()]
    for together, single in zip(on_gpu, alone, strict=True):
        assert together.p_pass == pytest.approx(single.p_pass, abs=0.01)


def test_gpu_decode_replays_a_cuda_graph_with_the_eager_tokens(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ModelSettings(
        device="cuda", path=tiny_model_dir, max_rationale_tokens=8, adapters_dir=tmp_path
    )
    engine = load_engine(settings, {})
    with caplog.at_level(logging.WARNING, logger="inspector.engine.decode"):
        graphed = engine.infer(batch())
    assert not caplog.records  # the capture worked: no eager fallback
    engine.static_decode = False
    eager = engine.infer(batch())
    for g, e in zip(graphed, eager, strict=True):
        assert (g.p_pass, g.rationale) == (e.p_pass, e.rationale)


def test_gpu_later_batches_replay_the_kept_graph_with_the_same_tokens(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ModelSettings(
        device="cuda", path=tiny_model_dir, max_rationale_tokens=8, adapters_dir=tmp_path
    )
    engine = load_engine(settings, {})
    three = batch()  # runs in the batch bucket of 4, one row of padding
    four = [*three, EngineRequest("g4", "s", [photo(48, 64, 9)], None, None)]
    with caplog.at_level(logging.WARNING, logger="inspector.engine.decode"):
        first = engine.infer(three)
        kept = len(engine.decode_graphs())
        again = engine.infer(three)
        full = engine.infer(four)
    assert not caplog.records
    assert len(engine.decode_graphs()) == kept  # both batches replayed the one graph
    assert [(r.p_pass, r.rationale) for r in again] == [(r.p_pass, r.rationale) for r in first]
    engine.static_decode = False
    eager = engine.infer(four)
    assert [r.rationale for r in full] == [r.rationale for r in eager]


def test_gpu_compiled_blocks_give_the_uncompiled_verdicts(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    common = {"path": tiny_model_dir, "max_rationale_tokens": 8, "adapters_dir": tmp_path}
    plain = load_engine(ModelSettings(device="cuda", **common), {})
    compiled = load_engine(ModelSettings(device="cuda", compile=True, **common), {})
    for p, c in zip(plain.infer(batch()), compiled.infer(batch()), strict=True):
        assert c.p_pass == pytest.approx(p.p_pass, abs=0.02)
        assert 1 <= c.rationale_tokens <= 8


def test_gpu_compiled_engine_serves_swapped_site_adapters_as_the_plain_one(
    tiny_model_dir: Path, tmp_path: Path, make_site_adapter: Callable[[str, int], Path]
) -> None:
    common = {"path": tiny_model_dir, "max_rationale_tokens": 8, "adapters_dir": tmp_path}
    plain = load_engine(ModelSettings(device="cuda", compile=False, **common), {})
    compiled = load_engine(ModelSettings(device="cuda", compile=True, **common), {})
    requests = [EngineRequest(f"a{i}", "line-a", [photo(48, 64, i)], None, None) for i in (1, 2)]
    for version, seed in ((1, 7), (2, 9)):
        adapter = make_site_adapter("plant-a", seed)
        digest = adapter_sha256(adapter)
        for engine in (plain, compiled):
            engine.load_site_adapter("line-a", AdapterRef("plant-a", version, digest), adapter)
        served = zip(plain.infer(requests), compiled.infer(requests), strict=True)
        for p, c in served:
            assert (c.adapter, c.adapter_version) == ("plant-a", version)
            assert c.p_pass == pytest.approx(p.p_pass, abs=0.02)


@needs_fp8
def test_gpu_fp8_engine_quantizes_the_base_layers_only_and_leans_as_bf16(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    common = {
        "path": tiny_model_dir,
        "max_rationale_tokens": 8,
        "adapters_dir": tmp_path,
        "transcribe": True,
    }
    bf16 = load_engine(ModelSettings(device="cuda", **common), {})
    fp8 = load_engine(ModelSettings(device="cuda", quantization="fp8", compile=False, **common), {})
    targets = fp8_targets(fp8.model)
    assert fp8.quantized_layers == len(targets) > 0
    assert all(is_quantized(m.weight) for m in targets.values())
    base = fp8.model.get_base_model()
    adapters = [p for name, p in base.named_parameters() if ".lora_" in name]
    assert adapters and not any(is_quantized(p) for p in adapters)
    assert not is_quantized(base.lm_head.weight)
    with caplog.at_level(logging.WARNING, logger="inspector.engine.decode"):
        quantized = fp8.infer(batch())
    assert not caplog.records  # the float8 decode step was captured as a CUDA graph
    for q, b in zip(quantized, bf16.infer(batch()), strict=True):
        assert q.p_pass == pytest.approx(b.p_pass, abs=0.05)
        assert 1 <= q.rationale_tokens <= 8
        assert q.transcript is not None
    fp8.static_decode = False
    eager = fp8.infer(batch())
    assert [r.rationale for r in eager] == [r.rationale for r in quantized]


@needs_fp8
def test_gpu_fp8_engine_compiled_leans_as_uncompiled_and_never_gives_nan(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The float8 blocks compile at load (or fall back, which the engine then says); either
    # way a batch with padded rows, small and multi-photo requests gives finite answers.
    common = {"path": tiny_model_dir, "max_rationale_tokens": 8, "adapters_dir": tmp_path}
    eager = load_engine(
        ModelSettings(device="cuda", quantization="fp8", compile=False, **common), {}
    )
    compiled = load_engine(ModelSettings(device="cuda", quantization="fp8", **common), {})
    assert compiled.compiled, "the float8 blocks fell back to eager at load"
    for c, e in zip(compiled.infer(batch()), eager.infer(batch()), strict=True):
        assert 0 <= c.p_pass <= 1 and c.p_pass == pytest.approx(e.p_pass, abs=0.02)


@needs_fp8
def test_gpu_fp8_engine_routes_rows_to_swapped_site_adapters(
    tiny_model_dir: Path, tmp_path: Path, make_site_adapter: Callable[[str, int], Path]
) -> None:
    common = {"path": tiny_model_dir, "max_rationale_tokens": 8, "adapters_dir": tmp_path}
    bf16 = load_engine(ModelSettings(device="cuda", compile=False, **common), {})
    fp8 = load_engine(ModelSettings(device="cuda", compile=False, quantization="fp8", **common), {})
    # One batch: two rows of a site with an adapter, one row of a site without.
    requests = [
        EngineRequest("a1", "line-a", [photo(48, 64, 1)], None, None),
        EngineRequest("b1", "line-b", [photo(48, 64, 1)], None, None),
        EngineRequest("a2", "line-a", [photo(48, 64, 2)], None, None),
    ]
    for version, seed in ((1, 7), (2, 9)):
        adapter = make_site_adapter("plant-a", seed)
        digest = adapter_sha256(adapter)
        for engine in (bf16, fp8):
            engine.load_site_adapter("line-a", AdapterRef("plant-a", version, digest), adapter)
        plain, quantized = bf16.infer(requests), fp8.infer(requests)
        assert [(r.adapter, r.adapter_version) for r in quantized] == [
            (r.adapter, r.adapter_version) for r in plain
        ]
        assert (quantized[0].adapter, quantized[0].adapter_version) == ("plant-a", version)
        assert quantized[1].adapter != "plant-a"
        for p, q in zip(plain, quantized, strict=True):
            assert q.p_pass == pytest.approx(p.p_pass, abs=0.05)
        assert fp8.site_adapters()["line-a"].version == version
