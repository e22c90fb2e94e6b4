"""The Phi-4-multimodal engine: batched joint image+audio verdicts with per-row adapters."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from peft import PeftModel
from transformers import ProcessorMixin

from inspector.engine.adapters import AdapterSet
from inspector.engine.checkpoint import load_checkpoint, resolve_runtime
from inspector.engine.compiled import compile_blocks
from inspector.engine.decode import DecodeGraphs, greedy_continue, prefill
from inspector.engine.inputs import embed, encode
from inspector.engine.prompt import (
    END,
    PROMPT_VERSION,
    find_defects,
    transcript_prompt,
    verdict_prompt,
)
from inspector.engine.types import SPEECH_ADAPTER, EngineFailed, EngineRequest, EngineResult
from inspector.engine.verdict import decide, pass_probability, verdict_tokens
from inspector.errors import Code, RejectedInput
from inspector.protocol import Decision
from inspector.settings import ModelSettings, SiteProfile

log = logging.getLogger(__name__)


class PhiEngine:
    """Runs batches of inspections through one Phi4Multimodal model with LoRA adapters."""

    def __init__(
        self,
        model: PeftModel,
        processor: ProcessorMixin,
        settings: ModelSettings,
        sites: Mapping[str, SiteProfile],
        model_name: str | None = None,
        static_decode: bool = True,
    ) -> None:
        self.model = model
        self.processor = processor
        self.settings = settings
        self.sites = dict(sites)
        self.model_name = model_name or settings.path.name
        # Decode from a static KV cache, as a CUDA graph on a GPU (see decode.py); off runs
        # one eager forward per token, the slower path kept for comparison.
        self.static_decode = static_decode
        self.device = next(model.parameters()).device
        tokenizer = processor.tokenizer
        self._tokenizer = tokenizer
        self._verdict = verdict_tokens(tokenizer)
        self._image_token: str = processor.image_token  # type: ignore[attr-defined]
        self._audio_token: str = processor.audio_token  # type: ignore[attr-defined]
        eos = model.config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        stops.update({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END)})
        self._stop_ids = sorted(s for s in stops if isinstance(s, int) and s >= 0)
        pad = tokenizer.pad_token_id
        self._pad_id: int = pad if pad is not None else self._stop_ids[0]
        self._adapters = AdapterSet(model, settings.adapters_dir)
        if settings.compile and self.device.type == "cuda":
            compile_blocks(model)
        # Static caches and decode graphs reused across batches (see decode.DecodeGraphs).
        self._graphs = DecodeGraphs()
        self._graphs_generation = self._adapters.generation

    # --- adapters --------------------------------------------------------------------

    def adapters(self) -> list[str]:
        """Every adapter attached now (vision, speech when transcribing, site adapters)."""
        return self._adapters.names()

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Attach or replace a site adapter; call between batches."""
        self._adapters.load(name, Path(path))

    def unload_adapter(self, name: str) -> None:
        """Detach a site adapter; call between batches."""
        self._adapters.unload(name)

    def refresh_adapters(self) -> list[str]:
        """Resync site adapters with `adapters_dir`; call between batches."""
        return self._adapters.refresh()

    # --- inference -------------------------------------------------------------------

    def infer(self, batch: Sequence[EngineRequest]) -> list[EngineResult]:
        """Verdicts for `batch` in order; halves the batch and retries on GPU out-of-memory."""
        for request in batch:
            if not request.images:
                raise RejectedInput(
                    Code.PAYLOAD_INVALID, f"request {request.request_id} has no photo to inspect"
                )
        return self._infer_splitting(list(batch))

    def _infer_splitting(self, batch: list[EngineRequest]) -> list[EngineResult]:
        try:
            return self._run(batch)
        except torch.OutOfMemoryError as exc:
            if len(batch) == 1:
                raise EngineFailed(
                    f"request {batch[0].request_id} does not fit in GPU memory even alone: {exc}"
                ) from exc
        # Retry outside the except block so the failed attempt's tensors can be freed.
        self._release_memory()
        half = len(batch) // 2
        log.warning(
            "out of GPU memory at batch %d; retrying as %d + %d",
            len(batch),
            half,
            len(batch) - half,
        )
        return self._infer_splitting(batch[:half]) + self._infer_splitting(batch[half:])

    def _release_memory(self) -> None:
        self._graphs.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _profile(self, site: str) -> SiteProfile:
        # The same lookup as Settings.site: the engine holds only the sites mapping.
        return self.sites.get(site) or self.sites.get("default") or SiteProfile()

    def _decode_graphs(self) -> DecodeGraphs:
        """The reusable decode graphs, emptied first if an adapter changed since."""
        if self._graphs_generation != self._adapters.generation:
            self._graphs.clear()
            self._graphs_generation = self._adapters.generation
        return self._graphs

    def _run(self, batch: list[EngineRequest]) -> list[EngineResult]:
        started = time.perf_counter()
        profiles = [self._profile(r.site) for r in batch]
        routes = [
            self._adapters.route(r.adapter or p.adapter)
            for r, p in zip(batch, profiles, strict=True)
        ]
        prompts = [
            verdict_prompt(
                p, len(r.images), r.audio is not None, r.note, self._image_token, self._audio_token
            )
            for r, p in zip(batch, profiles, strict=True)
        ]
        images = [image for r in batch for image in r.images]
        inputs = encode(self.processor, prompts, images, [r.audio for r in batch], self.device)
        prompt_tokens = inputs.attention_mask.sum(dim=1).tolist()
        embeds = embed(self.model, inputs)
        encoded = time.perf_counter()

        state = prefill(
            self.model, embeds, inputs.attention_mask, [route.adapter for route in routes]
        )
        del inputs, embeds
        scores = [
            decide(p_pass, profile.threshold)
            for p_pass, profile in zip(
                pass_probability(state.logits, self._verdict), profiles, strict=True
            )
        ]
        prefilled = time.perf_counter()
        forced = [self._verdict.spelled(s.leaning) for s in scores]
        rationale_ids = greedy_continue(
            self.model,
            state,
            forced,
            self.settings.max_rationale_tokens,
            self._stop_ids,
            self._pad_id,
            static=self.static_decode,
            graphs=self._decode_graphs(),
        )
        del state
        rationales = self._tokenizer.batch_decode(rationale_ids, skip_special_tokens=True)
        decoded = time.perf_counter()
        transcripts = self._transcribe(batch) if self.settings.transcribe else [None] * len(batch)
        finished = time.perf_counter()

        timings = {
            "encode": (encoded - started) * 1e3,
            "prefill": (prefilled - encoded) * 1e3,
            "decode": (decoded - prefilled) * 1e3,
            "transcribe": (finished - decoded) * 1e3,
        }
        results = []
        for i, request in enumerate(batch):
            score, profile, rationale = scores[i], profiles[i], rationales[i].strip()
            defects = (
                find_defects(rationale, profile.defects) if score.leaning is Decision.FAIL else []
            )
            results.append(
                EngineResult(
                    request_id=request.request_id,
                    verdict=score.decision,
                    confidence=score.confidence,
                    p_pass=score.p_pass,
                    rationale=rationale,
                    transcript=transcripts[i],
                    defects=defects,
                    model=self.model_name,
                    adapter=routes[i].adapter,
                    adapter_fallback=routes[i].fallback,
                    prompt_version=PROMPT_VERSION,
                    prompt_tokens=int(prompt_tokens[i]),
                    rationale_tokens=len(rationale_ids[i]),
                    timings_ms=dict(timings),
                )
            )
        return results

    def _transcribe(self, batch: list[EngineRequest]) -> list[str | None]:
        """Transcripts of the voice notes (speech LoRA, speech projection), None without one."""
        rows = [i for i, r in enumerate(batch) if r.audio is not None]
        out: list[str | None] = [None] * len(batch)
        if not rows:
            return out
        prompt = transcript_prompt(self._audio_token)
        inputs = encode(
            self.processor, [prompt] * len(rows), [], [batch[i].audio for i in rows], self.device
        )
        state = prefill(
            self.model,
            embed(self.model, inputs),
            inputs.attention_mask,
            [SPEECH_ADAPTER] * len(rows),
        )
        ids = greedy_continue(
            self.model,
            state,
            [()] * len(rows),
            self.settings.max_transcript_tokens,
            self._stop_ids,
            self._pad_id,
            static=self.static_decode,
            graphs=self._decode_graphs(),
        )
        for row, text in zip(
            rows, self._tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True
        ):
            out[row] = text.strip()
        return out


def load_engine(model: ModelSettings, sites: Mapping[str, SiteProfile]) -> PhiEngine:
    """Load `model.path` onto its device, attach its LoRAs and the registry's site adapters."""
    runtime = resolve_runtime(model)
    peft_model, processor = load_checkpoint(model, runtime)
    engine = PhiEngine(peft_model, processor, model, sites)
    engine.refresh_adapters()
    log.info(
        "loaded %s on %s (%s, %s); adapters %s",
        model.path,
        runtime.device,
        runtime.dtype,
        runtime.attn_implementation,
        engine.adapters(),
    )
    return engine
