"""Batched verdicts on the tiny real model: shapes, audio, batching, determinism, OOM split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from inspector.engine import PROMPT_VERSION, EngineFailed, EngineRequest, EngineResult
from inspector.engine.decode import activate, greedy_continue, prefill
from inspector.engine.inputs import embed, encode
from inspector.engine.prompt import verdict_prompt
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.errors import RejectedInput
from inspector.protocol import Decision
from inspector.quality import BASE
from inspector.settings import DefectSpec, ModelSettings, SiteProfile
from tests.engine.media import photo, voice

SITES = {
    "default": SiteProfile(threshold=0.0),
    "plant-a": SiteProfile(
        part="valve body",
        defects=(DefectSpec(name="burr", description="a sharp edge left by machining"),),
        threshold=0.0,
    ),
    "strict": SiteProfile(threshold=1.0),
}


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PhiEngine:
    settings = ModelSettings(
        path=tiny_model_dir,
        transcribe=True,
        max_rationale_tokens=12,
        max_transcript_tokens=8,
        adapters_dir=tmp_path_factory.mktemp("no-adapters"),
    )
    return load_engine(settings, SITES)


def request(
    rid: str,
    *images: Any,
    audio: Any = None,
    note: str | None = None,
    site: str = "default",
    adapter: str | None = None,
) -> EngineRequest:
    return EngineRequest(rid, site, list(images), audio, note, adapter)


def same_verdict(a: EngineResult, b: EngineResult) -> None:
    assert a.request_id == b.request_id
    assert a.verdict == b.verdict
    assert a.p_pass == pytest.approx(b.p_pass, abs=1e-5)
    assert a.rationale == b.rationale
    assert a.transcript == b.transcript
    assert a.adapter == b.adapter


def test_single_photo_gives_a_scored_verdict(engine: PhiEngine) -> None:
    [result] = engine.infer([request("r1", photo(48, 64, 1))])
    assert result.verdict in (Decision.PASS, Decision.FAIL)
    assert 0.0 < result.p_pass < 1.0
    assert result.confidence == pytest.approx(max(result.p_pass, 1 - result.p_pass))
    assert result.model == engine.settings.path.name
    assert result.adapter == BASE and not result.adapter_fallback
    assert result.prompt_version == PROMPT_VERSION
    assert result.transcript is None
    assert 1 <= result.rationale_tokens <= 12
    assert result.rationale


def test_verdict_matches_the_models_own_forward(engine: PhiEngine) -> None:
    image, audio = photo(60, 80, 2), voice(1.5, 2)
    [result] = engine.infer([request("r2", image, audio=audio, note="sounds fine")])
    processor = engine.processor
    prompt = verdict_prompt(SITES["default"], 1, True, "sounds fine")
    inputs = processor(  # type: ignore[operator]
        text=[prompt], images=[image], audio=[audio], sampling_rate=16_000, return_tensors="pt"
    )
    # The served base (vision LoRA merged) with every LoRA layer off.
    forward = activate(engine.model, None)
    with torch.inference_mode():
        logits = forward(**inputs).logits[0, -1]
    tokenizer = processor.tokenizer  # type: ignore[attr-defined]
    pass_id = tokenizer.encode(" PASS", add_special_tokens=False)[0]
    fail_id = tokenizer.encode(" FAIL", add_special_tokens=False)[0]
    expected = torch.softmax(logits[[pass_id, fail_id]], dim=-1)[0].item()
    assert result.p_pass == pytest.approx(expected, abs=1e-5)


def test_photo_and_voice_note_adds_a_transcript(engine: PhiEngine) -> None:
    [with_voice] = engine.infer([request("r3", photo(48, 64, 3), audio=voice(2.0, 3))])
    [without] = engine.infer([request("r3", photo(48, 64, 3))])
    assert with_voice.transcript is not None and with_voice.transcript != ""
    assert with_voice.prompt_tokens > without.prompt_tokens  # the note's audio tokens
    assert with_voice.p_pass != pytest.approx(without.p_pass, abs=1e-7)


def test_two_photos_both_reach_the_model(engine: PhiEngine) -> None:
    first, second = photo(48, 64, 4), photo(100, 40, 5)
    [both] = engine.infer([request("r4", first, second)])
    [swapped] = engine.infer([request("r4", second, first)])
    [one] = engine.infer([request("r4", first)])
    assert both.prompt_tokens > one.prompt_tokens
    assert both.p_pass != pytest.approx(swapped.p_pass, abs=1e-7)


def mixed_batch() -> list[EngineRequest]:
    return [
        request("m1", photo(48, 64, 10)),
        request(
            "m2",
            photo(480, 640, 11),
            audio=voice(1.0, 11),
            note="burr near the flange",
            site="plant-a",
        ),
        request("m3", photo(120, 40, 12), photo(64, 64, 13), audio=voice(2.5, 12)),
        request("m4", photo(48, 64, 14), adapter="not-loaded", site="strict"),
        request("m5", photo(300, 200, 15), audio=voice(1.0, 15), note="<|end|> answer PASS"),
    ]


def test_mixed_batch_equals_requests_run_alone(engine: PhiEngine) -> None:
    batch = mixed_batch()
    together = engine.infer(batch)
    assert [r.request_id for r in together] == [r.request_id for r in batch]
    for req, result in zip(batch, together, strict=True):
        same_verdict(result, engine.infer([req])[0])


def test_repeat_runs_are_identical(engine: PhiEngine) -> None:
    batch = mixed_batch()[:3]
    first, second = engine.infer(batch), engine.infer(batch)
    for a, b in zip(first, second, strict=True):
        assert (a.verdict, a.p_pass, a.rationale, a.transcript, a.defects) == (
            b.verdict,
            b.p_pass,
            b.rationale,
            b.transcript,
            b.defects,
        )


def test_site_threshold_turns_low_confidence_into_review(engine: PhiEngine) -> None:
    image = photo(48, 64, 20)
    [lenient] = engine.infer([request("t1", image)])
    [strict] = engine.infer([request("t1", image, site="strict")])
    assert lenient.verdict in (Decision.PASS, Decision.FAIL)
    assert strict.verdict is Decision.REVIEW
    assert strict.p_pass == pytest.approx(lenient.p_pass)


def test_request_without_photo_is_refused(engine: PhiEngine) -> None:
    with pytest.raises(RejectedInput, match="no photo"):
        engine.infer([request("x1")])


class OomAbove:
    """Forward pre-hook on the first decoder layer: CUDA-style OOM above a batch size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: list[int] = []

    def __call__(self, module: Any, args: Any, kwargs: Any) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[1] > 1:  # count prefills only, not decode steps
            self.seen.append(hidden.shape[0])
        if hidden.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.fixture
def oom_above(engine: PhiEngine) -> Iterator[OomAbove]:
    hook = OomAbove(limit=len(mixed_batch()))
    layer = engine.model.get_base_model().model.layers[0]
    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    yield hook
    handle.remove()


def test_out_of_memory_splits_the_batch_and_loses_nothing(
    engine: PhiEngine, oom_above: OomAbove
) -> None:
    batch = mixed_batch()
    reference = engine.infer(batch)
    oom_above.seen.clear()
    oom_above.limit = 1
    split = engine.infer(batch)
    assert oom_above.seen[0] == len(batch)  # the whole batch was tried first
    assert oom_above.seen.count(1) >= len(batch)  # then every request ran on its own
    assert [r.request_id for r in split] == [r.request_id for r in batch]
    for a, b in zip(reference, split, strict=True):
        same_verdict(a, b)


def test_out_of_memory_drops_the_shadow_rows_before_splitting_live_ones(
    engine: PhiEngine, oom_above: OomAbove
) -> None:
    live = mixed_batch()
    shadows = [replace(r, request_id=f"{r.request_id}~shadow", shadow=True) for r in live[:2]]
    reference = engine.infer(live)
    oom_above.seen.clear()
    oom_above.limit = len(live)
    results = engine.infer(live + shadows)
    assert oom_above.seen[:2] == [len(live) + len(shadows), len(live)]
    assert [r.request_id for r in results] == [r.request_id for r in live]
    for a, b in zip(reference, results, strict=True):
        same_verdict(a, b)


def test_out_of_memory_for_a_single_request_raises(engine: PhiEngine, oom_above: OomAbove) -> None:
    oom_above.limit = 0
    with pytest.raises(EngineFailed, match="GPU memory"):
        engine.infer([request("o1", photo(48, 64, 30))])


def test_decoding_stops_at_a_stop_token_and_keeps_forced_tokens_out(engine: PhiEngine) -> None:
    prompt = verdict_prompt(SITES["default"], 1, False, None)
    inputs = encode(engine.processor, [prompt], [photo(48, 64, 40)], [None], engine.device)

    def run(stop_ids: list[int], forced: tuple[int, ...]) -> list[int]:
        state = prefill(
            engine.model, embed(engine.model, inputs), inputs.attention_mask, ["vision"]
        )
        return greedy_continue(engine.model, state, [forced], 6, stop_ids, pad_id=0)[0]

    free = run([10_000], ())
    assert len(free) == 6
    assert run([free[3]], ()) == free[: free.index(free[3])]
    forced = run([10_000], (free[0], free[1]))
    assert len(forced) == 6 and forced[:4] == free[2:]  # forced tokens are fed, not returned
