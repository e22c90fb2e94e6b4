"""Which site adapter a worker serves: the registry at start-up, then the control topic.

At start-up the worker loads each served site's active adapter from the store. Afterwards a
retained announcement on `inspector/v1/control/adapters/{site}` (name, version, sha256) says
that the registry changed: the announcement must name exactly the adapter the store holds
as the site's active one, and the engine checks the file's sha256 before loading it between
batches. An announcement that is malformed, stale or names a file that does not load is
refused: the site keeps serving what it served, and the worker says so on its status topic
(`site_adapters`) and in its metrics. A worker never stops on an announcement. The same
announcement names the site's shadow adapter, if any (`inspector.worker.shadow`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

from inspector.engine.types import InferenceEngine
from inspector.errors import AdapterRefused, Code, InspectorError, RejectedInput
from inspector.mqtt import Message
from inspector.protocol import AdapterAnnouncement, SiteAdapterState, parse_adapter_announcement
from inspector.settings import Settings
from inspector.store import Store
from inspector.store.adapters import AdapterRecord, active_adapter, active_adapters
from inspector.worker.metrics import WorkerMetrics
from inspector.worker.shadow import ShadowAdapters, ShadowMetrics

log = logging.getLogger(__name__)

_POLL_S = 0.2


class SiteAdapters:
    """Keeps the engine's site adapters in step with the registry; one thread applies changes."""

    def __init__(
        self,
        engine: InferenceEngine,
        store: Store,
        settings: Settings,
        metrics: WorkerMetrics,
        changed: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._changed = changed  # publishes the worker's status
        self._sites: Sequence[str] = settings.worker.sites
        self._states: dict[str, SiteAdapterState] = {}
        self._lock = threading.Lock()
        self._inbox: queue.Queue[AdapterAnnouncement] = queue.Queue()
        self.shadow = ShadowAdapters(engine, store, settings, ShadowMetrics(metrics))

    def states(self) -> list[SiteAdapterState]:
        """What each site serves (and shadows) now, and the last failures, by site."""
        with self._lock:
            states = [self._states[site] for site in sorted(self._states)]
        out = []
        for state in states:
            shadow = self.shadow.state(state.site)
            out.append(
                state.model_copy(update={"shadow": shadow.assignment, "shadow_error": shadow.error})
            )
        return out

    def load_active(self) -> None:
        """Load every served site's active adapter from the registry (at start-up)."""
        for site in self._sites:
            self._set(SiteAdapterState(site=site))
        try:
            with self._store.db.read() as session:
                active = active_adapters(session, self._sites)
        except InspectorError as exc:
            log.warning(
                "cannot read the adapter registry (%s); serving no site adapter until the "
                "control topic announces one",
                exc,
            )
            return
        for site, record in sorted(active.items()):
            self._load(site, record)
        self.shadow.load_registered(self._sites)

    def on_message(self, message: Message) -> None:
        """Network thread: validate an announcement and hand it to the adapter thread."""
        try:
            announcement = parse_adapter_announcement(message.payload, message.topic)
        except RejectedInput as exc:
            # A cleared retained message arrives as an empty payload: nothing to do.
            if message.payload:
                log.warning("refused adapter announcement on %s: %s", message.topic, exc.reason)
                self._metrics.adapter_announcements_refused.labels(code=exc.code.value).inc()
        else:
            if not self._sites or announcement.site in self._sites:
                self._inbox.put(announcement)

    def run(self, stopping: threading.Event) -> None:
        """Adapter thread: apply announcements one by one until `stopping`."""
        while not stopping.is_set():
            try:
                announcement = self._inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            try:
                self._apply(announcement)
            except Exception:
                log.exception("could not apply the adapter announcement of %s", announcement.site)
            try:
                if self.shadow.apply(announcement):
                    self._changed()
            except Exception:
                log.exception("could not apply the shadow announced for %s", announcement.site)

    # --- applying ----------------------------------------------------------------------

    def _apply(self, announcement: AdapterAnnouncement) -> None:
        site = announcement.site
        announced = announcement.adapter
        wanted = None if announced is None else f"{announced.tag} (sha256 {announced.sha256})"
        try:
            with self._store.db.read() as session:
                active = active_adapter(session, site)
        except InspectorError as exc:
            self._failed(site, exc.code.value, f"cannot check {wanted} in the registry: {exc}")
            return
        if announced is None:
            if active is None:
                self._serve_base(site)
            else:
                self._failed(
                    site,
                    Code.ADAPTER_NOT_FOUND.value,
                    f"announced: no adapter, but the registry's active adapter is {active.ref}",
                )
            return
        if active is None or active.adapter != announced:
            have = active.ref if active is not None else "none"
            self._failed(
                site,
                Code.ADAPTER_NOT_FOUND.value,
                f"announced {wanted} is not the site's active adapter in the registry "
                f"(active: {have})",
            )
            return
        self._load(site, active)

    def _load(self, site: str, record: AdapterRecord) -> None:
        if self._engine.site_adapters().get(site) == record.adapter:
            self._set(self._serving(site))
            return
        path = record.file(self._settings.model.adapters_dir)
        try:
            self._engine.load_site_adapter(site, record.adapter, str(path))
        except AdapterRefused as exc:
            self._failed(site, exc.code.value, exc.reason)
            return
        except Exception as exc:  # the engine's own failures: keep serving, report
            self._failed(site, Code.ADAPTER_LOAD_FAILED.value, f"cannot load {record.ref}: {exc}")
            return
        log.info("site %s serves adapter %s", site, record.ref)
        self._metrics.adapter_loads.labels(site=site).inc()
        self._set(self._serving(site))
        self._changed()

    def _serve_base(self, site: str) -> None:
        if site in self._engine.site_adapters():
            self._engine.clear_site_adapter(site)
            log.info("site %s serves no site adapter", site)
        self._set(self._serving(site))
        self._changed()

    def _serving(self, site: str) -> SiteAdapterState:
        return SiteAdapterState.serving(site, self._engine.site_adapters().get(site))

    def _failed(self, site: str, code: str, error: str) -> None:
        log.error("site %s keeps its adapter: %s", site, error)
        self._metrics.adapter_load_failures.labels(site=site, code=code).inc()
        served = self._serving(site)
        self._set(
            SiteAdapterState(
                site=site,
                state="failed",
                name=served.name,
                version=served.version,
                sha256=served.sha256,
                code=code,
                error=error,
            )
        )
        self._changed()

    def _set(self, state: SiteAdapterState) -> None:
        self._metrics.adapter_version.labels(site=state.site).set(state.version or 0)
        self._metrics.adapter_failed.labels(site=state.site).set(int(state.state == "failed"))
        with self._lock:
            self._states[state.site] = state
