"""The static-cache decode (a CUDA graph on GPUs) against the eager one, on the tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers.cache_utils import DynamicLayer

from inspector.engine import EngineRequest
from inspector.engine.decode import (
    CACHE_STEP,
    DecodeGraphs,
    Prefilled,
    _decode_attention,
    greedy_continue,
    prefill,
)
from inspector.engine.inputs import embed, encode
from inspector.engine.prompt import verdict_prompt
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.settings import ModelSettings, SiteProfile
from tests.engine.media import photo, voice

MakeAdapter = Callable[[str, int], Path]


@pytest.fixture
def engine(tiny_model_dir: Path, tmp_path: Path, make_site_adapter: MakeAdapter) -> PhiEngine:
    settings = ModelSettings(
        path=tiny_model_dir,
        device="cpu",  # the paths agree exactly in fp32; test_engine_gpu covers the graph
        transcribe=True,
        max_rationale_tokens=10,
        max_transcript_tokens=6,
        adapters_dir=tmp_path,
    )
    engine = load_engine(settings, {"default": SiteProfile(threshold=0.0)})
    engine.load_adapter("plant-a", make_site_adapter("plant-a", 7))
    return engine


def batch() -> list[EngineRequest]:
    return [
        EngineRequest("d1", "s", [photo(48, 64, 1)], None, None, "plant-a"),
        EngineRequest("d2", "s", [photo(300, 200, 2)], voice(1.5, 2), "scratch on the rim"),
        EngineRequest("d3", "s", [photo(64, 64, 3), photo(40, 90, 4)], None, None, "plant-a"),
        EngineRequest("d4", "s", [photo(48, 64, 5)], voice(1.0, 5), None),
    ]


def prefilled(engine: PhiEngine, adapters: list[str]) -> Prefilled:
    requests = batch()
    prompts = [
        verdict_prompt(SiteProfile(), len(r.images), r.audio is not None, r.note) for r in requests
    ]
    images = [image for r in requests for image in r.images]
    inputs = encode(engine.processor, prompts, images, [r.audio for r in requests], engine.device)
    return prefill(engine.model, embed(engine.model, inputs), inputs.attention_mask, adapters)


@pytest.mark.parametrize(
    "adapters",
    [["vision"] * 4, ["plant-a", "vision", "plant-a", "vision"]],
    ids=["one-adapter", "mixed-adapters"],
)
def test_static_decode_gives_the_eager_decodes_tokens(
    engine: PhiEngine, adapters: list[str]
) -> None:
    forced = [(5,), (), (7, 8), ()]

    def run(static: bool) -> list[list[int]]:
        state = prefilled(engine, adapters)
        return greedy_continue(engine.model, state, forced, 9, [10_000], pad_id=0, static=static)

    static, eager = run(True), run(False)
    assert static == eager
    assert all(len(ids) == 9 for ids in static)


def test_static_decode_releases_the_prefill_cache(engine: PhiEngine) -> None:
    state = prefilled(engine, ["vision"] * 4)
    greedy_continue(engine.model, state, [()] * 4, 3, [10_000], pad_id=0)
    assert all(not layer.is_initialized for layer in state.cache.layers)


def test_engine_results_do_not_depend_on_the_decode_path(engine: PhiEngine) -> None:
    static = engine.infer(batch())
    engine.static_decode = False
    eager = engine.infer(batch())
    for a, b in zip(static, eager, strict=True):
        assert (a.verdict, a.p_pass, a.adapter) == (b.verdict, b.p_pass, b.adapter)
        assert (a.rationale, a.transcript) == (b.rationale, b.transcript)
    assert static[0].adapter == "plant-a" and static[1].adapter == "base"
    assert static[1].transcript is not None


def test_site_adapters_load_in_the_models_dtype(
    tiny_model_dir: Path, tmp_path: Path, make_site_adapter: MakeAdapter
) -> None:
    settings = ModelSettings(
        path=tiny_model_dir, device="cpu", dtype="bfloat16", adapters_dir=tmp_path
    )
    engine = load_engine(settings, {})
    engine.load_adapter("plant-a", make_site_adapter("plant-a", 7))
    lora = {p.dtype for name, p in engine.model.named_parameters() if "lora_" in name}
    assert lora == {torch.bfloat16}
    [result] = engine.infer([EngineRequest("b1", "s", [photo(48, 64, 9)], None, None, "plant-a")])
    assert 0.0 < result.p_pass < 1.0


def test_later_batches_of_a_bucket_reuse_its_cache_and_decode_the_same_tokens(
    engine: PhiEngine,
) -> None:
    forced = [(5,), (), (7, 8), ()]
    graphs = DecodeGraphs()

    def run(state: Prefilled, pool: DecodeGraphs | None) -> list[list[int]]:
        return greedy_continue(engine.model, state, forced, 9, [10_000], pad_id=0, graphs=pool)

    first = run(prefilled(engine, ["vision"] * 4), graphs)
    assert len(graphs) == 1
    # Three rows of the same batch bucket: the cache is reused with a padding row.
    state = prefilled(engine, ["vision"] * 4)
    three = greedy_continue(
        engine.model, _rows(state, [0, 1, 2]), forced[:3], 9, [10_000], pad_id=0, graphs=graphs
    )
    assert len(graphs) == 1
    again = run(prefilled(engine, ["vision"] * 4), graphs)
    fresh = run(prefilled(engine, ["vision"] * 4), None)
    assert again == first == fresh
    assert three == first[:3]


class _Shapes(TorchDispatchMode):
    """The shape of every tensor the ops run inside it produce."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.shapes += [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


def test_static_decode_steps_read_the_cache_without_repeating_its_heads(
    engine: PhiEngine,
) -> None:
    # The tiny model has fewer key/value heads than query heads, as the full-size one does.
    config: Any = engine.model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    assert kv_heads < heads
    state = prefilled(engine, ["vision"] * 4)
    with _Shapes() as seen:
        ids = greedy_continue(engine.model, state, [()] * 4, 3, [10_000], pad_id=0)
    assert all(len(row) == 3 for row in ids)
    # A copy of the static cache with its heads repeated for every query head would be
    # [rows, heads, cache length, head dim], made in every layer of every step.
    repeated = [s for s in seen.shapes if len(s) == 4 and s[1] == heads and s[2] % CACHE_STEP == 0]
    assert repeated == []


def test_later_batches_replay_or_step_the_kept_cache_without_building_another(
    engine: PhiEngine,
) -> None:
    engine.infer(batch())
    first = engine.decode_stats()
    engine.infer(batch())
    engine.infer(batch())
    later = engine.decode_stats()
    assert first["builds"] > 0
    assert later["builds"] == first["builds"]
    # On the CPU every step is a Python forward (a GPU captures once, then replays).
    assert later["eager_steps"] > first["eager_steps"] and later["captures"] == 0


def test_loading_an_adapter_drops_the_kept_decode_graphs(
    engine: PhiEngine, make_site_adapter: MakeAdapter
) -> None:
    engine.infer(batch()[:2])
    assert len(engine.decode_graphs()) > 0
    engine.load_adapter("plant-b", make_site_adapter("plant-b", 9))
    assert len(engine.decode_graphs()) == 0


def _rows(state: Prefilled, rows: list[int]) -> Prefilled:
    """The prefill of `rows` alone, as if those requests had been the batch."""
    index = torch.tensor(rows)
    for layer in state.cache.layers:
        assert isinstance(layer, DynamicLayer)
        assert layer.keys is not None and layer.values is not None
        layer.keys, layer.values = layer.keys[index], layer.values[index]
    return Prefilled(
        logits=state.logits[index],
        cache=state.cache,
        attention_mask=state.attention_mask[index],
        positions=state.positions[index],
        forward=state.forward,
        routing=state.routing,
        adapter_names=[state.adapter_names[r] for r in rows],
    )


@pytest.mark.parametrize("boolean", [True, False])
def test_the_decode_attention_equals_sdpa_over_repeated_heads(boolean: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    batch, heads, kv_heads, length, dim = 3, 12, 4, 40, 16
    query = torch.randn(batch, heads, 1, dim, generator=gen)
    key = torch.randn(batch, kv_heads, length, dim, generator=gen)
    value = torch.randn(batch, kv_heads, length, dim, generator=gen)
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[0, ..., :7] = False  # a left-padded row
    keep[2, ..., -5:] = False  # slots not yet decoded
    mask = keep if boolean else torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    got, _ = _decode_attention(torch.nn.Module(), query, key, value, mask, scaling=0.3)
    groups = heads // kv_heads
    want = torch.nn.functional.scaled_dot_product_attention(
        query,
        key.repeat_interleave(groups, dim=1),
        value.repeat_interleave(groups, dim=1),
        attn_mask=mask,
        scale=0.3,
    ).transpose(1, 2)
    assert got.shape == (batch, 1, heads, dim)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
