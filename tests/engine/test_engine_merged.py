"""The served base has the vision LoRA merged in; transcription runs speech minus vision.

Each is checked against the checkpoint as published, loaded with peft's own unmerged
LoRA (the vision LoRA for verdicts, the speech LoRA for transcripts), on the tiny model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoProcessor

from inspector.engine import EngineRequest
from inspector.engine.core import PhiCore
from inspector.engine.decode import activate, greedy_continue, prefill
from inspector.engine.inputs import Encoded
from inspector.engine.lora import (
    LoraFactors,
    difference_lora,
    merge_lora,
    read_lora,
)
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.engine.types import SPEECH_ADAPTER, VISION_ADAPTER
from inspector.errors import ModelLoadError
from inspector.protocol import Decision
from inspector.quality.adapters import BASE
from inspector.settings import ModelSettings, SiteProfile
from tests.engine.media import photo, voice

SITE = SiteProfile(threshold=0.0)
FP32_LOGITS = 1e-5
# bf16 keeps 8 significant bits: merged and unmerged bf16 models each round differently.
# Both are held to the same bound against the fp32 reference.
BF16_LOGITS = 3e-2
RATIONALE_TOKENS = 8
TRANSCRIPT_TOKENS = 8


def engine_on(
    model_dir: Path, registry: Path, dtype: str = "float32", transcribe: bool = False
) -> PhiEngine:
    settings = ModelSettings(
        path=model_dir,
        device="cpu",
        dtype=dtype,  # type: ignore[arg-type]
        transcribe=transcribe,
        max_rationale_tokens=RATIONALE_TOKENS,
        max_transcript_tokens=TRANSCRIPT_TOKENS,
        adapters_dir=registry,
    )
    return load_engine(settings, {"default": SITE})


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PhiEngine:
    """The served base alone: no site adapter, no transcription adapter."""
    return engine_on(tiny_model_dir, tmp_path_factory.mktemp("no-adapters"))


@pytest.fixture(scope="module")
def transcribing(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PhiEngine:
    return engine_on(tiny_model_dir, tmp_path_factory.mktemp("no-adapters"), transcribe=True)


def published(model_dir: Path, lora: str | None, dtype: torch.dtype = torch.float32) -> PhiCore:
    """The checkpoint as shipped, with `lora` attached unmerged by peft (None: no LoRA)."""
    base: Any = AutoModelForCausalLM.from_pretrained(
        str(model_dir), local_files_only=True, dtype=dtype, attn_implementation="sdpa"
    )
    base.eval()
    model = base
    if lora is not None:
        model = PeftModel.from_pretrained(
            base, str(model_dir / f"{lora}-lora"), adapter_name=lora, autocast_adapter_dtype=False
        )
        model.eval()
    processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
        str(model_dir), local_files_only=True
    )
    return PhiCore(model, processor)


@pytest.fixture(scope="module")
def with_vision(tiny_model_dir: Path) -> PhiCore:
    return published(tiny_model_dir, VISION_ADAPTER)


def inspections() -> list[EngineRequest]:
    """Joint photo and voice-note prompts, a photo alone, two photos."""
    return [
        EngineRequest("m1", "default", [photo(48, 64, 1)], voice(1.0, 1), "a scratch by the bore"),
        EngineRequest("m2", "default", [photo(200, 300, 2)]),
        EngineRequest("m3", "default", [photo(64, 64, 3), photo(40, 90, 4)], voice(0.5, 3)),
    ]


def last_logits(core: PhiCore, encoded: Encoded) -> torch.Tensor:
    with torch.inference_mode():
        out = core.forward(core.embed(encoded), encoded.attention_mask, logits_to_keep=1)
    logits: torch.Tensor = out.logits[:, -1].float()
    return logits


def served_logits(engine: PhiEngine, encoded: Encoded) -> torch.Tensor:
    """Next-token logits as the engine's prefill computes them for rows on the base."""
    with torch.inference_mode():
        state = prefill(
            engine.model,
            engine.core.embed(encoded),
            encoded.attention_mask,
            [VISION_ADAPTER] * encoded.input_ids.shape[0],
        )
    return state.logits


def decode(
    core: PhiCore,
    encoded: Encoded,
    adapter: str,
    forced: list[tuple[int, ...]],
    static: bool,
    steps: int,
) -> list[list[int]]:
    """Greedy tokens after `forced`, with no stop tokens."""
    with torch.inference_mode():
        state = prefill(
            core.model, core.embed(encoded), encoded.attention_mask, [adapter] * len(forced)
        )
        return greedy_continue(core.model, state, forced, steps, [], core.pad_id, static=static)


def text(core: PhiCore, ids: list[int]) -> str:
    """`ids` up to the first stop token, as the engine writes a rationale or a transcript."""
    stop = next((i for i, token in enumerate(ids) if token in core.stop_ids), len(ids))
    return str(core.tokenizer.decode(ids[:stop], skip_special_tokens=True)).strip()


def test_merged_base_gives_the_published_models_verdict_logits(
    engine: PhiEngine, with_vision: PhiCore, tiny_model_dir: Path
) -> None:
    batch = inspections()
    profiles = [SITE] * len(batch)
    merged = served_logits(engine, engine.core.encode(batch, profiles))
    reference = last_logits(with_vision, with_vision.encode(batch, profiles))
    assert (merged - reference).abs().max().item() < FP32_LOGITS
    # The comparison can fail: without the vision LoRA the logits are far off.
    bare = published(tiny_model_dir, None)
    assert (last_logits(bare, bare.encode(batch, profiles)) - reference).abs().max().item() > 1e-2


def test_a_request_without_a_site_adapter_runs_with_no_lora(engine: PhiEngine) -> None:
    encoded = engine.core.encode(inspections()[:1], [SITE])
    served = served_logits(engine, encoded)
    # With every LoRA layer switched off by hand, the served base gives the same logits.
    engine.model.base_model.disable_adapter_layers()
    assert torch.equal(last_logits(engine.core, encoded), served)


def test_merged_base_gives_the_published_models_verdicts_and_rationales(
    engine: PhiEngine, with_vision: PhiCore
) -> None:
    batch = inspections()
    profiles = [SITE] * len(batch)
    results = engine.infer(batch)
    reference_encoded = with_vision.encode(batch, profiles)
    p_pass = with_vision.pass_probability(last_logits(with_vision, reference_encoded))
    forced = [engine.core.verdict.spelled(Decision(r.verdict)) for r in results]
    served = decode(
        engine.core,
        engine.core.encode(batch, profiles),
        VISION_ADAPTER,
        forced,
        True,
        RATIONALE_TOKENS,
    )
    reference = decode(
        with_vision, reference_encoded, VISION_ADAPTER, forced, False, RATIONALE_TOKENS
    )
    assert served == reference
    assert all(len(ids) == RATIONALE_TOKENS for ids in served)
    for result, expected_p, ids in zip(results, p_pass, reference, strict=True):
        assert (result.adapter, result.adapter_fallback) == (BASE, False)
        assert result.p_pass == pytest.approx(expected_p, abs=1e-6)
        assert result.rationale == text(engine.core, ids)


def test_transcription_adapter_gives_the_speech_loras_logits_and_transcript(
    transcribing: PhiEngine, tiny_model_dir: Path
) -> None:
    with_speech = published(tiny_model_dir, SPEECH_ADAPTER)
    notes = [voice(1.5, 7), voice(1.0, 8)]
    served_core, encoded = transcribing.core, transcribing.core.encode_transcripts(notes)
    reference_encoded = with_speech.encode_transcripts(notes)
    activate(transcribing.model, SPEECH_ADAPTER)
    with torch.inference_mode():
        served = served_core.forward(served_core.embed(encoded), encoded.attention_mask).logits
        reference = with_speech.forward(
            with_speech.embed(reference_encoded), reference_encoded.attention_mask
        ).logits
    # Every real position of the prompt, not only the last.
    mask = encoded.attention_mask.bool()
    assert (served.float()[mask] - reference.float()[mask]).abs().max().item() < FP32_LOGITS

    none: list[tuple[int, ...]] = [()] * len(notes)
    served_ids = decode(served_core, encoded, SPEECH_ADAPTER, none, True, TRANSCRIPT_TOKENS)
    reference_ids = decode(
        with_speech, reference_encoded, SPEECH_ADAPTER, none, False, TRANSCRIPT_TOKENS
    )
    assert served_ids == reference_ids
    # The engine routes a voice note's transcription to that adapter.
    [result] = transcribing.infer([EngineRequest("t1", "default", [photo(48, 64, 9)], notes[0])])
    assert result.transcript == text(served_core, reference_ids[0])


def test_bf16_merged_base_is_as_close_to_fp32_as_the_unmerged_lora(
    tiny_model_dir: Path, with_vision: PhiCore, tmp_path: Path
) -> None:
    batch = inspections()[1:2]
    reference = last_logits(with_vision, with_vision.encode(batch, [SITE]))
    merged = engine_on(tiny_model_dir, tmp_path, dtype="bfloat16")
    unmerged = published(tiny_model_dir, VISION_ADAPTER, torch.bfloat16)
    merged_error = (served_logits(merged, merged.core.encode(batch, [SITE])) - reference).abs()
    unmerged_error = (last_logits(unmerged, unmerged.encode(batch, [SITE])) - reference).abs()
    assert merged_error.max().item() < BF16_LOGITS
    assert unmerged_error.max().item() < BF16_LOGITS


def test_difference_lora_is_exact_and_pads_modules_of_one_side() -> None:
    torch.manual_seed(0)

    def factors(rank: int, scaling: float) -> LoraFactors:
        return LoraFactors(torch.randn(rank, 6), torch.randn(5, rank), scaling)

    plus = {"shared": factors(4, 2.0), "plus-only": factors(4, 2.0)}
    minus = {"shared": factors(3, 2.0), "minus-only": factors(3, 0.5)}
    diff = difference_lora(plus, minus)
    assert {f.rank for f in diff.values()} == {7} and {f.scaling for f in diff.values()} == {1.0}
    torch.testing.assert_close(
        diff["shared"].delta(), plus["shared"].delta() - minus["shared"].delta(), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        diff["plus-only"].delta(), plus["plus-only"].delta(), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        diff["minus-only"].delta(), -minus["minus-only"].delta(), rtol=0, atol=1e-5
    )


def test_merging_a_lora_of_the_wrong_shape_is_refused(tiny_model_dir: Path) -> None:
    base: Any = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), local_files_only=True)
    vision = read_lora(tiny_model_dir / "vision-lora")
    name = next(iter(vision))
    wrong = {name: LoraFactors(vision[name].a[:, :-1], vision[name].b, 2.0)}
    with pytest.raises(ModelLoadError, match="the layer is"):
        merge_lora(base, wrong)
    with pytest.raises(ModelLoadError, match="no linear layer"):
        merge_lora(base, {"model.no_such_layer": vision[name]})
