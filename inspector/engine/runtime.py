"""The runtime: batches of inspections through the model core, verdicts by the policy.

The model is the served base (the vision LoRA merged into its weights) with LoRA
adapters on top: rows routed to the vision LoRA run with none, rows of a site run with
its adapter, and transcription runs with the speech LoRA minus the vision LoRA.
One batch is one prefill over left-padded prompts (each row with its adapter), the
verdict from its last logits — handed to the caller at once when it asks (verdict first) —
then a bounded greedy rationale, for the rows the site's rationale policy chooses, decoded
from a static KV cache (a CUDA graph on a GPU; see decode.py). All of it runs under
inference mode; the model core and the policy it calls are the ones training uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from peft import PeftModel
from transformers import ProcessorMixin

from inspector.engine import policy
from inspector.engine.adapters import AdapterSet, SiteAdapter
from inspector.engine.checkpoint import load_checkpoint, resolve_runtime
from inspector.engine.compiled import compile_blocks, first_compiled_run, uncompile
from inspector.engine.core import PhiCore
from inspector.engine.decode import DecodeGraphs, greedy_continue, prefill
from inspector.engine.quantize import apply_quantization, check_quantization
from inspector.engine.shapes import Bucket, shape_bucket
from inspector.engine.types import (
    SPEECH_ADAPTER,
    VISION_ADAPTER,
    EngineFailed,
    EngineRequest,
    EngineResult,
    VerdictCallback,
)
from inspector.errors import Code, RejectedInput
from inspector.protocol import RationaleState
from inspector.quality import AdapterRef, Decided, decide
from inspector.quality.notes import NoteCheck
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
        self.core = PhiCore(model, processor)
        self.model = model
        self.processor = processor
        self.settings = settings
        self.sites = dict(sites)
        self.model_name = model_name or settings.path.name
        # Decode from a static KV cache, as a CUDA graph on a GPU (see decode.py); off runs
        # one eager forward per token, the slower path kept for comparison.
        self.static_decode = static_decode
        self.device = self.core.device
        # The site's rationale policy; `bench engine --pass-share` replaces it with a drawn
        # mix, since random weights lean at random.
        self.wants_rationale: Callable[[SiteProfile, Decided], bool] = policy.wants_rationale
        self._adapters = AdapterSet(model)
        # Held for a whole batch and for every adapter change: a change waits for the batch
        # in flight, which finishes on the adapters it started with.
        self._batch_lock = threading.Lock()
        # Before compiling: the compiled blocks then fuse the float8 activation quantisation.
        self.quantized_layers = apply_quantization(model, settings.quantization, self.device)
        # Whether the repeated blocks run compiled (False: eagerly, set or fallen back to).
        self.compiled = settings.compile and self.device.type == "cuda"
        if self.compiled:
            blocks = compile_blocks(model)
            # Float8 layers are compiled before any batch, so that a torch/torchao pair
            # that cannot compile them falls back to eager layers here, not in a batch.
            if self.quantized_layers:
                log.info(
                    "compiling the float8 blocks before serving (minutes on a first start; "
                    "torch's compile cache makes later starts shorter)"
                )
                problem = first_compiled_run(model)
                if problem is not None:
                    uncompile(blocks)
                    self.compiled = False
                    log.warning(
                        "the float8 layers cannot be compiled here (%s); serving them "
                        "uncompiled, which is slower than bf16 compiled: set "
                        "model.quantization = 'none' unless `inspector bench engine "
                        "--quantization none --quantization fp8` says otherwise",
                        problem,
                    )
        # Static caches and decode graphs reused across batches (see decode.DecodeGraphs).
        self._graphs = DecodeGraphs()
        self._graphs_generation = self._adapters.generation

    def shape_bucket(self, sizes: Sequence[tuple[int, int]]) -> Bucket:
        """The crop grid of each (width, height) photo under this checkpoint's processor."""
        return shape_bucket(sizes, self.core.crop)

    # --- adapters --------------------------------------------------------------------

    def adapters(self) -> list[str]:
        """The adapters served now: vision (merged into the base), speech, site adapters."""
        return sorted({VISION_ADAPTER, *self._adapters.names()})

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Attach or replace an adapter that requests name; waits for the batch in flight."""
        with self._batch_lock:
            self._adapters.load(name, Path(path))

    def unload_adapter(self, name: str) -> None:
        """Detach an adapter attached by name; waits for the batch in flight."""
        with self._batch_lock:
            self._adapters.unload(name)

    def load_site_adapter(self, site: str, adapter: AdapterRef, path: str | Path) -> None:
        """Serve registry version `adapter` for `site` from the next batch on.

        The file is read and its sha256 checked before the batch lock is taken (a mismatch
        raises AdapterRefused with adapter.checksum_mismatch); the verified bytes are then
        attached between batches. On any failure the site keeps the version it served.
        """
        prepared = self._adapters.prepare(site, adapter, Path(path))
        with self._batch_lock:
            served = self._adapters.attach_site(prepared)
        log.info("site %s now serves %s", site, served.ref)

    def clear_site_adapter(self, site: str) -> None:
        """`site` runs with no site adapter from the next batch on."""
        with self._batch_lock:
            self._adapters.clear_site(site)

    def batch_running(self) -> bool:
        """Whether a batch holds the engine now (an adapter change would wait for it)."""
        return self._batch_lock.locked()

    def site_adapters(self) -> dict[str, AdapterRef]:
        """The adapter version each site serves, by site."""
        return {s: a.adapter for s, a in self._adapters.sites().items()}

    def load_shadow_adapter(self, site: str, adapter: AdapterRef, path: str | Path) -> None:
        """Judge `site`'s shadow rows with registry version `adapter` from the next batch on.

        Checked like load_site_adapter; on any failure the site keeps its previous shadow.
        """
        prepared = self._adapters.prepare(site, adapter, Path(path))
        with self._batch_lock:
            shadowing = self._adapters.attach_shadow(prepared)
        log.info("site %s now shadows %s", site, shadowing.ref)

    def clear_shadow_adapter(self, site: str) -> None:
        """`site` has no shadow adapter from the next batch on."""
        with self._batch_lock:
            self._adapters.clear_shadow(site)

    def shadow_adapters(self) -> dict[str, AdapterRef]:
        """The shadow adapter version of each site, by site."""
        return {s: a.adapter for s, a in self._adapters.shadows().items()}

    # --- inference -------------------------------------------------------------------

    def infer(
        self, batch: Sequence[EngineRequest], on_verdicts: VerdictCallback | None = None
    ) -> list[EngineResult]:
        """Verdicts for `batch` in order; halves the batch and retries on GPU out-of-memory.

        With `on_verdicts`, each request's verdict is handed over right after the prefill,
        before its rationale is decoded (see InferenceEngine.infer); a request is announced
        once even when an out-of-memory split runs it again.
        """
        for request in batch:
            if not request.images:
                raise RejectedInput(
                    Code.PAYLOAD_INVALID, f"request {request.request_id} has no photo to inspect"
                )
        announce: VerdictCallback | None = None
        if on_verdicts is not None:
            announced: set[str] = set()
            callback = on_verdicts

            def announce(results: list[EngineResult]) -> None:
                fresh = [r for r in results if r.request_id not in announced]
                announced.update(r.request_id for r in fresh)
                if fresh:
                    callback(fresh)

        with self._batch_lock:
            return self._infer_splitting(list(batch), announce)

    def _infer_splitting(
        self, batch: list[EngineRequest], announce: VerdictCallback | None
    ) -> list[EngineResult]:
        live = [request for request in batch if not request.shadow]
        try:
            with torch.inference_mode():
                return self._run(batch, announce)
        except torch.OutOfMemoryError as exc:
            if len(batch) == 1 and live:
                raise EngineFailed(
                    f"request {batch[0].request_id} does not fit in GPU memory even alone: {exc}"
                ) from exc
        # Retry outside the except block so the failed attempt's tensors can be freed.
        self._release_memory()
        if len(live) < len(batch):
            # Shadow rows are evidence, never answers: the live rows go on without them.
            log.warning(
                "out of GPU memory at batch %d; dropping its %d shadow row(s)",
                len(batch),
                len(batch) - len(live),
            )
            return self._infer_splitting(live, announce) if live else []
        half = len(batch) // 2
        log.warning(
            "out of GPU memory at batch %d; retrying as %d + %d",
            len(batch),
            half,
            len(batch) - half,
        )
        return self._infer_splitting(batch[:half], announce) + self._infer_splitting(
            batch[half:], announce
        )

    def _release_memory(self) -> None:
        self._graphs.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def decode_stats(self) -> dict[str, int]:
        """Static caches built, graphs captured and steps replayed or run eagerly, so far."""
        return self._graphs.stats.as_dict()

    def decode_graphs(self) -> DecodeGraphs:
        """The reusable decode graphs, emptied first if an adapter changed since."""
        if self._graphs_generation != self._adapters.generation:
            self._graphs.clear()
            self._graphs_generation = self._adapters.generation
        return self._graphs

    def _run(
        self, batch: list[EngineRequest], announce: VerdictCallback | None
    ) -> list[EngineResult]:
        core = self.core
        started = time.perf_counter()
        profiles = [policy.site_profile(self.sites, r.site) for r in batch]
        transcribe = self.settings.transcribe
        # A site whose disagreeing verdicts go to REVIEW needs the voice note's words before
        # its verdict is published (a published PASS never turns into REVIEW later), so the
        # batch's notes are then transcribed first, in one pass for all of its rows.
        heard = (
            self._transcribe(batch)
            if transcribe
            and any(
                p.note_disagreement == "review" and r.audio is not None and not r.shadow
                for r, p in zip(batch, profiles, strict=True)
            )
            else None
        )
        early = heard if heard is not None else [None] * len(batch)
        listened = time.perf_counter()
        named, served = self._adapters.named(), self._adapters.sites()
        shadows = self._adapters.shadows()
        routes = [
            policy.route(r, named, _served(served.get(r.site)))
            if not r.shadow
            else policy.shadow_route(_served(shadows.get(r.site)))
            for r in batch
        ]
        inputs = core.encode(batch, profiles)
        prompt_tokens = inputs.attention_mask.sum(dim=1).tolist()
        embeds = core.embed(inputs)
        encoded = time.perf_counter()
        listening_ms = (listened - started) * 1e3

        state = prefill(
            self.model, embeds, inputs.attention_mask, [route.handle for route in routes]
        )
        del inputs, embeds
        scores = [
            decide(p_pass, profile.threshold)
            for p_pass, profile in zip(core.pass_probability(state.logits), profiles, strict=True)
        ]
        prefilled = time.perf_counter()
        timings = {"encode": (encoded - listened) * 1e3, "prefill": (prefilled - encoded) * 1e3}

        def checked(i: int, transcript: str | None) -> NoteCheck:
            # Shadow rows too: the champion's verdict they are compared with went through
            # the same note rule (a REVIEW it forced is no disagreement between adapters).
            return policy.check_note(batch[i], profiles[i], scores[i], transcript)

        explain = [
            i
            for i, profile in enumerate(profiles)
            if self.settings.max_rationale_tokens > 0
            and batch[i].explain
            and not batch[i].shadow  # a shadow row is judged by its verdict alone
            and self.wants_rationale(profile, checked(i, early[i]).decided)
        ]

        def result(
            i: int, rationale: str, transcript: str | None, tokens: int, state: RationaleState
        ) -> EngineResult:
            measured = policy.Measured(int(prompt_tokens[i]), tokens, timings)
            note = checked(i, transcript)
            return policy.build_result(
                batch[i],
                profiles[i],
                routes[i],
                note.decided,
                rationale,
                transcript,
                self.model_name,
                measured,
                state,
                note.disagrees,
            )

        chosen = set(explain)
        if announce is not None:
            follows = [
                i in chosen or (transcribe and r.audio is not None and not r.shadow)
                for i, r in enumerate(batch)
            ]
            announce(
                [
                    result(
                        i, "", early[i], 0, RationaleState.PENDING if f else RationaleState.SKIPPED
                    )
                    for i, f in enumerate(follows)
                ]
            )
        try:
            forced = [core.verdict.spelled(s.leaning) for s in scores]
            rationale_ids = greedy_continue(
                self.model,
                state,
                forced,
                self.settings.max_rationale_tokens,
                core.stop_ids,
                core.pad_id,
                static=self.static_decode,
                graphs=self.decode_graphs(),
                rows=explain,
            )
            del state
            rationales = core.tokenizer.batch_decode(rationale_ids, skip_special_tokens=True)
            decoded = time.perf_counter()
            if heard is not None:
                transcripts = heard
            elif transcribe:
                transcripts = self._transcribe(batch)
            else:
                transcripts = [None] * len(batch)
        except Exception:
            if announce is None:
                raise
            # The verdicts are out: their rationales are lost, never the verdicts themselves.
            log.exception("decoding the rationales of %d published verdicts failed", len(batch))
            self._release_memory()
            return [
                result(i, "", early[i], 0, RationaleState.NOT_PRODUCED) for i in range(len(batch))
            ]
        finished = time.perf_counter()
        timings["decode"] = (decoded - prefilled) * 1e3
        timings["transcribe"] = listening_ms + (finished - decoded) * 1e3
        return [
            result(
                i,
                rationales[i],
                transcripts[i],
                len(rationale_ids[i]),
                RationaleState.PRODUCED if i in chosen else RationaleState.SKIPPED,
            )
            for i in range(len(batch))
        ]

    def _transcribe(self, batch: list[EngineRequest]) -> list[str | None]:
        """Transcripts of the voice notes (the speech adapter over the merged base), else None.

        A shadow row carries its live row's recording: it is transcribed once, and the shadow
        row hears what the live row heard (the note rule then weighs both alike).
        """
        rows = [i for i, r in enumerate(batch) if r.audio is not None and not r.shadow]
        out: list[str | None] = [None] * len(batch)
        if not rows:
            return out
        core = self.core
        notes = [a for a in (batch[i].audio for i in rows) if a is not None]
        inputs = core.encode_transcripts(notes)
        state = prefill(
            self.model, core.embed(inputs), inputs.attention_mask, [SPEECH_ADAPTER] * len(rows)
        )
        ids = greedy_continue(
            self.model,
            state,
            [()] * len(rows),
            self.settings.max_transcript_tokens,
            core.stop_ids,
            core.pad_id,
            static=self.static_decode,
            graphs=self.decode_graphs(),
        )
        for row, text in zip(
            rows, core.tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True
        ):
            out[row] = text.strip()
        heard = {id(batch[row].audio): out[row] for row in rows}
        for i, request in enumerate(batch):
            if request.shadow and request.audio is not None:
                out[i] = heard.get(id(request.audio))
        return out


def load_engine(model: ModelSettings, sites: Mapping[str, SiteProfile]) -> PhiEngine:
    """Load `model.path` onto its device, vision LoRA merged; site adapters come later."""
    runtime = resolve_runtime(model)
    # Refused before gigabytes of weights are read, not after.
    check_quantization(model.quantization, runtime.device)
    peft_model, processor = load_checkpoint(model, runtime)
    engine = PhiEngine(peft_model, processor, model, sites)
    log.info(
        "loaded %s on %s (%s, %s, quantization %s); adapters %s",
        model.path,
        runtime.device,
        runtime.dtype,
        runtime.attn_implementation,
        model.quantization,
        engine.adapters(),
    )
    return engine


def _served(adapter: SiteAdapter | None) -> policy.Served | None:
    return None if adapter is None else policy.Served(adapter.adapter, adapter.key)
