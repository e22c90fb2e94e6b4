"""The LoRA spec and exact LoRA arithmetic, in one place: tiny model, serving and training.

The public checkpoint's vision and speech LoRAs cover every attention and MLP projection
of the language model and nothing in the vision or audio towers, with alpha = 2 × rank.
Site adapters keep that shape (at a smaller rank), so one batch can route each row to its
own adapter and an adapter trained here loads in any worker.

The served base has the vision LoRA merged into its weights (`merge_lora`); transcription
runs `difference_lora(speech, vision)` on top, which gives back the speech LoRA's model
on the original weights: (W + ΔW_v) + (ΔW_s − ΔW_v) = W + ΔW_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import PreTrainedModel

from inspector.errors import ModelLoadError

LORA_TARGETS = r"model\.layers\.\d+\.((self_attn\.(qkv|o)_proj)|(mlp\.(gate_up|down)_proj))"
SITE_ADAPTER_RANK = 32


@dataclass(frozen=True)
class LoraSpec:
    """Rank, alpha and target modules of one LoRA."""

    rank: int = SITE_ADAPTER_RANK
    alpha: int | None = None  # None: 2 × rank, as the public checkpoint's LoRAs
    targets: str = LORA_TARGETS
    dropout: float = 0.0

    @property
    def scaling(self) -> float:
        """The factor the LoRA's B·A product is multiplied by."""
        return self.lora_alpha / self.rank

    @property
    def lora_alpha(self) -> int:
        """Alpha, with the 2 × rank default filled in."""
        return self.alpha if self.alpha is not None else 2 * self.rank

    def config(self, random_init: bool = False) -> LoraConfig:
        """The peft config; `random_init` draws B too, so a fresh adapter changes outputs."""
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.dropout,
            target_modules=self.targets,
            task_type="CAUSAL_LM",
            # peft's default starts B at zero (training from the base); False draws both.
            init_lora_weights=not random_init,
        )


def targets_of(config: object) -> object:
    """A LoRA config's target modules in a comparable form (a regex or a set of names)."""
    targets = getattr(config, "target_modules", None)
    return targets if isinstance(targets, str) else frozenset(targets or ())


# --- exact LoRA arithmetic: merging into the weights, differences of two LoRAs ----------------

WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_FACTOR_KEYS = {".lora_A.weight": "a", ".lora_B.weight": "b"}
# peft's name for "this row runs with no LoRA" in a mixed batch's `adapter_names`.
NO_ADAPTER = "__base__"
# A rank-1 LoRA with B = 0 (ΔW = 0) that stays attached and is never switched on: peft's
# PeftModel needs one adapter at all times, and the served base may have no other.
ZERO_ADAPTER = "_zero"


@dataclass(frozen=True)
class LoraFactors:
    """One module's LoRA: its weight moves by ΔW = scaling · B @ A."""

    a: torch.Tensor  # [rank, in]
    b: torch.Tensor  # [out, rank]
    scaling: float

    @property
    def rank(self) -> int:
        """The inner dimension of B @ A."""
        return int(self.a.shape[0])

    def delta(self) -> torch.Tensor:
        """ΔW [out, in] in float32."""
        return self.scaling * (self.b.float() @ self.a.float())


Lora = dict[str, LoraFactors]  # module name (as in `named_modules`) → its factors


def read_lora(path: Path, device: torch.device | str = "cpu") -> Lora:
    """The factors of a peft LoRA adapter directory, per module, in float32 on `device`.

    Only plain LoRAs are read (no DoRA, biases, per-module patterns or fan-in-fan-out
    layers): their ΔW is exactly scaling · B @ A, which merging and differences rely on.
    """
    try:
        config = LoraConfig.from_pretrained(str(path))
        tensors = load_file(str(path / WEIGHTS_FILE), device=str(device))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"cannot read the LoRA adapter in {path}: {exc}") from None
    unsupported = {
        "use_dora": bool(config.use_dora),
        "bias": config.bias != "none",
        "lora_bias": bool(getattr(config, "lora_bias", False)),
        "rank_pattern": bool(config.rank_pattern),
        "alpha_pattern": bool(config.alpha_pattern),
        "fan_in_fan_out": bool(config.fan_in_fan_out),
    }
    if any(unsupported.values()):
        found = ", ".join(k for k, v in unsupported.items() if v)
        raise ModelLoadError(f"{path}: only plain LoRAs can be merged; this one sets {found}")
    scaling = config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        suffix = next((s for s in _FACTOR_KEYS if key.endswith(s)), None)
        if suffix is None:
            raise ModelLoadError(f"{path}/{WEIGHTS_FILE} holds {key!r}, which is no LoRA factor")
        module = key[: -len(suffix)].removeprefix(_PREFIX)
        parts.setdefault(module, {})[_FACTOR_KEYS[suffix]] = tensor.float()
    lora: Lora = {}
    for module, factors in sorted(parts.items()):
        a, b = factors.get("a"), factors.get("b")
        if a is None or b is None or a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ModelLoadError(f"{path}: module {module!r} has no matching A and B factors")
        if a.shape[0] != config.r:
            raise ModelLoadError(
                f"{path}: module {module!r} has rank {a.shape[0]}, the config says {config.r}"
            )
        lora[module] = LoraFactors(a, b, scaling)
    if not lora:
        raise ModelLoadError(f"{path}/{WEIGHTS_FILE} holds no LoRA factors")
    return lora


def lora_factors(model: PeftModel, name: str) -> Lora:
    """The factors of adapter `name` as attached to `model`, per module, in float32."""
    lora: Lora = {}
    for module, layer in model.get_base_model().named_modules():
        if isinstance(layer, LoraLayer) and name in layer.lora_A:
            a: Any = layer.lora_A[name]
            b: Any = layer.lora_B[name]
            lora[module] = LoraFactors(a.weight.float(), b.weight.float(), layer.scaling[name])
    return lora


def _linear(model: torch.nn.Module, name: str) -> torch.nn.Linear:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, torch.nn.Linear):
        raise ModelLoadError(f"the LoRA names {name!r}, which is no linear layer of the model")
    return module


def merge_lora(model: torch.nn.Module, lora: Lora) -> None:
    """Add each module's ΔW into its weight, in place: W ← W + s·B·A.

    The sum is taken in float32 and rounded to the weight's dtype once, so in float32 the
    merged model matches the model with the LoRA attached to rounding, and in bfloat16 each
    merged weight is the nearest one to the exact sum.
    """
    with torch.no_grad():
        for name, factors in lora.items():
            layer = _linear(model, name)
            weight = layer.weight
            if weight.shape != (factors.b.shape[0], factors.a.shape[1]):
                raise ModelLoadError(
                    f"the LoRA for {name!r} is {factors.b.shape[0]}×{factors.a.shape[1]}, "
                    f"the layer is {weight.shape[0]}×{weight.shape[1]}"
                )
            merged = weight.float() + factors.delta().to(weight.device)
            weight.copy_(merged.to(weight.dtype))


def difference_lora(plus: Lora, minus: Lora) -> Lora:
    """One LoRA whose ΔW is `plus`'s minus `minus`'s, exactly, at scaling 1.

    ΔW = s₊·B₊·A₊ − s₋·B₋·A₋ = [s₊·B₊, −s₋·B₋] · [A₊; A₋], of rank r₊ + r₋. Every module
    gets that one rank (a module in only one of them is padded with zero rows and
    columns), so a single peft config describes the result.
    """
    names = sorted(set(plus) | set(minus))
    rank = max(
        (plus[n].rank if n in plus else 0) + (minus[n].rank if n in minus else 0) for n in names
    )
    out: Lora = {}
    for name in names:
        a_parts, b_parts = [], []
        for lora, sign in ((plus, 1.0), (minus, -1.0)):
            if name in lora:
                factors = lora[name]
                a_parts.append(factors.a.float())
                b_parts.append(factors.b.float() * (sign * factors.scaling))
        a, b = torch.cat(a_parts, dim=0), torch.cat(b_parts, dim=1)
        pad = rank - a.shape[0]
        if pad:
            a = torch.cat([a, a.new_zeros(pad, a.shape[1])], dim=0)
            b = torch.cat([b, b.new_zeros(b.shape[0], pad)], dim=1)
        out[name] = LoraFactors(a, b, 1.0)
    return out


def lora_host(model: PreTrainedModel) -> PeftModel:
    """`model` inside a PeftModel, LoRA layers on the spec's targets, only `ZERO_ADAPTER` on."""
    # peft's default init draws A and zeros B, so this adapter leaves every output as is.
    host = get_peft_model(
        model, LoraSpec(rank=1).config(), adapter_name=ZERO_ADAPTER, autocast_adapter_dtype=False
    )
    host.eval()
    return host


def attach_lora(host: PeftModel, name: str, lora: Lora) -> None:
    """Attach `lora` as adapter `name` in the model's dtype, its scaling folded into B.

    The adapter runs at scaling 1 (alpha = rank); a difference LoRA already has it.
    """
    ranks = {f.rank for f in lora.values()}
    if len(ranks) != 1:
        raise ModelLoadError(f"adapter {name!r} must have one rank throughout, not {sorted(ranks)}")
    [rank] = ranks
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        target_modules=sorted(lora),
        task_type="CAUSAL_LM",
    )
    host.add_adapter(name, config, autocast_adapter_dtype=False)
    model = host.get_base_model()
    with torch.no_grad():
        for module, factors in lora.items():
            layer: Any = model.get_submodule(module)
            a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
            a.copy_(factors.a.to(a.dtype))
            b.copy_((factors.b.float() * factors.scaling).to(b.dtype))
    host.eval()
