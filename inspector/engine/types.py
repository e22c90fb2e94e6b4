"""The engine's interface: requests, results and the protocol the worker codes against.

Imports no torch, so the worker, benchmarks and tests can type against it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from inspector.engine.shapes import Bucket
from inspector.errors import EngineFailed as EngineFailed
from inspector.protocol import Judgement
from inspector.quality import BASE, AdapterRef

# Adapter names of the checkpoint's own LoRAs; site adapters may not reuse them. The vision
# LoRA is merged into the served base (named BASE in results and everywhere else); the
# runtime still knows rows on the base by it. "speech" is the transcription adapter (the
# speech LoRA minus the vision LoRA).
VISION_ADAPTER = "vision"
SPEECH_ADAPTER = "speech"
RESERVED_ADAPTERS = frozenset({BASE, VISION_ADAPTER, SPEECH_ADAPTER})


@dataclass(frozen=True)
class EngineRequest:
    """One inspection as the engine sees it: decoded media plus the operator's note."""

    request_id: str
    site: str
    images: Sequence[NDArray[np.uint8]]  # RGB, H×W×3
    audio: NDArray[np.float32] | None = None  # mono, 16 kHz
    note: str | None = None
    adapter: str | None = None  # requested adapter name, or None for the site default
    # A second row of a live request, judged by its site's shadow adapter: no rationale,
    # no transcript, and the worker keeps it away from everything it publishes.
    shadow: bool = False
    # Whether the verdict may get a rationale (as the site's policy says). False: judged by
    # its verdict alone, as a golden part the canary sends, whose rationale nobody reads.
    explain: bool = True


class EngineResult(Judgement):
    """The verdict on one request (the judgement's fields), plus how it was computed."""

    request_id: str
    prompt_tokens: int = 0  # after the photo and voice placeholders are expanded
    rationale_tokens: int = 0
    # Host-side milliseconds of the whole batch this request ran in, by stage: encode
    # (preprocessing and the vision/audio towers), prefill, decode, transcribe.
    timings_ms: dict[str, float] = Field(default_factory=dict)


# Called by `infer` with the verdicts of a batch as soon as its prefill gives P(PASS),
# before the rationales are decoded (see InferenceEngine.infer).
VerdictCallback = Callable[[list[EngineResult]], None]


class InferenceEngine(Protocol):
    """What a worker needs from a model engine."""

    model_name: str

    def shape_bucket(self, sizes: Sequence[tuple[int, int]]) -> Bucket:
        """The batching bucket of a request's (width, height) photos: equal buckets batch best."""
        ...

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        """Verdicts for `batch`, in the same order, with their rationales; raises on failure.

        With `on_verdicts`, an engine that decodes rationales after the verdicts may call
        it once per request first, with the verdict alone (rationale_state pending when a
        rationale or transcript follows, skipped when none does); the results returned are
        then the final ones. A failure after that call marks the rationales of the verdicts
        it announced not_produced instead of raising. An engine may also never call it.
        """
        ...

    def adapters(self) -> list[str]:
        """Names of the adapters loaded now."""
        ...

    def load_adapter(self, name: str, path: str) -> None:
        """Attach (or replace) an adapter that requests name, from a peft adapter directory."""
        ...

    def unload_adapter(self, name: str) -> None:
        """Forget an adapter attached by name; requests naming it fall back to their site's."""
        ...

    def load_site_adapter(self, site: str, adapter: AdapterRef, path: str) -> None:
        """Serve registry version `adapter` for `site` between batches, sha256 checked.

        Raises AdapterRefused (adapter.checksum_mismatch, adapter.load_failed) and leaves the
        site on what it served before.
        """
        ...

    def clear_site_adapter(self, site: str) -> None:
        """`site` runs with no site adapter from the next batch on."""
        ...

    def site_adapters(self) -> dict[str, AdapterRef]:
        """The adapter version each site serves, by site."""
        ...


@runtime_checkable
class ShadowEngine(Protocol):
    """An engine that can also judge rows with a site's shadow adapter (`shadow` requests)."""

    def load_shadow_adapter(self, site: str, adapter: AdapterRef, path: str) -> None:
        """Judge `site`'s shadow rows with registry version `adapter`, sha256 checked.

        Raises AdapterRefused like load_site_adapter; the site's previous shadow stays.
        """
        ...

    def clear_shadow_adapter(self, site: str) -> None:
        """`site` has no shadow adapter from the next batch on."""
        ...

    def shadow_adapters(self) -> dict[str, AdapterRef]:
        """The shadow adapter version of each site, by site."""
        ...
