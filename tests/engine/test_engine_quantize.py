"""model.quantization: what FP8 covers, and a clear refusal where it cannot run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from inspector.engine.checkpoint import load_checkpoint, resolve_runtime
from inspector.engine.compiled import compile_blocks, first_compiled_run, uncompile
from inspector.engine.quantize import (
    fp8_targets,
    has_zero_row,
    is_quantized,
    stored_bytes,
)
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.engine.types import EngineRequest
from inspector.errors import Code, ModelLoadError
from inspector.settings import ModelSettings
from tests.engine.media import photo

TORCHAO_MISSING = importlib.util.find_spec("torchao") is None


def test_quantization_is_off_by_default() -> None:
    assert ModelSettings().quantization == "none"


def test_fp8_on_a_cpu_is_refused_before_any_weight_is_read(tmp_path: Path) -> None:
    settings = ModelSettings(path=tmp_path / "absent", device="cpu", quantization="fp8")
    with pytest.raises(ModelLoadError) as refused:
        load_engine(settings, {})
    message = str(refused.value)
    assert refused.value.code is Code.MODEL_LOAD_FAILED
    # The quantization is named, not the missing model directory: nothing was loaded yet.
    assert "model.quantization = 'fp8' cannot run here" in message
    assert "absent" not in message
    assert "CUDA GPU with float8 matmuls" in message and "runs on cpu" in message
    assert "INSPECTOR_MODEL__QUANTIZATION=none" in message


def test_fp8_under_model_compile_is_refused_only_for_what_is_missing(tmp_path: Path) -> None:
    # torch.compile fuses the float8 activation quantisation into the compiled blocks, so
    # model.compile (the default) and fp8 serve together; a CPU is refused for itself alone.
    settings = ModelSettings(path=tmp_path / "absent", device="cpu", quantization="fp8")
    assert settings.compile
    with pytest.raises(ModelLoadError) as refused:
        load_engine(settings, {})
    assert "model.compile" not in str(refused.value)


def test_a_weight_row_of_zeros_is_seen_so_its_layer_keeps_the_model_dtype() -> None:
    # Its per-row float8 scale would be 0 and the row 0/0: NaN in every output through it.
    weight = torch.randn(4, 8, dtype=torch.bfloat16)
    assert not has_zero_row(weight)
    weight[2] = 0
    assert has_zero_row(weight)


@pytest.mark.skipif(not TORCHAO_MISSING, reason="torchao is installed here")
def test_fp8_without_torchao_names_the_package_to_install(tmp_path: Path) -> None:
    settings = ModelSettings(path=tmp_path / "absent", device="cpu", quantization="fp8")
    with pytest.raises(ModelLoadError, match=r"pip install 'torchao==0\.17\.0'"):
        load_engine(settings, {})


def test_an_engine_built_around_a_loaded_model_refuses_fp8_on_a_cpu(tiny_model_dir: Path) -> None:
    settings = ModelSettings(path=tiny_model_dir, device="cpu")
    model, processor = load_checkpoint(settings, resolve_runtime(settings))
    with pytest.raises(ModelLoadError, match="cannot run here"):
        PhiEngine(model, processor, settings.model_copy(update={"quantization": "fp8"}), {})
    # Refused before anything changed: the same model still serves unquantised.
    engine = PhiEngine(model, processor, settings, {})
    assert engine.quantized_layers == 0
    assert not any(is_quantized(p) for p in model.parameters())


def test_fp8_covers_decoder_and_vision_linears_inside_lora_wrappers_never_the_adapters(
    tiny_model_dir: Path,
) -> None:
    settings = ModelSettings(path=tiny_model_dir, device="cpu", transcribe=True)
    model, _ = load_checkpoint(settings, resolve_runtime(settings))
    config = model.get_base_model().config
    targets = fp8_targets(model)
    lm = [n for n in targets if n.startswith("model.layers.")]
    vision = [n for n in targets if n.startswith("vision.layers.")]
    # qkv, o, gate_up and down per decoder layer, each the Linear inside peft's LoRA layer.
    assert len(lm) == 4 * config.num_hidden_layers
    assert all(n.endswith(".base_layer") for n in lm)
    # q, k, v, out and the two MLP layers per vision encoder layer.
    assert len(vision) == 6 * config.vision_config.num_hidden_layers
    assert not any("lora_" in n for n in targets)
    base = model.get_base_model()
    adapter_linears = {
        id(m) for name, m in base.named_modules() if ".lora_A." in name or ".lora_B." in name
    }
    assert adapter_linears  # the transcription adapter and the zero adapter are attached
    assert not adapter_linears & {id(m) for m in targets.values()}
    assert id(base.lm_head) not in {id(m) for m in targets.values()}


def test_stored_bytes_of_a_plain_tensor_is_its_size() -> None:
    assert stored_bytes(torch.zeros(3, 5, dtype=torch.bfloat16)) == 30
    assert not is_quantized(torch.nn.Parameter(torch.zeros(2)))


def _refusing_backend(graph: Any, example_inputs: Any) -> Any:
    raise RuntimeError("this compiler cannot trace the layer")


def test_blocks_a_compiler_cannot_run_fall_back_to_eager_at_load(tiny_model_dir: Path) -> None:
    # Float8 layers are compiled and run once at load: where this torch/torchao pair cannot
    # compile them, the engine serves them eagerly instead of failing its first batch.
    settings = ModelSettings(path=tiny_model_dir, device="cpu")
    model, processor = load_checkpoint(settings, resolve_runtime(settings))
    reference = PhiEngine(model, processor, settings, {}).infer([_request()])
    blocks = compile_blocks(model, backend=_refusing_backend)
    problem = first_compiled_run(model)
    assert problem is not None and "cannot trace the layer" in problem
    uncompile(blocks)
    assert all(block._compiled_call_impl is None for block in blocks)
    assert first_compiled_run(model) is None  # every block runs again, eagerly
    (again,) = PhiEngine(model, processor, settings, {}).infer([_request()])
    assert again.p_pass == pytest.approx(reference[0].p_pass)
    # A compiler that works leaves the blocks compiled.
    blocks = compile_blocks(model, backend="eager")
    assert first_compiled_run(model) is None
    assert all(block._compiled_call_impl is not None for block in blocks)
    uncompile(blocks)


def _request() -> EngineRequest:
    return EngineRequest("r1", "line", [photo(64, 48, 1)], None, "checked")
