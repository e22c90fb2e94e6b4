"""Shadow adapters in the worker: a site's candidate judges a share of its live requests again.

The site's retained control message may name a shadow adapter and a share
(`AdapterAnnouncement.shadow`). The worker checks it against the registry (the site's
`shadow` version, same sha256), has the engine load it beside the served adapter, and then
adds one extra row per chosen request to the batch, routed to the shadow adapter: one
prefill for both verdicts, no rationale and no transcript for the extra row. Which requests
are chosen is a hash of the request_id against the share, so a redelivered request is
chosen again and the choice owes nothing to the line's order of parts.

A shadow verdict is never published, never handed to the commit loop and never becomes the
inspection's verdict: it goes to `shadow_verdicts` from a thread of its own, after the
verdicts of its batch. It is evidence, not an answer, so one that cannot be stored is counted
and dropped instead of holding up the line. A shadow adapter that cannot be loaded leaves
the site judged once, as before, and the worker says why on its status
(`site_adapters[].shadow_error`).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from inspector.engine.types import EngineRequest, EngineResult, InferenceEngine, ShadowEngine
from inspector.errors import AdapterRefused, InspectorError
from inspector.protocol import AdapterAnnouncement, ShadowAssignment, utcnow
from inspector.quality import AdapterRef
from inspector.settings import Settings
from inspector.store import Store
from inspector.store.adapters import AdapterRecord
from inspector.store.shadow import ShadowVerdictInput, record_shadow_verdicts, shadow_adapters
from inspector.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# Appended to a live request_id to name its shadow row inside one batch; request ids are
# UUIDs, so no live request is ever named so.
SHADOW_SUFFIX = "~shadow"
_POLL_S = 0.2


def chosen(request_id: str, share: float) -> bool:
    """Whether a request is judged again in the shadow: its id's hash, against the share."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass(frozen=True, slots=True)
class ShadowState:
    """What one site's shadow is on this worker: the assignment served, or why none."""

    assignment: ShadowAssignment | None = None
    error: str | None = None


class ShadowMetrics:
    """The cost of shadowing: extra rows per batch, their share of engine time, failures."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        r = metrics.registry
        self.rows = Histogram(
            "inspector_shadow_rows_per_batch",
            "Shadow rows added to an inference batch",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.engine_seconds = Counter(
            "inspector_shadow_engine_seconds_total",
            "Engine time of batches with shadow rows, times the shadow rows' share of the batch",
            registry=r,
        )
        self.verdicts = Counter(
            "inspector_shadow_verdicts_total",
            "Shadow verdicts stored, by site and adapter",
            ["site", "adapter"],
            registry=r,
        )
        self.dropped = Counter(
            "inspector_shadow_verdicts_dropped_total",
            "Shadow verdicts not stored (store failure, or the shadow adapter left mid-batch)",
            registry=r,
        )
        self.load_failures = Counter(
            "inspector_shadow_load_failures_total",
            "Announced shadow adapters that could not be loaded, by site",
            ["site"],
            registry=r,
        )


class ShadowAdapters:
    """Loads each site's shadow adapter as announced, and keeps what every site shadows."""

    def __init__(
        self,
        engine: InferenceEngine,
        store: Store,
        settings: Settings,
        metrics: ShadowMetrics,
    ) -> None:
        self._engine = engine
        self._store = store
        self._settings = settings
        self.metrics = metrics
        self._lock = threading.Lock()
        self._states: dict[str, ShadowState] = {}

    def state(self, site: str) -> ShadowState:
        """The site's shadow on this worker (none when it has none)."""
        with self._lock:
            return self._states.get(site, ShadowState())

    def assignments(self) -> dict[str, ShadowAssignment]:
        """The shadow each site judges with now, by site."""
        with self._lock:
            return {s: st.assignment for s, st in self._states.items() if st.assignment}

    def load_registered(self, sites: Sequence[str]) -> None:
        """Load the registry's shadow adapters of `sites` (of every site when empty), at start."""
        try:
            with self._store.db.read() as session:
                registered = shadow_adapters(session, sites)
        except InspectorError as exc:
            log.warning("cannot read the shadow adapters (%s); none until announced", exc)
            return
        for site, record in sorted(registered.items()):
            self._load(site, record)

    def apply(self, announcement: AdapterAnnouncement) -> bool:
        """Follow an announcement's shadow (adapter thread); whether anything changed."""
        site, wanted = announcement.site, announcement.shadow
        before = self.state(site)
        if wanted is None:
            self._clear(site, None)
            return before != self.state(site)
        try:
            with self._store.db.read() as session:
                record = shadow_adapters(session, [site]).get(site)
        except InspectorError as exc:
            self._fail(site, f"cannot check shadow {wanted.adapter.tag} in the registry: {exc}")
            return True
        if record is None or record.adapter != wanted.adapter:
            have = record.ref if record is not None else "none"
            self._fail(
                site,
                f"announced shadow {wanted.adapter.tag} is not the site's shadow adapter in "
                f"the registry (shadow: {have})",
            )
            return True
        self._load(site, record)
        return before != self.state(site)

    def _load(self, site: str, record: AdapterRecord) -> None:
        assignment = ShadowAssignment(
            name=record.name,
            version=record.version,
            sha256=record.sha256,
            share=record.shadow_share or 1.0,
        )
        engine = self._engine
        if not isinstance(engine, ShadowEngine):
            self._fail(site, f"this worker's engine cannot judge in the shadow ({record.ref})")
            return
        if engine.shadow_adapters().get(site) != record.adapter:
            path = record.file(self._settings.model.adapters_dir)
            try:
                engine.load_shadow_adapter(site, record.adapter, str(path))
            except AdapterRefused as exc:
                self._fail(site, f"{exc.code.value}: {exc.reason}")
                return
            except Exception as exc:  # the engine's own failures: judge once, report
                self._fail(site, f"cannot load shadow {record.ref}: {exc}")
                return
            log.info(
                "site %s shadows %s on %.0f%% of requests", site, record.ref, 100 * assignment.share
            )
        with self._lock:
            self._states[site] = ShadowState(assignment)

    def _clear(self, site: str, error: str | None) -> None:
        engine = self._engine
        if isinstance(engine, ShadowEngine) and site in engine.shadow_adapters():
            engine.clear_shadow_adapter(site)
            log.info("site %s no longer judges in the shadow", site)
        with self._lock:
            self._states[site] = ShadowState(None, error)

    def _fail(self, site: str, error: str) -> None:
        # The site is judged once, as before a shadow was asked for: a shadow the registry
        # no longer names must not go on judging either.
        log.error("site %s judges without its shadow adapter: %s", site, error)
        self.metrics.load_failures.labels(site=site).inc()
        self._clear(site, error)


class Shadowing:
    """Adds the shadow rows to a batch, takes their verdicts out, and stores them."""

    def __init__(
        self, adapters: ShadowAdapters, store: Store, worker_id: str, metrics: ShadowMetrics
    ) -> None:
        self.adapters = adapters
        self._store = store
        self._worker_id = worker_id
        self._metrics = metrics
        self._inbox: queue.Queue[list[ShadowVerdictInput]] = queue.Queue()

    def rows(self, requests: Sequence[EngineRequest]) -> list[EngineRequest]:
        """The extra rows of a batch: one per live request its site's shadow chose."""
        assignments = self.adapters.assignments()
        extra = []
        for request in requests:
            assignment = assignments.get(request.site)
            if assignment is not None and chosen(request.request_id, assignment.share):
                extra.append(
                    EngineRequest(
                        request_id=request.request_id + SHADOW_SUFFIX,
                        site=request.site,
                        images=request.images,
                        audio=request.audio,
                        note=request.note,
                        shadow=True,
                    )
                )
        return extra

    @staticmethod
    def live(results: Sequence[EngineResult]) -> list[EngineResult]:
        """The results of the live rows: what may be committed and published."""
        return [r for r in results if not r.request_id.endswith(SHADOW_SUFFIX)]

    def finished(
        self, results: Sequence[EngineResult], extra: Sequence[EngineRequest], seconds: float
    ) -> None:
        """Account a batch's cost and queue its shadow verdicts for the store."""
        self._metrics.rows.observe(len(extra))
        if not extra:
            return
        self._metrics.engine_seconds.inc(seconds * len(extra) / max(1, len(results)))
        sites = {r.request_id: r.site for r in extra}
        assignments = self.adapters.assignments()
        out = []
        now = utcnow()
        for result in results:
            site = sites.get(result.request_id)
            if site is None:
                continue
            assignment = assignments.get(site)
            ref = assignment.adapter if assignment is not None else None
            if ref is None or result.adapter_fallback or not _same(ref, result):
                self._metrics.dropped.inc()  # the shadow changed while the batch ran
                continue
            out.append(
                ShadowVerdictInput(
                    request_id=result.request_id.removesuffix(SHADOW_SUFFIX),
                    site=site,
                    adapter=ref,
                    model=result.model,
                    prompt_version=result.prompt_version,
                    verdict=result.verdict,
                    confidence=result.confidence,
                    p_pass=result.p_pass,
                    worker_id=self._worker_id,
                    decided_at=now,
                )
            )
        if out:
            self._inbox.put(out)

    def run(self, engine_done: threading.Event) -> None:
        """Store thread: write queued shadow verdicts until the engine is done and none wait."""
        while True:
            try:
                group = self._inbox.get(timeout=_POLL_S)
            except queue.Empty:
                if engine_done.is_set() and self._inbox.empty():
                    return
                continue
            try:
                record_shadow_verdicts(self._store.db, group)
            except Exception as exc:  # evidence, not an answer: counted, never retried forever
                log.warning("could not store %d shadow verdict(s): %s", len(group), exc)
                self._metrics.dropped.inc(len(group))
                continue
            for v in group:
                self._metrics.verdicts.labels(site=v.site, adapter=v.adapter.tag).inc()


def _same(ref: AdapterRef, result: EngineResult) -> bool:
    return result.adapter == ref.name and result.adapter_version == ref.version
