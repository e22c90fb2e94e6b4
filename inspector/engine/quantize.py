"""FP8 linear layers of the served base (`model.quantization = "fp8"`).

On an H100 or H200 a float8 matmul runs at about twice the bf16 rate and reads half the
weight bytes. torchao's `Float8DynamicActivationFloat8WeightConfig` with `PerRow()`
granularity stores each weight row in float8 (e4m3) with its own scale and quantises each
activation row as it arrives, so nothing is calibrated; inside the compiled blocks
(compiled.py) torch.compile fuses that activation quantisation into the neighbouring work.
The compiled float8 blocks run once at load; where they cannot be compiled, they are
served uncompiled (slower than compiled bf16) and the log says so.

Quantised, after the vision LoRA is merged (the merged weights are rounded once): every
linear layer of the language model's decoder layers (qkv, o, gate_up, down) and of the
vision tower's encoder layers. Left in the model dtype:
- LoRA adapters. peft wraps each projection it adapts in a LoraLayer whose `base_layer` is
  the plain Linear; only that base_layer is quantised, never the `lora_A`/`lora_B` layers,
  so site adapters and the transcription adapter are attached, routed per row and swapped
  as before, and their small matmuls keep full precision. The LoraLayer itself stays in
  place, so a later adapter is added to it rather than wrapping a quantised layer anew.
- The LM head (P(PASS) and P(FAIL) are read from its logits), embeddings, norms, the image
  projection and the audio tower.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import torch
from peft.tuners.lora import LoraLayer

from inspector.errors import ModelLoadError

log = logging.getLogger(__name__)

# The torchao release whose float8 configs this module is written against.
TORCHAO_PIN = "torchao==0.17.0"
# Per-row scales are amax / 448: a row of zeros (a padded position, an all-zero image crop)
# would get scale 0 and turn into NaN (0/0) without this floor under its amax.
ACTIVATION_FLOOR = 1e-12
# Float8 matmuls (torch._scaled_mm) need Ada or Hopper tensor cores: sm_89 and later.
FP8_CAPABILITY = (8, 9)


def _torchao_problem() -> str | None:
    # A torchao built for another torch can fail at import in several ways; all mean "absent".
    try:
        importlib.import_module("torchao.quantization")
    except (ImportError, OSError, RuntimeError) as exc:
        return f"torchao cannot be imported ({exc}); install it with `pip install '{TORCHAO_PIN}'`"
    return None


def _device_problem(device: torch.device) -> str | None:
    if device.type != "cuda":
        return (
            f"it needs a CUDA GPU with float8 matmuls (compute capability "
            f"{FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]} or newer: H100, H200, L40S), and the "
            f"model runs on {device.type}"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_CAPABILITY:
        return (
            f"{torch.cuda.get_device_name(device)} (compute capability "
            f"{capability[0]}.{capability[1]}) has no float8 matmuls; it needs "
            f"{FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]} or newer (H100, H200, L40S)"
        )
    return None


def check_quantization(quantization: str, device: torch.device) -> None:
    """Raise ModelLoadError naming every missing piece unless `quantization` can run on `device`."""
    if quantization == "none":
        return
    if quantization != "fp8":
        raise ModelLoadError(f"model.quantization {quantization!r} is not 'none' or 'fp8'")
    problems = [p for p in (_device_problem(device), _torchao_problem()) if p is not None]
    if problems:
        raise ModelLoadError(
            "model.quantization = 'fp8' cannot run here: "
            + "; ".join(problems)
            + ". Set model.quantization = 'none' (INSPECTOR_MODEL__QUANTIZATION=none) to serve "
            "in the model dtype"
        )


def _adapter_modules(model: torch.nn.Module) -> set[int]:
    """Ids of every module that belongs to a LoRA adapter (peft's lora_A, lora_B, …)."""
    ids: set[int] = set()
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            for name in layer.adapter_layer_names:
                holder = getattr(layer, name, None)
                if isinstance(holder, torch.nn.Module):
                    ids.update(id(m) for m in holder.modules())
    return ids


def fp8_targets(model: Any) -> dict[str, torch.nn.Linear]:
    """The linear layers FP8 applies to, by name: decoder and vision encoder layers, no LoRA."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm = base.model  # Phi4MultimodalModel
    vision = lm.embed_tokens_extend.image_embed.img_processor.encoder
    adapters = _adapter_modules(base)
    targets: dict[str, torch.nn.Linear] = {}
    for prefix, blocks in (("model.layers", lm.layers), ("vision.layers", vision.layers)):
        for index, block in enumerate(blocks):
            for name, module in block.named_modules():
                if isinstance(module, torch.nn.Linear) and id(module) not in adapters:
                    targets[f"{prefix}.{index}.{name}"] = module
    return targets


def quantize_fp8(model: Any) -> int:
    """Turn `fp8_targets(model)` into float8 linear layers in place; how many were turned.

    torchao leaves a layer whose shape its float8 matmul cannot take (a dimension not a
    multiple of 16) as it was; the count is of those it turned.
    """
    ao: Any = importlib.import_module("torchao.quantization")
    targets = fp8_targets(model)
    kept = [name for name, m in targets.items() if has_zero_row(m.weight)]
    if kept:
        log.warning(
            "%d linear layers keep the model dtype: a weight row of zeros has no float8 scale (%s)",
            len(kept),
            ", ".join(kept[:5]) + (" …" if len(kept) > 5 else ""),
        )
    wanted = {id(m) for name, m in targets.items() if name not in kept}
    config = ao.Float8DynamicActivationFloat8WeightConfig(
        granularity=ao.PerRow(), activation_value_lb=ACTIVATION_FLOOR
    )
    ao.quantize_(model, config, filter_fn=lambda module, _fqn: id(module) in wanted)
    turned = sum(1 for m in targets.values() if is_quantized(m.weight))
    log.info("float8 linear layers: %d of %d eligible", turned, len(targets))
    return turned


def has_zero_row(weight: torch.Tensor) -> bool:
    """Whether a weight has a row of zeros (its per-row scale would be 0, its float8 row 0/0)."""
    with torch.no_grad():
        return bool((weight.abs().amax(dim=1) == 0).any())


def is_quantized(weight: torch.Tensor) -> bool:
    """Whether a weight is a quantised tensor (a subclass holding its data and scales)."""
    return hasattr(weight, "__tensor_flatten__")


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds: a quantised one's data and scales, not its nominal dtype's size."""
    if not is_quantized(tensor):
        return tensor.numel() * tensor.element_size()
    names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
    return sum(stored_bytes(getattr(tensor, name)) for name in names)


def apply_quantization(model: Any, quantization: str, device: torch.device) -> int:
    """Quantise the served base per `model.quantization`; how many layers changed (0: none)."""
    check_quantization(quantization, device)
    if quantization == "none":
        return 0
    return quantize_fp8(model)
