"""The worker: MQTT in → validate → batch → infer → commit → publish → ack.

A request's PUBACK is sent only after its verdict or rejection is committed, and a verdict is
published only after its commit, so a crash at any point loses nothing: the broker redelivers
what was not acked, and a redelivered request_id re-publishes the stored verdict.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import start_http_server

from inspector import __version__
from inspector.engine.types import EngineRequest, EngineResult, InferenceEngine
from inspector.errors import Code, DuplicateConflict, InternalFailure, RejectedInput
from inspector.mqtt import ConnectionEvent, Message, MqttTransport
from inspector.protocol import (
    RationaleState,
    SiteAdapterState,
    WorkerState,
    WorkerStatus,
    adapter_control_filter,
    adapter_control_topic,
    canary_request_topic,
    is_canary_topic,
    request_filter,
    shared_request_subscription,
    status_topic,
    utcnow,
)
from inspector.settings import Settings
from inspector.store import Store, known_requests
from inspector.worker.adapters import SiteAdapters
from inspector.worker.batcher import Batcher
from inspector.worker.canary import CanaryDesk
from inspector.worker.committer import (
    Committer,
    Decided,
    Explained,
    Known,
    Outcome,
    message_of,
)
from inspector.worker.heartbeat import Heartbeat
from inspector.worker.intake import Accepted, Refused, station_of, validate
from inspector.worker.metrics import WorkerMetrics
from inspector.worker.shadow import Shadowing
from inspector.worker.watchdog import Watchdog

log = logging.getLogger(__name__)


def status_message(
    worker_id: str,
    state: WorkerState,
    engine: InferenceEngine | None,
    *,
    sites: Sequence[str] = (),
    backlog: bool = False,
    heartbeat_s: float | None = None,
    site_adapters: Sequence[SiteAdapterState] = (),
    settle_timeouts: int = 0,
) -> WorkerStatus:
    """The retained status of a worker."""
    return WorkerStatus(
        worker_id=worker_id,
        state=state,
        version=__version__,
        model=engine.model_name if engine is not None else None,
        adapters=engine.adapters() if engine is not None else [],
        site_adapters=list(site_adapters),
        updated_at=utcnow(),
        sites=list(sites),
        backlog=backlog,
        heartbeat_s=heartbeat_s,
        settle_timeouts=settle_timeouts,
    )


class Worker:
    """One worker process: hand it the transport, store, engine and settings, then `run`."""

    def __init__(
        self,
        transport: MqttTransport,
        store: Store,
        engine: InferenceEngine,
        settings: Settings,
    ) -> None:
        self.transport = transport
        self.store = store
        self.engine = engine
        self.settings = settings
        self.worker_id = settings.worker.worker_id
        self.metrics = WorkerMetrics()
        ws = settings.worker
        self.batcher = Batcher(ws.max_batch, ws.max_wait_ms / 1000, ws.queue_size)
        self._pool = ThreadPoolExecutor(ws.validation_threads, thread_name_prefix="validate")
        self._stopping = threading.Event()
        self._engine_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._metrics_server: Any = None
        self.heartbeat = Heartbeat(self._beat, lambda: self.transport.unacked >= ws.receive_maximum)
        self._healthy = True
        self.site_adapters = SiteAdapters(
            engine, store, settings, self.metrics, self._publish_status_if_online
        )
        self.shadowing = Shadowing(
            self.site_adapters.shadow, store, self.worker_id, self.site_adapters.shadow.metrics
        )
        # Set when the watchdog rejects a request; cleared when a verdict is answered again.
        self._stalled = False
        self.watchdog = Watchdog(ws.settle_timeout_s, self._expired)
        self.committer = Committer(
            store, transport, settings, self.metrics, self.watchdog, self._set_health
        )
        self.canary = CanaryDesk(
            transport, self.worker_id, settings.limits, engine.shape_bucket, self.metrics
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect, subscribe and start the pipeline threads."""
        ws = self.settings.worker
        if ws.metrics_port:
            self._metrics_server, _ = start_http_server(
                ws.metrics_port, addr=ws.metrics_host, registry=self.metrics.registry
            )
        self.transport.on_connection(self._on_connection)
        # Before any request is taken: the first batch already runs on the active adapters.
        self.site_adapters.load_active()
        # Every worker of a site hears its announcements: a plain subscription, not shared.
        for topic_filter in [adapter_control_topic(s) for s in ws.sites] or [
            adapter_control_filter()
        ]:
            self.transport.subscribe(topic_filter, self._on_control, qos=1)
        # MQTT 3.1.1 has no shared subscriptions: such a broker serves one worker, plainly.
        shared = self.settings.broker.protocol == "5"
        for site in ws.sites or (None,):
            topic_filter = (
                shared_request_subscription(ws.group, site) if shared else request_filter(site)
            )
            self.transport.subscribe(topic_filter, self._on_message, qos=1)
        # Golden parts come to this worker by name, so the canary checks each worker.
        self.transport.subscribe(canary_request_topic(self.worker_id), self._on_canary, qos=1)
        for name, target in (
            ("engine", self._engine_loop),
            ("commit", lambda: self.committer.run(self._stopping, self._engine_done)),
            ("adapters", lambda: self.site_adapters.run(self._stopping)),
            ("shadow", lambda: self.shadowing.run(self._engine_done)),
        ):
            thread = threading.Thread(target=target, name=f"worker-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.watchdog.start()
        self.transport.start()
        self.heartbeat.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking work, finish the batch in flight, commit, ack, then disconnect."""
        if self._stopping.is_set():
            return
        log.info("worker %s draining", self.worker_id)
        self._stopping.set()
        self.heartbeat.stop()
        self.watchdog.stop()
        self._publish_status("draining")
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Requests queued but not started stay unacked: the broker redelivers them.
        left = self.batcher.drain()
        if left:
            log.info("%d queued request(s) left unacked for redelivery", len(left))
        pub = self._publish_status("offline")
        if pub is not None:
            pub.wait(min(5.0, max(0.1, deadline - time.monotonic())))
        self.transport.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("worker %s stopped", self.worker_id)

    # --- network thread ----------------------------------------------------------------

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event.connected and not self._stopping.is_set():
            # "online" means ready: announce it once the broker has confirmed the subscription.
            threading.Thread(target=self._announce, name="worker-announce", daemon=True).start()

    def _announce(self) -> None:
        if self.transport.wait_subscribed(30) and not self._stopping.is_set():
            self._publish_status(self._state())

    def wait_ready(self, timeout: float) -> bool:
        """Block until connected with the request subscription confirmed by the broker."""
        return self.transport.wait_subscribed(timeout)

    def _beat(self, backlog: bool) -> None:
        # Only once "online" was announced (subscription confirmed), and never while stopping.
        if self.transport.wait_subscribed(0) and not self._stopping.is_set():
            self._publish_status(self._state())

    def _state(self) -> WorkerState:
        return "online" if self._healthy and not self._stalled else "unhealthy"

    def _publish_status_if_online(self) -> None:
        if self.transport.wait_subscribed(0) and not self._stopping.is_set():
            self._publish_status(self._state())

    def _publish_status(self, state: WorkerState) -> Any:
        try:
            msg = status_message(
                self.worker_id,
                state,
                self.engine,
                sites=self.settings.worker.sites,
                backlog=state == "online" and self.heartbeat.backlog,
                heartbeat_s=self.heartbeat.interval_s,
                site_adapters=self.site_adapters.states(),
                settle_timeouts=self.watchdog.expired_total,
            )
            return self.transport.publish(
                status_topic(self.worker_id), msg.to_payload(), qos=1, retain=True
            )
        except Exception:
            log.exception("could not publish worker status")
            return None

    def _on_control(self, message: Message) -> None:
        # Acked at once: a lost announcement costs nothing, the store is read at start-up.
        try:
            self.site_adapters.on_message(message)
        finally:
            self.transport.ack(message)

    def _on_message(self, message: Message) -> None:
        if self._stopping.is_set():
            return  # not acked: redelivered after restart
        received = time.monotonic()
        self.watchdog.track(message, received, station_of(message.topic))
        self.batcher.expect()
        self._pool.submit(self._validate, message, received)

    def _on_canary(self, message: Message) -> None:
        if self._stopping.is_set():
            return
        self.batcher.expect()
        self._pool.submit(self._validate_canary, message, time.monotonic())

    # --- validation threads ------------------------------------------------------------

    def _validate_canary(self, message: Message, received: float) -> None:
        # Not tracked by the watchdog: a golden part is answered to the canary or not at all.
        outcome = self.canary.validate(message, received)
        if isinstance(outcome, Refused):
            self.batcher.settle(None, self._stopping)
            self.canary.divert([outcome])
        else:
            self.batcher.settle(outcome, self._stopping)

    def _validate(self, message: Message, received: float) -> None:
        outcome: Accepted | Refused
        self.watchdog.started([message])
        try:
            outcome = validate(message, self.settings.limits, received, self.engine.shape_bucket)
        except Exception as exc:  # validate() refuses everything itself; this is a last guard
            log.exception("validation raised")
            station = station_of(message.topic)
            outcome = Refused(message, InternalFailure("validating", exc), None, station, received)
        if isinstance(outcome, Refused):
            self.batcher.settle(None, self._stopping)
            self._hand_on([outcome])
        else:
            self.watchdog.validated(message, outcome.request.request_id)
            self.batcher.settle(outcome, self._stopping)
        self.metrics.queue_depth.set(self.batcher.depth())

    def _hand_on(self, outcomes: list[Outcome]) -> None:
        """Queue outcomes for the commit loop, dropping those the watchdog already rejected."""
        outcomes = self.canary.divert(outcomes)  # golden parts are answered, never stored
        # A rationale's request was settled with its verdict: nothing left to claim.
        claimed = [
            o for o in outcomes if isinstance(o, Explained) or self.watchdog.claim(message_of(o))
        ]
        if len(claimed) < len(outcomes):
            self.metrics.late_results.inc(len(outcomes) - len(claimed))
        if claimed:
            self.committer.put(claimed)

    def _expired(self, refused: list[Refused]) -> None:
        """The watchdog's rejections: counted, announced, and queued for the commit loop."""
        self.metrics.settle_timeouts.inc(len(refused))
        self._stalled = True
        outcomes: list[Outcome] = list(refused)
        self.committer.put_late(outcomes)
        if not self._stopping.is_set():
            self._publish_status(self._state())

    # --- engine thread -----------------------------------------------------------------

    def _engine_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                batch = self.batcher.next_batch(self._stopping)
                self.metrics.queue_depth.set(self.batcher.depth())
                live = [i for i in batch if not self.watchdog.abandon_if_expired(i.message)]
                self.metrics.late_results.inc(len(batch) - len(live))
                if live:
                    self.watchdog.started([item.message for item in live])
                    self._hand_on(self._process_safely(live))
        except Exception:
            log.exception("engine loop failed")
        finally:
            self._engine_done.set()

    def _known(self, batch: Sequence[Accepted]) -> dict[str, tuple[str, bool]]:
        """request_id → (stored fingerprint, has a verdict), for requests already stored."""
        try:
            return known_requests(self.store.db, [item.request_id for item in batch])
        except Exception:
            # The commit path re-checks everything; the lookup only saves inference.
            log.warning("could not look up stored requests; the commit will reconcile")
            return {}

    def _process_safely(self, batch: list[Accepted]) -> list[Outcome]:
        try:
            return self._process(batch)
        except Exception as exc:  # the engine loop must outlive any batch
            log.exception("processing a batch of %d failed; rejecting it", len(batch))
            return [item.refuse(InternalFailure("judging", exc)) for item in batch]

    def _process(self, batch: list[Accepted]) -> list[Outcome]:
        known = self._known(batch)
        outcomes: list[Outcome] = []
        todo: list[Accepted] = []
        seen: set[str] = set()
        for item in batch:
            rid = item.request_id
            stored = known.get(rid)
            if stored is not None and stored[0] != item.request.fingerprint():
                outcomes.append(item.refuse(DuplicateConflict(rid)))
            elif (stored is not None and stored[1]) or rid in seen:
                outcomes.append(Known(item))
            else:
                seen.add(rid)
                todo.append(item)
        if todo:
            now = time.monotonic()
            for item in todo:
                self.metrics.queue_wait.observe(now - item.received)
            self.metrics.batch_size.observe(len(todo))
            outcomes.extend(self._infer(todo))
        return outcomes

    def _infer(self, items: list[Accepted]) -> list[Outcome]:
        """Judge a batch: verdicts go to the commit loop as soon as the engine has them.

        What is returned follows them: the rationales of the verdicts announced early, and
        the whole verdicts of an engine that announced none.
        """
        by_id = {item.request_id: item for item in items}
        announced: dict[str, EngineResult] = {}

        def on_verdicts(results: list[EngineResult]) -> None:
            results = Shadowing.live(results)  # shadow verdicts are never answers
            announced.update((r.request_id, r) for r in results)
            if results:
                self._hand_on([Decided(by_id[r.request_id], r) for r in results])

        started = time.monotonic()
        try:
            requests = [_engine_request(i) for i in items]
            # Golden parts are the canary's: never judged again in the shadow, never stored.
            live = [r for r, i in zip(requests, items, strict=True) if not is_canary(i)]
            extra = self.shadowing.rows(live)
            everything = self.engine.infer(requests + extra, on_verdicts)
            took = time.monotonic() - started
            self.metrics.inference.observe(took)
            self.shadowing.finished(everything, extra, took)
            results = Shadowing.live(everything)
            following = (
                _following(i, r, announced.get(i.request_id))
                for i, r in zip(items, results, strict=True)
            )
            return [o for o in following if o is not None]
        except Exception as exc:
            log.warning("batch of %d failed (%s); retrying each request alone", len(items), exc)
        # Verdicts already announced stand: only their rationales are lost.
        outcomes: list[Outcome] = [
            Explained(by_id[rid], r.model_copy(update={"rationale_state": NOT_PRODUCED}))
            for rid, r in announced.items()
            if r.rationale_state is RationaleState.PENDING
        ]
        for item in items:
            if item.request_id in announced:
                continue
            try:
                (result,) = self.engine.infer([_engine_request(item)])
                outcomes.append(Decided(item, result))
            except Exception as exc:
                log.exception("request %s failed alone; rejecting it", item.request_id)
                err = RejectedInput(
                    Code.ENGINE_FAILED,
                    f"the model failed on this request ({type(exc).__name__}); send it again, "
                    "and tell the operators if it keeps failing",
                )
                outcomes.append(item.refuse(err))
        return outcomes

    # --- health ----------------------------------------------------------------------

    def _set_health(self, healthy: bool, stalled: bool | None = None) -> None:
        """Record whether groups get committed (and verdicts answered); announce a change."""
        before = self._state()
        self._healthy = healthy
        self.metrics.healthy.set(1 if healthy else 0)
        if stalled is not None:
            self._stalled = stalled
        if self._state() != before and not self._stopping.is_set():
            self._publish_status(self._state())


NOT_PRODUCED = RationaleState.NOT_PRODUCED


def _following(
    item: Accepted, result: EngineResult, announced: EngineResult | None
) -> Outcome | None:
    """What follows an engine's final result: the whole verdict, its rationale, or nothing."""
    if announced is None:
        return Decided(item, result)
    if announced.rationale_state is RationaleState.PENDING:
        return Explained(item, result)
    return None  # its verdict said no rationale follows


def is_canary(item: Accepted) -> bool:
    """Whether a request is a golden part the canary sent (on this worker's canary topic)."""
    return is_canary_topic(item.message.topic)


def _engine_request(item: Accepted) -> EngineRequest:
    req = item.request
    return EngineRequest(
        request_id=item.request_id,
        site=req.site,
        images=[img.pixels for img in item.images],
        audio=item.audio.samples if item.audio is not None else None,
        note=req.note,
        adapter=req.adapter,
        # The canary compares a golden part's verdict alone: no rationale is decoded for it.
        explain=not is_canary(item),
    )
