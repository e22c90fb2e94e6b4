"""Regional torch.compile of the model's repeated blocks (`model.compile`, on by default).

Most of a batch's non-matmul GPU time is elementwise work between the matmuls (RMSNorm
and LayerNorm, gating, residual adds), each a pass over every token's activations.
Compiling the blocks that repeat fuses those passes, and every block of a kind shares
its compiled code, so the cost is a few compilations, paid by the first batches:

- the vision tower's encoder layers, whole;
- in each decoder layer of the language model, the MLP and the two RMSNorms. Not the
  attention: it holds its layer's index (reading the KV cache by it), so compiling it
  would compile one copy per layer, past torch's recompile limit, and the layers beyond
  it would silently run eagerly.

With FP8 linear layers (quantize.py) the attention's projections are compiled too, each
on its own: outside a compiled region a float8 layer quantises its input in several
separate passes, which costs more than the faster matmul saves; compiled, that becomes
one fused pass. Every layer's projection of one shape shares its compiled code.

Shapes are compiled dynamic, so batch size and prompt length do not recompile.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from inspector.engine.quantize import is_quantized

log = logging.getLogger(__name__)


def repeated_blocks(model: Any) -> list[torch.nn.Module]:
    """The modules compiled: vision encoder layers, and the decoder layers' MLPs and norms."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm = base.model  # Phi4MultimodalModel
    vision = lm.embed_tokens_extend.image_embed.img_processor.encoder
    decoder = [
        part
        for layer in lm.layers
        for part in (layer.input_layernorm, layer.mlp, layer.post_attention_layernorm)
    ]
    return [*decoder, *vision.layers]


def quantized_projections(model: Any) -> list[torch.nn.Module]:
    """The float8 linear layers of the decoder layers' attention (outside `repeated_blocks`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = []
    for layer in base.model.layers:
        for projection in (layer.self_attn.qkv_proj, layer.self_attn.o_proj):
            # peft's LoRA layer holds the Linear as base_layer; only that one is float8.
            linear = getattr(projection, "base_layer", projection)
            if is_quantized(linear.weight):
                out.append(linear)
    return out


def compile_blocks(model: Any) -> int:
    """Compile every repeated block in place; returns how many were wrapped."""
    blocks = [*repeated_blocks(model), *quantized_projections(model)]
    for block in blocks:
        block.compile(dynamic=True)
    log.info("compiling %d repeated blocks on first use", len(blocks))
    return len(blocks)
