"""Batched prefill and greedy decode with a KV cache, one LoRA adapter per row.

`PeftModel.generate(..., adapter_names=...)` cannot drive this model (the image inputs
reach later decode steps half-filled), and a plain loop is also where speed is won, so
the engine runs its own: one prefill over left-padded prompts, then one token per step.

A decode step of one token is a few milliseconds of GPU work behind tens of milliseconds
of Python (every layer's LoRA wrappers, mask building), so by default the rows of each
adapter are decoded from a preallocated `StaticCache`, whose step has fixed shapes and
is replayed from one CUDA graph on a GPU. The other path, one eager forward per token on
the growing `DynamicCache` with peft's per-row `adapter_names`, stays for comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from peft import PeftModel
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)

# Checking "all rows finished" costs a device sync, so look only every few steps.
DONE_CHECK_EVERY = 8

# One decode step: this step's token and position per row → each row's greedy next token.
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Prefilled:
    """What a decode needs after the prompt pass."""

    logits: torch.Tensor  # [B, V] float32, next-token logits after the prompt
    cache: DynamicCache
    attention_mask: torch.Tensor  # [B, T] ones over real tokens, zeros over left padding
    positions: torch.Tensor  # [B] position id of each row's last prompt token
    routing: dict[str, Any]
    adapter_names: list[str]  # the adapter of each row


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
        adapter_names=list(adapter_names),
    )


@torch.inference_mode()
def greedy_continue(
    model: PeftModel,
    state: Prefilled,
    forced: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    static: bool = True,
) -> list[list[int]]:
    """Feed each row's `forced` tokens, then decode greedily up to `max_new_tokens` more.

    Returns only the freely decoded tokens of each row, cut before its first stop token.
    `static` decodes each adapter's rows from a static cache (a CUDA graph on a GPU);
    otherwise every step is an eager forward over the whole batch. `state.cache` is
    used up either way.
    """
    batch = state.logits.shape[0]
    if max_new_tokens <= 0:
        return [[] for _ in range(batch)]
    if not static:
        return _greedy(
            _DynamicSteps(model, state),
            state.logits,
            state.positions,
            forced,
            max_new_tokens,
            stop_ids,
            pad_id,
        )
    groups: dict[str, list[int]] = {}
    for row, name in enumerate(state.adapter_names):
        groups.setdefault(name, []).append(row)
    forwards = [max(len(forced[r]) for r in rows) + max_new_tokens - 1 for rows in groups.values()]
    caches = _static_caches(model, state, list(groups.values()), forwards)
    out: list[list[int]] = [[] for _ in range(batch)]
    for (name, rows), cache, steps in zip(groups.items(), caches, forwards, strict=True):
        index = _row_index(rows, batch, state.logits.device)
        mask = state.attention_mask if index is None else state.attention_mask[index]
        model.set_adapter(name)
        stepper = _StaticSteps(model, cache, torch.nn.functional.pad(mask, (0, steps), value=1))
        ids = _greedy(
            stepper,
            state.logits if index is None else state.logits[index],
            state.positions if index is None else state.positions[index],
            [forced[r] for r in rows],
            max_new_tokens,
            stop_ids,
            pad_id,
        )
        del stepper, cache
        for row, row_ids in zip(rows, ids, strict=True):
            out[row] = row_ids
    return out


def _row_index(rows: list[int], batch: int, device: torch.device) -> torch.Tensor | None:
    """The rows as an index tensor, or None when they are the whole batch in order."""
    if rows == list(range(batch)):
        return None
    return torch.tensor(rows, device=device)


def _static_caches(
    model: PeftModel, state: Prefilled, groups: list[list[int]], forwards: list[int]
) -> list[StaticCache]:
    """One StaticCache per row group holding its rows' prompt, with room for `forwards` more.

    Each layer of the prefill's DynamicCache is dropped as soon as it is copied, so the
    copy needs about one layer's worth of extra memory rather than a second cache.
    """
    batch, prompt = state.attention_mask.shape
    device = state.logits.device
    indices = [_row_index(rows, batch, device) for rows in groups]
    caches = [StaticCache(config=model.config, max_cache_len=prompt + steps) for steps in forwards]
    for layer_idx, layer in enumerate(state.cache.layers):
        # The prefill filled every layer of this full-attention model.
        assert isinstance(layer, DynamicLayer) and layer.is_initialized
        keys, values = layer.keys, layer.values
        assert keys is not None and values is not None
        for cache, index in zip(caches, indices, strict=True):
            if index is None:
                cache.update(keys, values, layer_idx)
            else:
                cache.update(keys[index], values[index], layer_idx)
        layer.reset()
    return caches


def _greedy(
    step_fn: Step,
    logits: torch.Tensor,
    positions: torch.Tensor,
    forced: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
) -> list[list[int]]:
    """The decode loop over rows that share one `step_fn`; see `greedy_continue`."""
    batch = logits.shape[0]
    device = logits.device
    lengths = torch.tensor([len(f) for f in forced], device=device)
    longest = max(len(f) for f in forced)
    width = max(1, longest)
    forced_ids = torch.full((batch, width), pad_id, dtype=torch.long, device=device)
    for row, ids in enumerate(forced):
        if ids:
            forced_ids[row, : len(ids)] = torch.tensor(list(ids), device=device)
    stops = torch.tensor(list(stop_ids), device=device)
    generated = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    rows = torch.arange(batch, device=device)
    greedy = logits.argmax(dim=-1)
    last_step = longest + max_new_tokens - 1
    for step in range(last_step + 1):
        # Token `step` of each row: forced while it has some left, else the greedy pick.
        index = step - lengths
        token = torch.where(index < 0, forced_ids[:, min(step, width - 1)], greedy)
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
        positions = positions + 1
        greedy = step_fn(token, positions)
    return [_cut_at_stop(row, stop_ids) for row in generated.tolist()]


class _DynamicSteps:
    """One eager forward of the whole batch per token, growing the prefill's DynamicCache."""

    def __init__(self, model: PeftModel, state: Prefilled) -> None:
        self._model = model
        self._cache = state.cache
        self._mask = state.attention_mask
        self._routing = state.routing

    def __call__(self, token: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Greedy next token of each row after `token`."""
        self._mask = torch.cat([self._mask, self._mask.new_ones(self._mask.shape[0], 1)], dim=1)
        out = self._model(
            input_ids=token[:, None],
            attention_mask=self._mask,
            position_ids=positions[:, None],
            past_key_values=self._cache,
            use_cache=True,
            **self._routing,
        )
        greedy: torch.Tensor = out.logits[:, -1].argmax(dim=-1)
        return greedy


class _StaticSteps:
    """Fixed-shape forwards of one adapter's rows over a StaticCache.

    On a GPU the first step runs eagerly (warming every kernel up) and the step is then
    captured once as a CUDA graph, which later steps replay; the cache's own length
    counter, a device tensor, moves each step's key/value slot on. A graph serves one
    decode only: it holds this batch's shapes and the active adapter's weight tensors,
    which a later load or unload may replace.
    """

    def __init__(self, model: PeftModel, cache: StaticCache, mask: torch.Tensor) -> None:
        self._model = model
        self._cache = cache
        # Decode slots count as real from the start: the causal mask hides those ahead.
        self._mask = mask.bool()
        batch = mask.shape[0]
        self._token = torch.zeros(batch, 1, dtype=torch.long, device=mask.device)
        self._positions = torch.zeros(batch, 1, dtype=torch.long, device=mask.device)
        self._capture = mask.device.type == "cuda"
        self._graph: torch.cuda.CUDAGraph | None = None
        self._greedy: torch.Tensor | None = None

    def __call__(self, token: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Greedy next token of each row after `token`."""
        self._token.copy_(token[:, None])
        self._positions.copy_(positions[:, None])
        if self._graph is not None and self._greedy is not None:
            self._graph.replay()
            return self._greedy.clone()
        greedy = self._forward()
        if self._capture:
            self._capture = False
            self._record()
        return greedy

    def _forward(self) -> torch.Tensor:
        out = self._model(
            input_ids=self._token,
            attention_mask=self._mask,
            position_ids=self._positions,
            past_key_values=self._cache,
            use_cache=True,
        )
        greedy: torch.Tensor = out.logits[:, -1].argmax(dim=-1)
        return greedy

    def _record(self) -> None:
        """Capture the step as a CUDA graph; on failure keep running it eagerly."""
        # Capturing records kernels without running them, so the cache is left as it is.
        # torch.cuda.graph() would also empty the allocator's cache on every capture.
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device=self._mask.device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(self._mask.device))
        try:
            with torch.cuda.stream(stream):
                graph.capture_begin(capture_error_mode="thread_local")
                try:
                    greedy = self._forward()
                finally:
                    graph.capture_end()
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            log.warning("decoding without a CUDA graph, the capture failed: %s", exc)
            return
        torch.cuda.current_stream(self._mask.device).wait_stream(stream)
        self._graph, self._greedy = graph, greedy


def _cut_at_stop(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    for i, tok in enumerate(ids):
        if tok in stop_ids:
            return ids[:i]
    return ids
