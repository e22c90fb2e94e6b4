"""Model engine: Phi-4-multimodal verdicts from photos and voice notes.

Three layers, as in anomalib's split of network and glue:

- policy (torch-free): `prompt` (prompt text), `policy` (adapter choice, decision from
  P(PASS) and the site threshold, defects, results), `shapes` (batching buckets);
- model core (torch, shared with training, gradients allowed): `checkpoint` (loading),
  `inputs` (tokens and media embedding), `lora` (the LoRA spec, the vision LoRA merged
  into the served base, the transcription adapter), `verdict` (verdict
  tokens), `core` (`PhiCore`: requests → embeddings → logits at the verdict position);
- runtime (torch, inference only): `runtime` (`PhiEngine`), `decode` (batched prefill and
  decode, static KV cache, CUDA graphs), `adapters` (site adapters between batches),
  `quantize` (FP8 linear layers of the served base, `model.quantization`).

This package's top level imports no torch; `load_engine` pulls in the runtime on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from inspector.engine.prompt import PROMPT_VERSION
from inspector.engine.shapes import CROP, Bucket, shape_bucket
from inspector.engine.types import (
    SPEECH_ADAPTER,
    VISION_ADAPTER,
    EngineFailed,
    EngineRequest,
    EngineResult,
    InferenceEngine,
)

if TYPE_CHECKING:
    from inspector.settings import ModelSettings, SiteProfile

__all__ = [
    "CROP",
    "PROMPT_VERSION",
    "SPEECH_ADAPTER",
    "VISION_ADAPTER",
    "Bucket",
    "EngineFailed",
    "EngineRequest",
    "EngineResult",
    "InferenceEngine",
    "load_engine",
    "shape_bucket",
]


def load_engine(model: ModelSettings, sites: Mapping[str, SiteProfile]) -> InferenceEngine:
    """Load the model directory named in `model` and return a ready engine (imports torch)."""
    from inspector.engine.runtime import load_engine as _load

    return _load(model, sites)
