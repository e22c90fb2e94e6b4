"""The canary service: every period, each golden part goes to each live worker, by name.

Why a service of its own and not a part of each worker: it sends through the broker and the
worker's whole intake (the real path), it sees a worker that stops answering (a worker cannot
report its own silence), and one canary checks every worker against the same expectations.

Workers are learned from their retained status (`online` or `unhealthy`; a draining or
offline worker is not asked). A golden part goes to a worker only when the worker serves its
site. Each copy has a fresh request_id and goes to the worker's own canary topic
(`protocol.canary_request_topic`), which no station reads; the worker answers on its canary
verdict topic and stores nothing. An answer is judged by `quality.golden.judge_golden`
against the part's reviewed answer and the reference P(PASS) of the answering adapter
version (`store.golden.reference_p_pass`). A copy not answered when the next period starts
is missing. The canary's word on each worker is retained on its health topic
(`protocol.CanaryHealth`): failing as soon as one answer is wrong, and at the end of each
period ok, failing or idle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import uuid4

from inspector.canary.metrics import CanaryMetrics
from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    CanaryHealth,
    VerdictMessage,
    WorkerStatus,
    canary_health_topic,
    canary_request_topic,
    canary_verdict_filter,
    parse_status,
    parse_verdict,
    utcnow,
    worker_status_filter,
)
from inspector.quality.golden import GoldenCheck, judge_golden, missing
from inspector.settings import CanarySettings
from inspector.store import Store
from inspector.store.golden import GoldenCase, golden_cases, reference_p_pass

log = logging.getLogger(__name__)

# Problems named on a worker's health line, at most (the metrics count them all).
SHOWN_PROBLEMS = 5
LIVE_STATES = ("online", "unhealthy")


@dataclass(slots=True)
class _Sent:
    worker_id: str
    case: GoldenCase
    adapter: str  # name@version the worker said it serves for the part's site


@dataclass(slots=True)
class _Period:
    """One worker's tally in the current period."""

    checked: int = 0
    mismatches: int = 0
    missing: int = 0
    adapters: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append(problem)


def _served_adapter(status: WorkerStatus, site: str) -> str:
    for state in status.site_adapters:
        if state.site == site and state.name is not None:
            return f"{state.name}@{state.version}"
    return "none"


def _serves(status: WorkerStatus, site: str) -> bool:
    return not status.sites or site in status.sites


class Canary:
    """Sends the golden parts each period and judges the answers; hand it transport and store."""

    def __init__(
        self,
        transport: MqttTransport,
        store: Store,
        settings: CanarySettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.store = store
        self.settings = settings
        self.metrics = CanaryMetrics()
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerStatus] = {}
        self._pending: dict[str, _Sent] = {}
        self._periods: dict[str, _Period] = {}
        # Called with each health message published (tests and the CLI's --once watch it).
        self.on_health: Callable[[CanaryHealth], None] = lambda _: None

    def start(self, timeout: float = 30.0) -> bool:
        """Connect and subscribe to the workers' statuses and answers."""
        self.transport.subscribe(worker_status_filter(), self._on_status, qos=1)
        self.transport.subscribe(canary_verdict_filter(), self._on_verdict, qos=1)
        self.transport.start()
        return self.transport.wait_subscribed(timeout)

    def run(self, stop: threading.Event) -> None:
        """A period every canary.period_s until `stop` is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.period()
            except Exception:
                log.exception("canary period failed; trying again next period")
            stop.wait(max(0.0, self.settings.period_s - (time.monotonic() - started)))
        self.close_period()

    def stop(self) -> None:
        """Disconnect."""
        self.transport.stop()

    # --- periods -----------------------------------------------------------------------

    def period(self) -> int:
        """Close the period before (missing answers, health), then send this one's parts."""
        self.close_period()
        self.metrics.last_period.set(self._clock())
        with self.store.db.read() as session:
            cases = golden_cases(session, self.store.blobs)
        with self._lock:
            workers = [w for w in self._workers.values() if w.state in LIVE_STATES]
        sent = 0
        for worker in workers:
            mine = [c for c in cases if _serves(worker, c.request.site)]
            with self._lock:
                self._periods[worker.worker_id] = _Period()
            if not mine:
                self._publish_health(worker.worker_id, _Period(), idle=True)
                continue
            for case in mine:
                self._send(worker, case)
                sent += 1
        return sent

    def _send(self, worker: WorkerStatus, case: GoldenCase) -> None:
        request = case.request.model_copy(update={"request_id": uuid4()})
        adapter = _served_adapter(worker, case.request.site)
        with self._lock:
            self._pending[str(request.request_id)] = _Sent(worker.worker_id, case, adapter)
            self._periods[worker.worker_id].checked += 1
        self.metrics.sent.labels(worker.worker_id).inc()
        # Parts are sent as their period starts; one still queued a period later (its worker
        # went away) is of no use: the broker drops it rather than hand a restarted worker a
        # backlog of stale parts.
        self.transport.publish(
            canary_request_topic(worker.worker_id),
            request.to_payload(),
            qos=1,
            expiry_s=self.settings.period_s,
        )

    def close_period(self) -> None:
        """Count what was not answered as missing; publish each worker's health."""
        with self._lock:
            left, self._pending = self._pending, {}
            periods, self._periods = self._periods, {}
        for sent in left.values():
            period = periods.setdefault(sent.worker_id, _Period())
            period.missing += 1
            period.note(f"{sent.case.request_id} ({sent.case.request.site}): no answer")
            self.metrics.missing.labels(sent.worker_id, sent.case.request.site, sent.adapter).inc()
        for worker_id, period in periods.items():
            self._publish_health(worker_id, period)

    # --- answers and statuses (network thread) ------------------------------------------

    def _on_status(self, message: Message) -> None:
        if not message.payload:
            return
        try:
            status = parse_status(message.payload)
        except Exception:
            log.warning("unreadable worker status on %s", message.topic)
            return
        with self._lock:
            self._workers[status.worker_id] = status

    def _on_verdict(self, message: Message) -> None:
        try:
            answer = parse_verdict(message.payload)
        except Exception:
            log.warning("unreadable canary answer on %s", message.topic)
            return
        with self._lock:
            sent = self._pending.pop(str(answer.request_id), None)
        if sent is None or sent.worker_id != answer.worker_id:
            return  # from a period already closed (counted missing), or not ours
        try:
            check = self._judge(sent, answer)
        except Exception:
            log.exception("could not judge golden part %s", sent.case.request_id)
            check = missing(sent.case.expected)
        self._record(sent, answer, check)

    def _judge(self, sent: _Sent, answer: VerdictMessage) -> GoldenCheck:
        with self.store.db.write() as session:
            reference = reference_p_pass(
                session,
                sent.case.golden_id,
                answer.adapter,
                answer.adapter_version,
                answer.p_pass,
                f"canary:{answer.worker_id}",
            )
        return judge_golden(sent.case.expected, answer.p_pass, reference, self.settings.tolerance)

    def _record(self, sent: _Sent, answer: VerdictMessage, check: GoldenCheck) -> None:
        adapter = f"{answer.adapter}@{answer.adapter_version or 0}"
        site = sent.case.request.site
        self.metrics.answers.labels(sent.worker_id, site, adapter, check.outcome.value).inc()
        with self._lock:
            period = self._periods.setdefault(sent.worker_id, _Period())
            period.adapters.add(f"{site}={adapter}")
            if check.agrees:
                return
            period.mismatches += 1
            period.note(
                f"{sent.case.request_id} ({site}, {adapter}): {check.outcome.value}, "
                f"P(PASS) {answer.p_pass:.3f}, reference {check.reference_p_pass:.3f}, "
                f"reviewed {check.expected.value}"
                if check.p_pass is not None and check.reference_p_pass is not None
                else f"{sent.case.request_id} ({site}, {adapter}): {check.outcome.value}"
            )
            snapshot = _copy(period)
        self.metrics.mismatches.labels(sent.worker_id, site, adapter).inc()
        log.warning("worker %s: golden part %s %s", sent.worker_id, sent.case.request_id, check)
        # Said at once, not at the end of the period: this is what the alert waits for.
        self._publish_health(sent.worker_id, snapshot)

    def _publish_health(self, worker_id: str, period: _Period, idle: bool = False) -> None:
        failing = period.mismatches > 0 or period.missing > 0
        self.metrics.failing.labels(worker_id).set(1 if failing else 0)
        health = CanaryHealth(
            worker_id=worker_id,
            state="failing" if failing else "idle" if idle else "ok",
            adapters=sorted(period.adapters),
            checked=period.checked,
            mismatches=period.mismatches,
            missing=period.missing,
            problems=list(period.problems),
            period_s=self.settings.period_s,
            updated_at=utcnow(),
        )
        try:
            self.transport.publish(
                canary_health_topic(worker_id), health.to_payload(), qos=1, retain=True
            )
        except Exception:
            log.exception("could not publish the canary's health of worker %s", worker_id)
        self.on_health(health)


def _copy(period: _Period) -> _Period:
    return _Period(
        period.checked,
        period.mismatches,
        period.missing,
        set(period.adapters),
        list(period.problems),
    )
