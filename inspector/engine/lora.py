"""The LoRA spec, in one place: what the tiny-model builder, serving and training all use.

The public checkpoint's vision and speech LoRAs cover every attention and MLP projection
of the language model and nothing in the vision or audio towers, with alpha = 2 × rank.
Site adapters keep that shape (at a smaller rank), so one batch can route each row to its
own adapter and an adapter trained here loads in any worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft import LoraConfig

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
