"""Batched prefill and greedy decode with a KV cache, one LoRA adapter per row.

`PeftModel.generate(..., adapter_names=...)` cannot drive this model (the image inputs
reach later decode steps half-filled), and a plain loop is also where speed is won, so
the engine runs its own: one prefill over left-padded prompts, then one token per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from peft import PeftModel
from transformers import DynamicCache

# Checking "all rows finished" costs a device sync, so look only every few steps.
DONE_CHECK_EVERY = 8


@dataclass
class Prefilled:
    """What a decode needs after the prompt pass."""

    logits: torch.Tensor  # [B, V] float32, next-token logits after the prompt
    cache: DynamicCache
    attention_mask: torch.Tensor  # [B, T] ones over real tokens, zeros over left padding
    positions: torch.Tensor  # [B] position id of each row's last prompt token
    routing: dict[str, Any]


def adapter_routing(model: PeftModel, adapter_names: Sequence[str]) -> dict[str, Any]:
    """Forward kwargs that run each row with its adapter.

    One adapter for the whole batch is switched on directly, which skips peft's
    per-layer sub-batch gathers; mixed batches go through `adapter_names`.
    """
    distinct = set(adapter_names)
    if len(distinct) == 1:
        model.set_adapter(next(iter(distinct)))
        return {}
    return {"adapter_names": list(adapter_names)}


@torch.inference_mode()
def prefill(
    model: PeftModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    adapter_names: Sequence[str],
) -> Prefilled:
    """Run the embedded prompts through the model once, keeping the KV cache and last logits."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    routing = adapter_routing(model, adapter_names)
    cache = DynamicCache(config=model.config)
    out = model(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        **routing,
    )
    return Prefilled(
        logits=out.logits[:, -1].float(),
        cache=cache,
        attention_mask=attention_mask,
        positions=position_ids[:, -1],
        routing=routing,
    )


@torch.inference_mode()
def greedy_continue(
    model: PeftModel,
    state: Prefilled,
    forced: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
) -> list[list[int]]:
    """Feed each row's `forced` tokens, then decode greedily up to `max_new_tokens` more.

    Returns only the freely decoded tokens of each row, cut before its first stop token.
    """
    batch = state.logits.shape[0]
    device = state.logits.device
    if max_new_tokens <= 0:
        return [[] for _ in range(batch)]
    lengths = torch.tensor([len(f) for f in forced], device=device)
    width = max(1, int(lengths.max().item()))
    forced_ids = torch.full((batch, width), pad_id, dtype=torch.long, device=device)
    for row, ids in enumerate(forced):
        if ids:
            forced_ids[row, : len(ids)] = torch.tensor(list(ids), device=device)
    stops = torch.tensor(list(stop_ids), device=device)
    generated = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    rows = torch.arange(batch, device=device)
    mask, positions, logits = state.attention_mask, state.positions, state.logits
    last_step = int(lengths.max().item()) + max_new_tokens - 1
    for step in range(last_step + 1):
        # Token `step` of each row: forced while it has some left, else the greedy pick.
        index = step - lengths
        token = torch.where(index < 0, forced_ids[:, min(step, width - 1)], logits.argmax(dim=-1))
        free = (index >= 0) & (index < max_new_tokens) & ~done
        slot = index.clamp(0, max_new_tokens - 1)
        generated[rows, slot] = torch.where(free, token, generated[rows, slot])
        done |= free & torch.isin(token, stops)
        done |= index >= max_new_tokens - 1
        if step == last_step or (
            step % DONE_CHECK_EVERY == DONE_CHECK_EVERY - 1 and bool(done.all())
        ):
            break
        token = torch.where(done, torch.full_like(token, pad_id), token)
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
        positions = positions + 1
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=positions[:, None],
            past_key_values=state.cache,
            use_cache=True,
            **state.routing,
        )
        logits = out.logits[:, -1].float()
    return [_cut_at_stop(row, stop_ids) for row in generated.tolist()]


def _cut_at_stop(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    for i, tok in enumerate(ids):
        if tok in stop_ids:
            return ids[:i]
    return ids
