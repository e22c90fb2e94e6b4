"""Verdict first on the tiny real model: verdicts handed over before the rationales, and the
site's rationale policy deciding which verdicts are decoded at all."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from inspector.engine import EngineFailed, EngineRequest, EngineResult
from inspector.engine.policy import wants_rationale
from inspector.engine.runtime import PhiEngine, load_engine
from inspector.engine.tiny import build_tiny_model
from inspector.protocol import Decision, RationaleState
from inspector.quality import decide
from inspector.settings import ModelSettings, SiteProfile
from tests.engine.media import photo, voice

# The tiny model built from this seed leans PASS on these photos with P(PASS) spread over
# about 0.53-0.62: a threshold inside that spread gives PASS and REVIEW verdicts in one batch.
PASS_LEANING_SEED = 4


@pytest.fixture(scope="module")
def leaning_pass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("pass-leaning"), seed=PASS_LEANING_SEED)


def _engine(model: Path, site: SiteProfile, transcribe: bool = False) -> PhiEngine:
    settings = ModelSettings(
        path=model, device="cpu", max_rationale_tokens=6, transcribe=transcribe
    )
    return load_engine(settings, {"line": site})


def _batch() -> list[EngineRequest]:
    return [
        EngineRequest(f"r{i}", "line", [photo(48 + 8 * (i % 5), 64, i)], None, "checked")
        for i in range(10)
    ]


def _split(p_pass: list[float]) -> float:
    """A threshold between two neighbouring confidences, so some verdicts are REVIEW."""
    ordered = sorted(set(p_pass))
    assert len(ordered) >= 4, "the photos should not all score alike"
    middle = len(ordered) // 2
    return (ordered[middle - 1] + ordered[middle]) / 2


def test_the_rationale_policy_is_all_or_fail_and_review() -> None:
    every, failing = SiteProfile(rationale="all"), SiteProfile(rationale="fail_and_review")
    for p_pass in (0.95, 0.6, 0.1):
        assert wants_rationale(every, decide(p_pass, 0.7))
    assert not wants_rationale(failing, decide(0.95, 0.7))  # PASS
    assert wants_rationale(failing, decide(0.6, 0.7))  # REVIEW
    assert wants_rationale(failing, decide(0.1, 0.7))  # FAIL


def test_verdicts_are_handed_over_before_their_rationales_and_match_the_final_results(
    leaning_pass: Path,
) -> None:
    engine = _engine(leaning_pass, SiteProfile(threshold=0.0))
    announced: list[list[EngineResult]] = []
    final = engine.infer(_batch(), announced.append)
    assert len(announced) == 1, "one announcement per batch"
    (early,) = announced
    assert [r.request_id for r in early] == [r.request_id for r in final]
    for first, last in zip(early, final, strict=True):
        assert first.rationale_state is RationaleState.PENDING and first.rationale == ""
        assert last.rationale_state is RationaleState.PRODUCED and last.rationale
        assert (first.verdict, first.p_pass, first.adapter) == (
            last.verdict,
            last.p_pass,
            last.adapter,
        )
        assert set(first.timings_ms) == {"encode", "prefill"}
    # Without a callback the same batch gives the same final results.
    again = engine.infer(_batch())
    assert [(r.verdict, r.rationale) for r in again] == [(r.verdict, r.rationale) for r in final]


def test_fail_and_review_policy_decodes_only_the_verdicts_that_are_not_pass(
    leaning_pass: Path,
) -> None:
    everything = _engine(leaning_pass, SiteProfile(threshold=0.0)).infer(_batch())
    threshold = _split([r.p_pass for r in everything])
    engine = _engine(leaning_pass, SiteProfile(threshold=threshold, rationale="fail_and_review"))
    announced: list[list[EngineResult]] = []
    results = engine.infer(_batch(), announced.append)
    verdicts = {r.verdict for r in results}
    assert verdicts == {Decision.PASS, Decision.REVIEW}
    for early, result, reference in zip(announced[0], results, everything, strict=True):
        if result.verdict is Decision.PASS:
            # Final at once: nothing follows, nothing was decoded.
            assert early.rationale_state is RationaleState.SKIPPED
            assert result.rationale_state is RationaleState.SKIPPED
            assert result.rationale == "" and result.rationale_tokens == 0
        else:
            assert early.rationale_state is RationaleState.PENDING
            assert result.rationale_state is RationaleState.PRODUCED
            # Decoding only some rows of the batch gives those rows' rationale unchanged.
            assert result.rationale == reference.rationale


def test_a_skipped_rationale_still_follows_when_the_voice_note_is_transcribed(
    leaning_pass: Path,
) -> None:
    engine = _engine(
        leaning_pass, SiteProfile(threshold=0.0, rationale="fail_and_review"), transcribe=True
    )
    batch = [
        EngineRequest("spoken", "line", [photo(48, 64, 1)], voice(1.0, 2), None),
        EngineRequest("silent", "line", [photo(48, 64, 2)], None, "checked"),
    ]
    announced: list[list[EngineResult]] = []
    spoken, silent = engine.infer(batch, announced.append)
    assert {r.verdict for r in (spoken, silent)} == {Decision.PASS}
    early = {r.request_id: r.rationale_state for r in announced[0]}
    assert early == {"spoken": RationaleState.PENDING, "silent": RationaleState.SKIPPED}
    assert spoken.rationale_state is RationaleState.SKIPPED and spoken.transcript is not None
    assert spoken.rationale == "" and silent.transcript is None


def test_a_failed_decode_after_the_verdicts_marks_their_rationales_not_produced(
    leaning_pass: Path,
) -> None:
    engine = _engine(leaning_pass, SiteProfile(threshold=0.0))

    def fault_in_decode(module: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if isinstance(hidden, torch.Tensor) and hidden.shape[1] == 1:  # a decode step
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    layer = engine.model.get_base_model().model.layers[0]
    handle = layer.register_forward_pre_hook(fault_in_decode, with_kwargs=True)
    announced: list[list[EngineResult]] = []
    try:
        results = engine.infer(_batch()[:3], announced.append)
        # Nobody was told a verdict: the failure is raised (and split) as before.
        with pytest.raises(EngineFailed):
            engine.infer(_batch()[:3])
    finally:
        handle.remove()
    assert [r.rationale_state for r in announced[0]] == [RationaleState.PENDING] * 3
    assert [r.rationale_state for r in results] == [RationaleState.NOT_PRODUCED] * 3
    assert [r.verdict for r in results] == [r.verdict for r in announced[0]]
    # The engine serves the next batch as before.
    assert all(r.rationale for r in engine.infer(_batch()[:2]))


def test_a_shadow_row_hears_its_live_rows_voice_note_transcribed_once(leaning_pass: Path) -> None:
    engine = _engine(leaning_pass, SiteProfile(threshold=0.0), transcribe=True)
    note = voice(1.0, 5)
    live = EngineRequest("heard", "line", [photo(48, 64, 3)], note, None)
    twin = replace(live, request_id="heard~shadow", shadow=True)  # the same recording
    alone, _ = engine.infer([live, EngineRequest("quiet", "line", [photo(48, 64, 4)])])
    first, second = engine.infer([live, twin])
    assert first.transcript is not None and first.transcript == alone.transcript
    assert second.transcript == first.transcript


def test_a_request_that_wants_no_rationale_gets_its_verdict_alone_beside_explained_rows(
    leaning_pass: Path,
) -> None:
    # A golden part the canary sends is compared by its verdict: no decode is spent on it,
    # while the live rows of the same batch are explained as before.
    engine = _engine(leaning_pass, SiteProfile(threshold=0.0))
    batch = _batch()
    batch[3] = replace(batch[3], explain=False)
    announced: list[list[EngineResult]] = []
    final = engine.infer(batch, announced.append)
    (early,) = announced
    assert early[3].rationale_state is RationaleState.SKIPPED
    assert final[3].rationale_state is RationaleState.SKIPPED and final[3].rationale == ""
    assert final[3].rationale_tokens == 0
    others = [r for i, r in enumerate(final) if i != 3]
    assert all(r.rationale_state is RationaleState.PRODUCED and r.rationale for r in others)
    # Its verdict is the one it gets when explained.
    (alone,) = engine.infer([batch[3]])
    assert (final[3].verdict, final[3].p_pass) == (alone.verdict, pytest.approx(alone.p_pass))
