"""The worker: MQTT in → validate → batch → infer → commit → publish → ack.

A request's PUBACK is sent only after its verdict or rejection is committed, and a verdict is
published only after its commit, so a crash at any point loses nothing: the broker redelivers
what was not acked, and a redelivered request_id re-publishes the stored verdict.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import start_http_server

from inspector import __version__
from inspector.engine.types import EngineRequest, EngineResult, InferenceEngine
from inspector.errors import (
    Code,
    DuplicateConflict,
    InternalFailure,
    RejectedInput,
    StoreUnavailable,
)
from inspector.mqtt import ConnectionEvent, Message, MqttTransport
from inspector.protocol import (
    RejectionMessage,
    SiteAdapterState,
    TopicKind,
    VerdictMessage,
    WorkerState,
    WorkerStatus,
    adapter_control_filter,
    adapter_control_topic,
    judgement_of,
    request_filter,
    sha256_hex,
    shared_request_subscription,
    status_topic,
    utcnow,
)
from inspector.settings import Settings
from inspector.store import (
    Store,
    known_requests,
    latest_verdict_message,
    record_inspections,
    record_rejection,
    record_verdicts,
    stored_verdict_message,
)
from inspector.worker.adapters import SiteAdapters
from inspector.worker.batcher import Batcher
from inspector.worker.heartbeat import Heartbeat
from inspector.worker.intake import Accepted, Refused, station_of, validate
from inspector.worker.metrics import WorkerMetrics
from inspector.worker.watchdog import Watchdog

log = logging.getLogger(__name__)

# A group whose commit fails for any reason but an unreachable database is tried this many
# times, with backoff, before its requests are rejected with request.commit_failed.
COMMIT_ATTEMPTS = 3
COMMIT_BACKOFF_S = 0.2


@dataclass(slots=True)
class Decided:
    """A verdict from the engine, to be committed with its inspection."""

    item: Accepted
    result: EngineResult


@dataclass(slots=True)
class Known:
    """A request whose verdict is already stored: re-publish it, no inference."""

    item: Accepted


Outcome = Decided | Known | Refused


def _message_of(outcome: Outcome) -> Message:
    return outcome.message if isinstance(outcome, Refused) else outcome.item.message


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
        # Small on purpose: when commits fall behind, the engine waits and the next batch
        # grows, so a slow store is amortised over bigger commits instead of queued results.
        self._outbox: queue.Queue[list[Outcome]] = queue.Queue(maxsize=4)
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
        # Set when the watchdog rejects a request; cleared when a verdict is answered again.
        self._stalled = False
        # Refusals the watchdog claimed, for the commit loop (never blocks the watchdog).
        self._late: queue.SimpleQueue[list[Outcome]] = queue.SimpleQueue()
        self.watchdog = Watchdog(ws.settle_timeout_s, self._expired)

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
        for name, target in (
            ("engine", self._engine_loop),
            ("commit", self._commit_loop),
            ("adapters", lambda: self.site_adapters.run(self._stopping)),
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

    # --- validation threads ------------------------------------------------------------

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
        claimed = [o for o in outcomes if self.watchdog.claim(_message_of(o))]
        if len(claimed) < len(outcomes):
            self.metrics.late_results.inc(len(outcomes) - len(claimed))
        if claimed:
            self._outbox.put(claimed)

    def _expired(self, refused: list[Refused]) -> None:
        """The watchdog's rejections: counted, announced, and queued for the commit loop."""
        self.metrics.settle_timeouts.inc(len(refused))
        self._stalled = True
        outcomes: list[Outcome] = list(refused)
        self._late.put(outcomes)
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
        started = time.monotonic()
        try:
            results = self.engine.infer([_engine_request(i) for i in items])
            self.metrics.inference.observe(time.monotonic() - started)
            return [Decided(i, r) for i, r in zip(items, results, strict=True)]
        except Exception as exc:
            log.warning("batch of %d failed (%s); retrying each request alone", len(items), exc)
        outcomes: list[Outcome] = []
        for item in items:
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

    # --- commit thread -----------------------------------------------------------------

    def _commit_loop(self) -> None:
        while True:
            try:
                group = self._late.get_nowait()
            except queue.Empty:
                try:
                    group = self._outbox.get(timeout=0.2)
                except queue.Empty:
                    if self._engine_done.is_set() and self._outbox.empty() and self._late.empty():
                        return
                    continue
            # Fold whatever else is waiting into the same transaction.
            while len(group) < 4 * self.settings.worker.max_batch:
                try:
                    group.extend(self._outbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit_with_retry(group)
            except Exception:
                # Publishing or acking failed after the commit: the broker redelivers the
                # unacked requests and the stored answers are re-published then.
                log.exception("could not answer %d committed request(s)", len(group))
                self._set_health(False)

    def _commit_with_retry(self, group: list[Outcome]) -> None:
        """Commit, then publish and ack; a group is never left waiting silently.

        An unreachable database is waited for (nothing is acked meanwhile). Any other
        failure is retried COMMIT_ATTEMPTS times with backoff; then the group's requests are
        rejected with request.commit_failed (stored, published, acked). If even that cannot
        be stored, the worker reports itself unhealthy and leaves the group for redelivery.
        """
        delay, failures = COMMIT_BACKOFF_S, 0
        while True:
            try:
                publishes = self._commit(group)
                break
            except DuplicateConflict as exc:
                group = [_as_conflict(o, exc) for o in group]
            except StoreUnavailable as exc:
                self.metrics.store_errors.inc()
                self.watchdog.hold()
                if self._stopping.is_set() and self._engine_done.is_set() and delay >= 5:
                    log.error(
                        "store still unavailable while stopping; %d request(s) left "
                        "unacked for redelivery",
                        len(group),
                    )
                    return
                log.warning("store unavailable (%s); retrying in %.1f s, nothing acked", exc, delay)
                time.sleep(delay)  # backoff before the next attempt, not synchronisation
                delay = min(delay * 2, 10.0)
            except Exception as exc:
                self.metrics.store_errors.inc()
                failures += 1
                if failures < COMMIT_ATTEMPTS:
                    # A concurrent insert of the same request (another worker) lands here
                    # too: the next attempt finds the stored rows.
                    log.warning("commit failed (%s); retrying in %.1f s", exc, delay)
                    time.sleep(delay)  # backoff before the next attempt, not synchronisation
                    delay = min(delay * 2, 10.0)
                    continue
                rejected = self._reject_group(group, exc)
                if rejected is None:
                    return
                publishes = rejected
                break
        self._settle(publishes)

    def _reject_group(
        self, group: list[Outcome], cause: Exception
    ) -> list[tuple[str | None, bytes, Outcome]] | None:
        """Reject every request of a group that could not be committed; None if even that fails."""
        log.error(
            "commit failed %d times (%s); rejecting %d request(s)",
            COMMIT_ATTEMPTS,
            cause,
            len(group),
        )
        err = RejectedInput(
            Code.COMMIT_FAILED,
            f"the worker could not store this request ({type(cause).__name__}); "
            "send it again, and tell the operators if it keeps failing",
        )
        refused: list[Outcome] = [
            o if isinstance(o, Refused) else o.item.refuse(err) for o in group
        ]
        try:
            publishes = self._commit(refused)
        except Exception:
            log.exception(
                "could not store the rejections either; %d request(s) stay unacked", len(group)
            )
            self._set_health(False)
            return None
        return publishes

    def _set_health(self, healthy: bool, stalled: bool | None = None) -> None:
        """Record whether groups get committed (and verdicts answered); announce a change."""
        before = self._state()
        self._healthy = healthy
        self.metrics.healthy.set(1 if healthy else 0)
        if stalled is not None:
            self._stalled = stalled
        if self._state() != before and not self._stopping.is_set():
            self._publish_status(self._state())

    def _settle(self, publishes: list[tuple[str | None, bytes, Outcome]]) -> None:
        """Publish the committed answers and ack their requests."""
        answered = any(not isinstance(o, Refused) for _, _, o in publishes)
        self._set_health(True, stalled=False if answered else None)
        now = time.monotonic()
        for topic, payload, outcome in publishes:
            if topic is not None:
                self.transport.publish(topic, payload, qos=1)
            message = _message_of(outcome)
            self.transport.ack(message)
            self.watchdog.settled(message)
            received = outcome.received if isinstance(outcome, Refused) else outcome.item.received
            self.metrics.end_to_end.observe(now - received)

    def _commit(self, group: list[Outcome]) -> list[tuple[str | None, bytes, Outcome]]:
        """One transaction for the whole group; returns what to publish, in order."""
        keep = self.settings.store.rejected_payload_limit
        accepted = [o for o in group if not isinstance(o, Refused)]
        decided = [o for o in accepted if isinstance(o, Decided)]
        messages = [self._verdict(o) for o in decided]
        payloads: dict[int, bytes] = {}
        with self.store.db.write() as session:
            record_inspections(session, self.store.blobs, [o.item.request for o in accepted])
            for done, message, (vid, created) in zip(
                decided, messages, record_verdicts(session, messages), strict=True
            ):
                # A verdict stored earlier (another worker, a redelivery) wins over this one.
                if created:
                    payloads[id(done)] = message.to_payload()
                else:
                    payloads[id(done)] = stored_verdict_message(session, vid).to_payload()
            for known in (o for o in accepted if isinstance(o, Known)):
                found = latest_verdict_message(session, known.item.request_id)
                payloads[id(known)] = found.to_payload()
            for refused in (o for o in group if isinstance(o, Refused)):
                msg = self._rejection(refused)
                record_rejection(session, msg, refused.message.topic, refused.message.payload, keep)
                payloads[id(refused)] = msg.to_payload()
        out: list[tuple[str | None, bytes, Outcome]] = []
        for outcome in group:
            if isinstance(outcome, Refused):
                topic = outcome.station.topic(TopicKind.REJECTED) if outcome.station else None
                self.metrics.rejections.labels(code=outcome.error.code.value).inc()
                self.metrics.requests.labels(outcome="rejected").inc()
            else:
                topic = outcome.item.request.station_key.topic(TopicKind.VERDICT)
                kind = "judged" if isinstance(outcome, Decided) else "duplicate"
                self.metrics.requests.labels(outcome=kind).inc()
                if isinstance(outcome, Decided):
                    self.metrics.verdicts.labels(
                        site=outcome.item.request.site, verdict=outcome.result.verdict
                    ).inc()
            out.append((topic, payloads[id(outcome)], outcome))
        return out

    def _verdict(self, decided: Decided) -> VerdictMessage:
        req = decided.item.request
        return VerdictMessage(
            request_id=req.request_id,
            site=req.site,
            line=req.line,
            station=req.station,
            part_id=req.part_id,
            **judgement_of(decided.result),
            worker_id=self.worker_id,
            latency_ms=(time.monotonic() - decided.item.received) * 1000,
            decided_at=utcnow(),
        )

    def _rejection(self, refused: Refused) -> RejectionMessage:
        station = refused.station
        return RejectionMessage(
            request_id=refused.request_id,
            site=station.site if station else None,
            line=station.line if station else None,
            station=station.station if station else None,
            code=refused.error.code.value,
            message=refused.error.reason,
            payload_sha256=sha256_hex(refused.message.payload),
            worker_id=self.worker_id,
            rejected_at=utcnow(),
        )


def _engine_request(item: Accepted) -> EngineRequest:
    req = item.request
    return EngineRequest(
        request_id=item.request_id,
        site=req.site,
        images=[img.pixels for img in item.images],
        audio=item.audio.samples if item.audio is not None else None,
        note=req.note,
        adapter=req.adapter,
    )


def _as_conflict(outcome: Outcome, exc: DuplicateConflict) -> Outcome:
    if isinstance(outcome, Refused) or outcome.item.request_id != exc.request_id:
        return outcome
    return outcome.item.refuse(exc)
