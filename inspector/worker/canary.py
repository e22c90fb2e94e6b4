"""Golden parts sent by the canary: judged like any request, answered only to the canary.

The canary (inspector.canary) sends each worker copies of the golden parts on the worker's
own canary topic. They are validated, batched and judged on the same path as a station's
requests (same batcher, engine and site adapters), so an answer says what this worker and
adapter would answer a station now. What differs is after the engine: the verdict is
published on the worker's canary verdict topic, never stored (no inspection, no verdict, so
never in the review queue or the numbers) and never published on a station's topic. A copy
that cannot be judged is acked without an answer: the canary counts it missing.
"""

from __future__ import annotations

import logging
import time

from inspector.mqtt import Message, MqttTransport
from inspector.protocol import (
    VerdictMessage,
    canary_verdict_topic,
    is_canary_topic,
    judgement_of,
    utcnow,
)
from inspector.settings import LimitSettings
from inspector.worker.committer import Decided, Explained, Known, Outcome, message_of
from inspector.worker.intake import Accepted, BucketOf, Refused, validate
from inspector.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class CanaryDesk:
    """Takes the canary's golden parts in and sends their verdicts back to the canary."""

    def __init__(
        self,
        transport: MqttTransport,
        worker_id: str,
        limits: LimitSettings,
        bucket_of: BucketOf,
        metrics: WorkerMetrics,
    ) -> None:
        self._transport = transport
        self._topic = canary_verdict_topic(worker_id)
        self._worker_id = worker_id
        self._limits = limits
        self._bucket_of = bucket_of
        self._metrics = metrics

    def validate(self, message: Message, received: float) -> Accepted | Refused:
        """A golden part checked like a station's request, except for the topic it came on."""
        return validate(message, self._limits, received, self._bucket_of, check_topic=False)

    def divert(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Answer the golden parts among `outcomes`; return the stations' outcomes."""
        rest: list[Outcome] = []
        for outcome in outcomes:
            if not is_canary_topic(message_of(outcome).topic):
                rest.append(outcome)
            elif isinstance(outcome, Decided):
                self._answer(outcome)
            elif isinstance(outcome, Refused | Known):
                log.warning(
                    "golden part %s not judged (%s)",
                    outcome.request_id if isinstance(outcome, Refused) else outcome.item.request_id,
                    outcome.error.code.value if isinstance(outcome, Refused) else "repeated",
                )
                self._transport.ack(message_of(outcome))
            # An Explained golden part was acked with its verdict: its rationale is not sent.
            elif not isinstance(outcome, Explained):  # pragma: no cover - Outcome is closed
                rest.append(outcome)
        return rest

    def _answer(self, decided: Decided) -> None:
        req = decided.item.request
        message = VerdictMessage(
            request_id=req.request_id,
            site=req.site,
            line=req.line,
            station=req.station,
            part_id=req.part_id,
            **judgement_of(decided.result),
            worker_id=self._worker_id,
            latency_ms=(time.monotonic() - decided.item.received) * 1000,
            decided_at=utcnow(),
        )
        try:
            self._transport.publish(self._topic, message.to_payload(), qos=1)
        except Exception:
            # Acked anyway: the canary counts an answer that never came as missing.
            log.exception("could not publish the answer to golden part %s", req.request_id)
        self._metrics.canary_answers.inc()
        self._transport.ack(decided.item.message)
