"""The commit thread: store each group of outcomes in one transaction, publish, then ack.

A group is committed through the store's unit of work (`Store.answer`), and only then are its
answers published and its requests acked, so a crash at any point loses nothing: the broker
redelivers what was not acked. Verdicts come first, straight after the prefill; their
rationales follow as later groups (`Explained`) that update the stored verdicts and are
published on the stations' rationale topics. A request is acked with its verdict, so a
worker that stops before the rationale leaves the verdict with its rationale pending, which
any live worker marks not produced after worker.rationale_timeout_s (`sweep_rationales`).

An unreachable database is waited for (nothing is acked meanwhile); any other failure is
retried COMMIT_ATTEMPTS times with backoff, then the group's requests are rejected with
request.commit_failed (stored, published, acked). If even that cannot be stored, the worker
reports itself unhealthy and leaves the group for redelivery.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from inspector.engine.types import EngineResult
from inspector.errors import Code, DuplicateConflict, RejectedInput, StoreUnavailable
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    RationaleState,
    RejectionMessage,
    TopicKind,
    VerdictMessage,
    judgement_of,
    rationale_topic,
    sha256_hex,
    utcnow,
)
from inspector.settings import Settings
from inspector.store import Batch, RationaleUpdate, Refusal, Store
from inspector.worker.intake import Accepted, Refused
from inspector.worker.metrics import WorkerMetrics
from inspector.worker.watchdog import Watchdog

log = logging.getLogger(__name__)

# A group whose commit fails for any reason but an unreachable database is tried this many
# times, with backoff, before its requests are rejected with request.commit_failed.
COMMIT_ATTEMPTS = 3
COMMIT_BACKOFF_S = 0.2
# How often the commit thread looks for rationales pending too long (at most; a quarter of
# worker.rationale_timeout_s when that is shorter).
SWEEP_EVERY_S = 15.0


@dataclass(slots=True)
class Decided:
    """A verdict from the engine, to be committed with its inspection."""

    item: Accepted
    result: EngineResult


@dataclass(slots=True)
class Known:
    """A request whose verdict is already stored: re-publish it, no inference."""

    item: Accepted


@dataclass(slots=True)
class Explained:
    """The rationale of a verdict committed earlier: the engine's final result for it."""

    item: Accepted
    result: EngineResult


Outcome = Decided | Known | Refused | Explained
Answer = tuple[str | None, bytes, Outcome]  # (topic, payload, outcome); no topic: not routable
# Tells the worker whether groups get committed, and (when not None) whether verdicts do.
HealthReport = Callable[[bool, bool | None], None]


def message_of(outcome: Outcome) -> Message:
    """The MQTT message an outcome answers (an Explained one was answered by its verdict)."""
    return outcome.message if isinstance(outcome, Refused) else outcome.item.message


class Committer:
    """Takes outcome groups from the engine and the watchdog; commits, publishes and acks."""

    def __init__(
        self,
        store: Store,
        transport: MqttTransport,
        settings: Settings,
        metrics: WorkerMetrics,
        watchdog: Watchdog,
        report_health: HealthReport,
    ) -> None:
        self.store = store
        self.transport = transport
        self.settings = settings
        self.metrics = metrics
        self.watchdog = watchdog
        self._report_health = report_health
        self.worker_id = settings.worker.worker_id
        # Small on purpose: when commits fall behind, the engine waits and the next batch
        # grows, so a slow store is amortised over bigger commits instead of queued results.
        # A batch puts two groups (its verdicts after the prefill, then its rationales).
        self._outbox: queue.Queue[list[Outcome]] = queue.Queue(maxsize=8)
        # Refusals the watchdog claimed (never blocks the watchdog).
        self._late: queue.SimpleQueue[list[Outcome]] = queue.SimpleQueue()

    def put(self, outcomes: list[Outcome]) -> None:
        """Queue a group for commit; blocks while the commit thread is behind."""
        self._outbox.put(outcomes)

    def put_late(self, outcomes: list[Outcome]) -> None:
        """Queue the watchdog's rejections; never blocks."""
        self._late.put(outcomes)

    def run(self, stopping: threading.Event, engine_done: threading.Event) -> None:
        """Commit groups until the engine is done and nothing is left."""
        sweep_every = min(SWEEP_EVERY_S, self.settings.worker.rationale_timeout_s / 4)
        next_sweep = time.monotonic()
        while True:
            if time.monotonic() >= next_sweep and not stopping.is_set():
                self._sweep_safely()
                next_sweep = time.monotonic() + sweep_every
            try:
                group = self._late.get_nowait()
            except queue.Empty:
                try:
                    group = self._outbox.get(timeout=0.2)
                except queue.Empty:
                    if engine_done.is_set() and self._outbox.empty() and self._late.empty():
                        return
                    continue
            # Fold whatever else is waiting into the same transaction.
            while len(group) < 4 * self.settings.worker.max_batch:
                try:
                    group.extend(self._outbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self.commit_with_retry(group, stopping, engine_done)
            except Exception:
                # Publishing or acking failed after the commit: the broker redelivers the
                # unacked requests and the stored answers are re-published then.
                log.exception("could not answer %d committed request(s)", len(group))
                self._report_health(False, None)

    def commit_with_retry(
        self, group: list[Outcome], stopping: threading.Event, engine_done: threading.Event
    ) -> None:
        """Commit, then publish and ack; a group is never left waiting silently."""
        delay, failures = COMMIT_BACKOFF_S, 0
        while True:
            try:
                answers = self._commit(group)
                break
            except DuplicateConflict as exc:
                # The stored capture is another one: no rationale of ours belongs to it.
                group = [
                    _as_conflict(o, exc)
                    for o in group
                    if not (isinstance(o, Explained) and o.item.request_id == exc.request_id)
                ]
            except StoreUnavailable as exc:
                self.metrics.store_errors.inc()
                self.watchdog.hold()
                if stopping.is_set() and engine_done.is_set() and delay >= 5:
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
                answers = rejected
                break
        self._settle(answers)

    def _reject_group(self, group: list[Outcome], cause: Exception) -> list[Answer] | None:
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
        # Rationales of verdicts already answered are not rejections: they stay pending, and
        # a live worker marks them not produced in time.
        refused: list[Outcome] = [
            o if isinstance(o, Refused) else o.item.refuse(err)
            for o in group
            if not isinstance(o, Explained)
        ]
        if not refused:
            return None
        try:
            return self._commit(refused)
        except Exception:
            log.exception(
                "could not store the rejections either; %d request(s) stay unacked", len(group)
            )
            self._report_health(False, None)
            return None

    def _settle(self, answers: list[Answer]) -> None:
        """Publish the committed answers and ack their requests."""
        # Rationales are no answers: a group of them alone says nothing of whether requests
        # get answered (a worker that could not even store a rejection stays unhealthy).
        if any(not isinstance(o, Explained) for _, _, o in answers):
            answered = any(isinstance(o, Decided | Known) for _, _, o in answers)
            self._report_health(True, False if answered else None)
        now = time.monotonic()
        for topic, payload, outcome in answers:
            if topic is not None:
                self.transport.publish(topic, payload, qos=1)
            if isinstance(outcome, Explained):
                self.metrics.rationale_latency.observe(now - outcome.item.received)
                continue  # its request was acked with the verdict
            message = message_of(outcome)
            self.transport.ack(message)
            self.watchdog.settled(message)
            received = outcome.received if isinstance(outcome, Refused) else outcome.item.received
            self.metrics.end_to_end.observe(now - received)

    def _commit(self, group: list[Outcome]) -> list[Answer]:
        """One transaction for the whole group; returns what to publish, in order."""
        decided = [o for o in group if isinstance(o, Decided)]
        known = [o for o in group if isinstance(o, Known)]
        refused = [o for o in group if isinstance(o, Refused)]
        explained = [o for o in group if isinstance(o, Explained)]
        batch = Batch(
            requests=[o.item.request for o in group if isinstance(o, Decided | Known)],
            verdicts=[self._verdict(o) for o in decided],
            known=[o.item.request_id for o in known],
            refusals=[
                Refusal(self._rejection(o), o.message.topic, o.message.payload) for o in refused
            ],
            keep_payload_bytes=self.settings.store.rejected_payload_limit,
            rationales=[self._rationale(o) for o in explained],
        )
        answers = self.store.answer(batch)
        payloads: dict[int, bytes | None] = {}
        for outcomes, messages in (
            (decided, answers.verdicts),
            (known, answers.known),
            (refused, answers.refusals),
        ):
            for outcome, message in zip(outcomes, messages, strict=True):
                payloads[id(outcome)] = message.to_payload()
        for outcome, rationale in zip(explained, answers.rationales, strict=True):
            # None: the stored verdict is not this worker's (it has its own rationale).
            payloads[id(outcome)] = rationale.to_payload() if rationale is not None else None
        out: list[Answer] = []
        for outcome in group:
            payload = payloads[id(outcome)]
            if payload is None:
                continue
            topic: str | None
            if isinstance(outcome, Explained):
                topic = outcome.item.request.station_key.topic(TopicKind.RATIONALE)
                self.metrics.rationales.labels(state=outcome.result.rationale_state.value).inc()
            elif isinstance(outcome, Refused):
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
            out.append((topic, payload, outcome))
        return out

    def _rationale(self, explained: Explained) -> RationaleUpdate:
        result = explained.result
        failed = result.rationale_state is RationaleState.NOT_PRODUCED
        return RationaleUpdate(
            request_id=explained.item.request_id,
            worker_id=self.worker_id,
            model=result.model,
            adapter=result.adapter,
            prompt_version=result.prompt_version,
            state=result.rationale_state,
            rationale=result.rationale,
            transcript=result.transcript,
            defects=result.defects,
            reason=Code.RATIONALE_ENGINE_FAILED if failed else None,
            note_disagrees=result.note_disagrees,
        )

    def _sweep_safely(self) -> None:
        try:
            self.sweep_rationales()
        except Exception as exc:  # the next sweep tries again; answering goes on meanwhile
            log.warning("could not look for rationales pending too long: %s", exc)

    def sweep_rationales(self) -> int:
        """Mark rationales pending too long not produced, and tell their stations; how many."""
        now = utcnow()
        timeout = timedelta(seconds=self.settings.worker.rationale_timeout_s)
        messages = self.store.expire_rationales(now - timeout, self.worker_id, now)
        for message in messages:
            self.transport.publish(
                rationale_topic(message.site, message.line, message.station),
                message.to_payload(),
                qos=1,
            )
            self.metrics.rationales.labels(state=message.rationale_state.value).inc()
        if messages:
            log.warning(
                "%d verdict(s) had no rationale %.0f s after their verdict (their worker "
                "stopped); marked not produced",
                len(messages),
                timeout.total_seconds(),
            )
        return len(messages)

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


def _as_conflict(outcome: Outcome, exc: DuplicateConflict) -> Outcome:
    if isinstance(outcome, Refused | Explained) or outcome.item.request_id != exc.request_id:
        return outcome
    return outcome.item.refuse(exc)
