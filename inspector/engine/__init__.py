"""Model engine: Phi-4-multimodal verdicts from photos and voice notes.

This package's top level imports no torch; `load_engine` pulls in the runtime on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from inspector.engine.prompt import PROMPT_VERSION
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
    "PROMPT_VERSION",
    "SPEECH_ADAPTER",
    "VISION_ADAPTER",
    "EngineFailed",
    "EngineRequest",
    "EngineResult",
    "InferenceEngine",
    "load_engine",
]


def load_engine(model: ModelSettings, sites: Mapping[str, SiteProfile]) -> InferenceEngine:
    """Load the model directory named in `model` and return a ready engine (imports torch)."""
    from inspector.engine.engine import load_engine as _load

    return _load(model, sites)
