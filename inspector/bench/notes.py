"""What the note/photo disagreement check costs the engine (`sites.<site>.note_disagreement`).

The check is the voice note's transcript (the speech LoRA over the served base, as
`model.transcribe` runs it) plus a rule on its words (`inspector.quality.notes`), which
costs nothing beside it. So the cost is the transcription, and where it sits in a batch:

- `off`: no check and no transcript (`note_disagreement = "off"`, `model.transcribe =
  false`): the engine as a site without the check runs it;
- `flag`: the notes are transcribed after the rationales, so the verdicts go out as early
  as with `off`; only the whole batch takes longer;
- `review`: the notes are transcribed before the verdict prompt, because a PASS that the
  note contradicts must leave as REVIEW, never be published and then changed; the verdict
  waits for the transcription;
- `one_position`: as `review`, with transcripts of one token. This is what the other
  detector the check could use costs: a second short prompt on the voice note alone,
  read at one position (the prefill over the note, no decode). Its figures are cost only.

The same batches run in each mode, each mode once untimed first (its transcription's decode
buckets and graphs are built once, as a worker's first batches build them). Random weights
never stop a transcript early: each one runs to the bound, which the report carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from inspector.engine.runtime import PhiEngine
from inspector.engine.types import EngineRequest

MODES = ("off", "flag", "review", "one_position")


def measure_note_check(
    engine: PhiEngine,
    inputs: Sequence[list[EngineRequest]],
    transcript_tokens: int,
    timed: Callable[[list[EngineRequest]], Any],
) -> dict[str, Any]:
    """Throughput and time to the verdicts in each mode, on the same batches.

    `timed(batch)` runs one batch and returns an object with `wall_s`, `verdicts_s` and
    `results` (bench/engine.py's `_Timed`).
    """
    site = inputs[0][0].site
    settings, profile = engine.settings, engine.sites[site]
    modes: dict[str, Any] = {}
    try:
        for mode in MODES:
            engine.settings = settings.model_copy(
                update={
                    "transcribe": mode != "off",
                    "max_transcript_tokens": 1 if mode == "one_position" else transcript_tokens,
                }
            )
            engine.sites[site] = profile.model_copy(
                update={"note_disagreement": "review" if mode == "one_position" else mode}
            )
            timed(inputs[0])  # untimed: this mode's transcription buckets and graphs
            runs = [timed(batch) for batch in inputs]
            walls = [r.wall_s for r in runs]
            results = [res for r in runs for res in r.results]
            modes[mode] = {
                "batch_seconds": walls,
                "verdict_seconds": [r.verdicts_s for r in runs],
                "inspections_per_s": len(results) / sum(walls),
                "transcribed_share": sum(r.transcript is not None for r in results) / len(results),
                "note_disagrees_share": sum(r.note_disagrees for r in results) / len(results),
            }
    finally:
        engine.settings, engine.sites[site] = settings, profile
    off = modes["off"]
    for mode in MODES[1:]:
        checked = modes[mode]
        checked["throughput_ratio"] = checked["inspections_per_s"] / off["inspections_per_s"]
        # How much later a batch's verdicts go out than with the check off, on average.
        checked["verdict_delay_s"] = (
            sum(checked["verdict_seconds"]) - sum(off["verdict_seconds"])
        ) / len(inputs)
    return {"transcript_tokens": transcript_tokens, "modes": modes}
