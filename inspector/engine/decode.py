"""Batched prefill and greedy decode with a KV cache, one LoRA adapter per row.

`PeftModel.generate(..., adapter_names=...)` cannot drive this model (the image inputs
reach later decode steps half-filled), and a plain loop is also where speed is won, so
the engine runs its own: one prefill over left-padded prompts, then one token per step.

A decode step of one token is a few milliseconds of GPU work behind tens of milliseconds
of Python (every layer's LoRA wrappers, mask building), so by default the rows of each
adapter are decoded from a preallocated `StaticCache`, whose step has fixed shapes and
is replayed from one CUDA graph on a GPU. The other path, one eager forward per token on
the growing `DynamicCache` with peft's per-row `adapter_names`, stays for comparison.

Rows routed to the vision LoRA run with no LoRA: it is merged into the served base.

The static step's attention (sdpa) runs each key/value head once for the query heads that
share it (`_decode_attention`): repeating the heads would copy the whole cache every step.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from peft import PeftModel
from transformers import AttentionInterface, AttentionMaskInterface, DynamicCache, StaticCache
from transformers.cache_utils import DynamicLayer, StaticLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from inspector.engine.inputs import positions
from inspector.engine.lora import NO_ADAPTER
from inspector.engine.types import VISION_ADAPTER

log = logging.getLogger(__name__)

# Checking "all rows finished" costs a device sync, so look only every few steps.
DONE_CHECK_EVERY = 8
# Decodes run at one of these batch sizes (padded up) and a cache length rounded up to
# CACHE_STEP, so that a worker's batches of varying size share a few captured graphs.
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
CACHE_STEP = 256

# One decode step: this step's token and position per row → each row's greedy next token.
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The attention the static step runs in place of sdpa (registered with transformers).
DECODE_ATTENTION = "inspector_decode"


def _decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """sdpa for one query token per row, each key/value head read once by its query heads.

    Query heads [B, H, 1, D] become [B, H/G, G, D] over the cache's H/G heads, and the mask
    [B, 1, 1, L] covers every head alike, so no head of the cache is repeated. (Some
    transformers versions repeat them: a copy of the whole static cache in every step.)
    Anything else is transformers' sdpa.
    """
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    packable = (
        length == 1
        and heads != kv_heads
        and heads % kv_heads == 0
        and (attention_mask is None or attention_mask.shape[1] == 1)
        and not kwargs.get("position_bias")
    )
    if not packable:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    mask = attention_mask[..., : key.shape[-2]] if attention_mask is not None else None
    out = torch.nn.functional.scaled_dot_product_attention(
        query.reshape(batch, kv_heads, heads // kv_heads, dim),
        key,
        value,
        attn_mask=mask,
        dropout_p=dropout,
        scale=scaling,
    )
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


AttentionInterface.register(DECODE_ATTENTION, _decode_attention)
AttentionMaskInterface.register(DECODE_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


@contextmanager
def _decode_attention_on(config: Any) -> Iterator[None]:
    """The language model's sdpa runs `_decode_attention` inside (towers keep theirs)."""
    before = config._attn_implementation
    if before != "sdpa":
        yield
        return
    # A dict names the model's own config alone, not the vision and audio sub-configs.
    config._attn_implementation = {"": DECODE_ATTENTION}
    try:
        yield
    finally:
        config._attn_implementation = {"": before}


@dataclass
class DecodeStats:
    """What the static decodes did since the pool was made: cheap counters, for benchmarks."""

    builds: int = 0  # static caches allocated (one per new adapter and bucket)
    captures: int = 0  # CUDA graphs captured
    capture_failures: int = 0  # captures that failed (those steps run eagerly)
    replays: int = 0  # steps replayed from a graph
    eager_steps: int = 0  # steps run as a Python forward

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


@dataclass
class Prefilled:
    """What a decode needs after the prompt pass."""

    logits: torch.Tensor  # [B, V] float32, next-token logits after the prompt
    cache: DynamicCache
    attention_mask: torch.Tensor  # [B, T] ones over real tokens, zeros over left padding
    positions: torch.Tensor  # [B] position id of each row's last prompt token
    forward: Any  # the model, or its transformers core when one LoRA serves every row
    routing: dict[str, Any]
    adapter_names: list[str]  # the adapter of each row


def lora_of(model: PeftModel, adapter: str) -> str | None:
    """The LoRA a row routed to `adapter` runs with; None for none at all.

    The vision LoRA is merged into the served base, so a row routed to it runs with no
    LoRA, unless the model carries it unmerged (the benchmark's comparison).
    """
    if adapter == VISION_ADAPTER and adapter not in model.peft_config:
        return None
    return adapter


def activate(model: PeftModel, lora: str | None) -> Any:
    """Switch the model's LoRA layers to `lora` alone (None: off); returns what to call.

    With one LoRA (or none) for every row the transformers model is called directly: its
    LoRA layers run the active adapter, and peft's wrapper would add only its own lookups.
    """
    tuner: Any = model.base_model
    if lora is None:
        tuner.disable_adapter_layers()
    else:
        tuner.enable_adapter_layers()
        model.set_adapter(lora)
    return model.get_base_model()


def adapter_routing(model: PeftModel, adapter_names: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """What to call and the forward kwargs that run each row with its adapter.

    One adapter for the whole batch is switched on directly, which skips peft's
    per-layer sub-batch gathers; mixed batches go through `adapter_names`, rows without
    a LoRA as peft's `__base__`.
    """
    loras = [lora_of(model, name) for name in adapter_names]
    distinct = set(loras)
    if len(distinct) == 1:
        return activate(model, loras[0]), {}
    activate(model, next(name for name in loras if name is not None))
    return model, {"adapter_names": [NO_ADAPTER if name is None else name for name in loras]}


def prefill(
    model: PeftModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    adapter_names: Sequence[str],
) -> Prefilled:
    """Run the embedded prompts through the model once, keeping the KV cache and last logits.

    Autograd stays as the caller has it; the engine calls this under inference mode.
    """
    position_ids = positions(attention_mask)
    forward, routing = adapter_routing(model, adapter_names)
    cache = DynamicCache(config=model.config)
    out = forward(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
        **routing,
    )
    return Prefilled(
        logits=out.logits[:, -1].float(),
        cache=cache,
        attention_mask=attention_mask,
        positions=position_ids[:, -1],
        forward=forward,
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
    graphs: DecodeGraphs | None = None,
    rows: Sequence[int] | None = None,
) -> list[list[int]]:
    """Feed each row's `forced` tokens, then decode greedily up to `max_new_tokens` more.

    Returns only the freely decoded tokens of each row, cut before its first stop token.
    `rows` (default: all) are the rows decoded; the others get no tokens and, on the static
    path, cost nothing: only the chosen rows' keys and values reach a static cache, whose
    batch bucket they alone size. `static` decodes each adapter's rows from a static cache
    (a CUDA graph on a GPU), taken from `graphs` so that later batches of the same bucket
    reuse both (without it, each call builds its own); otherwise every step is an eager
    forward over the whole batch. `state.cache` is used up either way.
    """
    batch = state.logits.shape[0]
    chosen = list(range(batch)) if rows is None else sorted(set(rows))
    if max_new_tokens <= 0 or not chosen:
        return [[] for _ in range(batch)]
    if not static:
        ids = _greedy(
            _DynamicSteps(state),
            state.logits,
            state.positions,
            forced,
            max_new_tokens,
            stop_ids,
            pad_id,
        )
        keep = set(chosen)
        return [row_ids if row in keep else [] for row, row_ids in enumerate(ids)]
    groups: dict[str, list[int]] = {}
    for row in chosen:
        groups.setdefault(state.adapter_names[row], []).append(row)
    pool = graphs if graphs is not None else DecodeGraphs(max_entries=len(groups))
    prompt = state.attention_mask.shape[1]
    device = state.logits.device
    steppers = []
    for name, rows in groups.items():
        steps = max(len(forced[r]) for r in rows) + max_new_tokens - 1
        stepper = pool.steps(model.get_base_model(), name, len(rows), prompt + steps, device)
        index = _row_index(rows, batch, device)
        stepper.reset(state.attention_mask if index is None else state.attention_mask[index])
        steppers.append((name, rows, index, stepper))
    _load_prompt(state, [(index, stepper) for _, _, index, stepper in steppers])
    out: list[list[int]] = [[] for _ in range(batch)]
    for name, rows, index, stepper in steppers:
        activate(model, lora_of(model, name))
        ids = _greedy(
            stepper,
            state.logits if index is None else state.logits[index],
            state.positions if index is None else state.positions[index],
            [forced[r] for r in rows],
            max_new_tokens,
            stop_ids,
            pad_id,
        )
        for row, row_ids in zip(rows, ids, strict=True):
            out[row] = row_ids
    return out


def _row_index(rows: list[int], batch: int, device: torch.device) -> torch.Tensor | None:
    """The rows as an index tensor, or None when they are the whole batch in order."""
    if rows == list(range(batch)):
        return None
    return torch.tensor(rows, device=device)


def _load_prompt(state: Prefilled, targets: list[tuple[torch.Tensor | None, _StaticSteps]]) -> None:
    """Copy the prefill's keys and values into each stepper's static cache (rows by index).

    Each layer of the prefill's DynamicCache is dropped as soon as it is copied, so the
    copy needs about one layer's worth of extra memory rather than a second cache.
    """
    for layer_idx, layer in enumerate(state.cache.layers):
        # The prefill filled every layer of this full-attention model.
        assert isinstance(layer, DynamicLayer) and layer.is_initialized
        keys, values = layer.keys, layer.values
        assert keys is not None and values is not None
        for index, stepper in targets:
            if index is None:
                stepper.load(layer_idx, keys, values)
            else:
                stepper.load(layer_idx, keys[index], values[index])
        layer.reset()


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

    def __init__(self, state: Prefilled) -> None:
        self._forward = state.forward
        self._cache = state.cache
        self._mask = state.attention_mask
        self._routing = state.routing

    def __call__(self, token: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Greedy next token of each row after `token`."""
        self._mask = torch.cat([self._mask, self._mask.new_ones(self._mask.shape[0], 1)], dim=1)
        out = self._forward(
            input_ids=token[:, None],
            attention_mask=self._mask,
            position_ids=positions[:, None],
            cache=self._cache,
            use_cache=True,
            **self._routing,
        )
        greedy: torch.Tensor = out.logits[:, -1].argmax(dim=-1)
        return greedy


def batch_bucket(rows: int) -> int:
    """The batch size a decode of `rows` rows runs at: graphs are kept per bucket."""
    return next((b for b in BATCH_BUCKETS if b >= rows), rows)


def cache_bucket(length: int) -> int:
    """The static cache length for `length` tokens (prompt plus decode steps), rounded up."""
    return -(-length // CACHE_STEP) * CACHE_STEP


class DecodeGraphs:
    """Static caches and their captured decode steps, kept between batches.

    One entry per (adapter, batch bucket, cache-length bucket), least recently used first
    out beyond `max_entries`. Entries hold the weights of the adapter they were captured
    with: `clear` them whenever an adapter is loaded, replaced or unloaded.
    """

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, int], _StaticSteps] = OrderedDict()
        self.stats = DecodeStats()

    def steps(
        self, model: Any, adapter: str, rows: int, length: int, device: torch.device
    ) -> _StaticSteps:
        """The stepper for `rows` rows of up to `length` tokens with `adapter`."""
        key = (adapter, batch_bucket(rows), cache_bucket(length))
        stepper = self._entries.pop(key, None)
        if stepper is None:
            while len(self._entries) >= max(1, self.max_entries):
                self._entries.popitem(last=False)
            stepper = _StaticSteps(model, key[1], key[2], device, self.stats)
            self.stats.builds += 1
        self._entries[key] = stepper
        return stepper

    def clear(self) -> None:
        """Forget every cache and graph (an adapter changed)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class _StaticSteps:
    """Fixed-shape decode steps of up to `capacity` rows over one StaticCache.

    On a GPU the first step ever run eagerly (warming every kernel up) and the step is
    then captured once as a CUDA graph, which every later step replays, in this decode
    and in later ones of the same bucket: `reset` and `load` only write into the tensors
    the graph reads (mask, tokens, positions, the cache and its length counters). Rows
    past a batch's own are padding: they attend to the whole cache so that their
    softmax stays finite, and their tokens are never read.
    """

    def __init__(
        self,
        model: Any,
        capacity: int,
        length: int,
        device: torch.device,
        stats: DecodeStats | None = None,
    ) -> None:
        self._model = model
        self._stats = stats if stats is not None else DecodeStats()
        self.capacity = capacity
        self.length = length
        self._cache = StaticCache(config=model.config, max_cache_len=length)
        self._mask = torch.ones(capacity, length, dtype=torch.bool, device=device)
        self._token = torch.zeros(capacity, 1, dtype=torch.long, device=device)
        self._positions = torch.zeros(capacity, 1, dtype=torch.long, device=device)
        self._rows = capacity
        self._capture = device.type == "cuda"
        self._graph: torch.cuda.CUDAGraph | None = None
        self._greedy: torch.Tensor | None = None

    def reset(self, prompt_mask: torch.Tensor) -> None:
        """Start a decode of `prompt_mask`'s rows (ones over real prompt tokens)."""
        rows, prompt = prompt_mask.shape
        self._rows = rows
        # Decode slots count as real from the start: the causal mask hides those ahead.
        self._mask.fill_(True)
        self._mask[:rows, :prompt].copy_(prompt_mask.bool())
        self._token.zero_()
        self._positions.fill_(prompt)
        self._prompt = prompt

    def load(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """This batch's prompt keys and values of one layer, into the static cache."""
        layer = self._cache.layers[layer_idx]
        # This full-attention model's static cache holds one StaticLayer per layer.
        assert isinstance(layer, StaticLayer)
        if not layer.is_initialized:
            shape = (self.capacity, *keys.shape[1:2], 1, keys.shape[-1])
            layer.lazy_initialization(keys.new_empty(shape), values.new_empty(shape))
        rows, prompt = keys.shape[0], keys.shape[2]
        assert layer.keys is not None and layer.values is not None
        layer.keys[:rows, :, :prompt].copy_(keys)
        layer.values[:rows, :, :prompt].copy_(values)
        layer.cumulative_length.fill_(prompt)

    def __call__(self, token: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Greedy next token of each row after `token`."""
        rows = self._rows
        self._token[:rows].copy_(token[:, None])
        self._positions[:rows].copy_(positions[:, None])
        if self._graph is not None and self._greedy is not None:
            self._graph.replay()
            self._stats.replays += 1
            return self._greedy[:rows].clone()
        greedy = self._forward()
        self._stats.eager_steps += 1
        if self._capture:
            self._capture = False
            self._record()
        return greedy[:rows]

    def _forward(self) -> torch.Tensor:
        with _decode_attention_on(self._model.config):
            out = self._model(
                input_ids=self._token,
                attention_mask=self._mask,
                position_ids=self._positions,
                cache=self._cache,
                use_cache=True,
            )
        greedy: torch.Tensor = out.logits[:, -1].argmax(dim=-1)
        return greedy

    def _record(self) -> None:
        """Capture the step as a CUDA graph; on failure keep running it eagerly."""
        # Capturing records kernels without running them, so the cache is left as it is.
        # torch.cuda.graph() would also empty the allocator's cache on every capture.
        graph = torch.cuda.CUDAGraph()
        device = self._mask.device
        stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(device))
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
            self._stats.capture_failures += 1
            log.warning("decoding without a CUDA graph, the capture failed: %s", exc)
            return
        torch.cuda.current_stream(device).wait_stream(stream)
        self._graph, self._greedy = graph, greedy
        self._stats.captures += 1


def _cut_at_stop(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    for i, tok in enumerate(ids):
        if tok in stop_ids:
            return ids[:i]
    return ids
