"""model.quantization: what FP8 covers, and a clear refusal where it cannot run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from inspector.engine.checkpoint import load_checkpoint, resolve_runtime
from inspector.engine.quantize import fp8_targets, is_quantized, stored_bytes
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.errors import Code, ModelLoadError
from inspector.settings import ModelSettings

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


def test_fp8_under_model_compile_is_refused_with_the_setting_that_serves_it(
    tmp_path: Path,
) -> None:
    settings = ModelSettings(path=tmp_path / "absent", device="cpu", quantization="fp8")
    assert settings.compile  # the default
    with pytest.raises(ModelLoadError) as refused:
        load_engine(settings, {})
    assert "set model.compile = false to serve fp8" in str(refused.value)
    uncompiled = settings.model_copy(update={"compile": False})
    with pytest.raises(ModelLoadError) as refused:
        load_engine(uncompiled, {})
    assert "model.compile" not in str(refused.value)


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
