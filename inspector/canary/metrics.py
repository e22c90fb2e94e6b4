"""The canary's Prometheus metrics, per worker (and per site adapter for answers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class CanaryMetrics:
    """Counters and gauges of one canary process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sent = Counter(
            "inspector_canary_sent_total",
            "Golden parts sent to a worker",
            ["worker"],
            registry=r,
        )
        self.answers = Counter(
            "inspector_canary_answers_total",
            "Golden-part answers judged, by worker, site, adapter (name@version) and outcome "
            "(agrees, leaning, drift)",
            ["worker", "site", "adapter", "outcome"],
            registry=r,
        )
        self.mismatches = Counter(
            "inspector_canary_mismatches_total",
            "Golden-part answers unlike the reviewed one (wrong leaning or P(PASS) drift)",
            ["worker", "site", "adapter"],
            registry=r,
        )
        self.missing = Counter(
            "inspector_canary_missing_total",
            "Golden parts a worker did not answer within the canary period",
            ["worker", "site", "adapter"],
            registry=r,
        )
        self.failing = Gauge(
            "inspector_canary_failing",
            "1 while the worker's current or last period had a mismatch or a missing answer",
            ["worker"],
            registry=r,
        )
        self.last_period = Gauge(
            "inspector_canary_last_period_timestamp_seconds",
            "When the canary last started a period (Unix time)",
            registry=r,
        )
