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
from collections.abc import Callable
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


def compile_blocks(model: Any, backend: str | Callable[..., Any] = "inductor") -> list[Any]:
    """Compile every repeated block in place; returns the blocks wrapped."""
    blocks = [*repeated_blocks(model), *quantized_projections(model)]
    for block in blocks:
        block.compile(dynamic=True, backend=backend)
    log.info("compiling %d repeated blocks on first use", len(blocks))
    return blocks


def uncompile(blocks: list[Any]) -> None:
    """Run `blocks` eagerly again (undo `compile_blocks`)."""
    for block in blocks:
        block._compiled_call_impl = None
    torch._dynamo.reset()


def first_compiled_run(model: Any) -> str | None:
    """Run each kind of compiled block on the shapes batches give them (as the engine runs
    them, under inference mode); the error compiling raised, or None when every one ran.

    torch.compile specialises a dimension of 1, so the decoder's blocks run with one row
    and several, one token (a decode step) and several (a prefill), and the vision layer
    with one crop and several: the compilations a worker's first batches would make happen
    here, at load. The same calls run eagerly first: an error there is no compile failure
    and is raised.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm = base.model
    layer = lm.layers[0]
    vision = lm.embed_tokens_extend.image_embed.img_processor.encoder.layers[0]
    down = layer.mlp.down_proj
    dtype = getattr(down, "base_layer", down).weight.dtype
    device = next(layer.parameters()).device
    attention = layer.self_attn
    projections = [getattr(p, "base_layer", p) for p in (attention.qkv_proj, attention.o_proj)]

    def run_all() -> None:
        with torch.inference_mode():
            for rows, tokens in ((2, 8), (2, 1), (1, 8), (1, 1)):
                x = torch.randn(rows, tokens, base.config.hidden_size, device=device).to(dtype)
                layer.input_layernorm(x)
                layer.mlp(x)
                layer.post_attention_layernorm(x)
                for linear in projections:
                    linear(x[..., : linear.in_features])
            for crops in (2, 1):
                picture = torch.randn(crops, 16, vision.embed_dim, device=device).to(dtype)
                vision(picture, attention_mask=None)

    with torch.compiler.set_stance("force_eager"):
        run_all()
    try:
        run_all()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:2000]
    return None
