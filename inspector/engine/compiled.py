"""Regional torch.compile of the model's repeated blocks (an opt-in runtime option).

Most of a batch's non-matmul GPU time is elementwise work between the matmuls (rotary
embedding, RMSNorm and LayerNorm, gating, residual adds), each a pass over every token's
activations. Compiling one decoder layer and one vision encoder layer fuses those passes;
every layer of a kind shares the compiled code, so the cost is two compilations, paid by
the first batches. Shapes are compiled dynamic, so batch size and prompt length do not
recompile.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)


def repeated_blocks(model: Any) -> list[torch.nn.Module]:
    """The language model's decoder layers and the vision tower's encoder layers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm = base.model  # Phi4MultimodalModel
    vision = lm.embed_tokens_extend.image_embed.img_processor.encoder
    return [*lm.layers, *vision.layers]


def compile_blocks(model: Any) -> int:
    """Compile every repeated block in place; returns how many were wrapped."""
    blocks = repeated_blocks(model)
    for block in blocks:
        block.compile(dynamic=True)
    log.info("compiling %d transformer blocks on first use", len(blocks))
    return len(blocks)
