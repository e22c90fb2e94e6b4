"""Prometheus metrics of one worker, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    """Requests, verdicts, rejections, batches, queue depth, latencies and site adapters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "inspector_requests_total", "Requests received", ["outcome"], registry=r
        )
        self.rejections = Counter(
            "inspector_rejections_total", "Requests rejected, by reason code", ["code"], registry=r
        )
        # Per site and verdict word: the REVIEW share per site is what an adapter changes.
        self.verdicts = Counter(
            "inspector_verdicts_total", "Verdicts decided, by site", ["site", "verdict"], registry=r
        )
        self.batch_size = Histogram(
            "inspector_batch_size",
            "Requests per inference batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.queue_depth = Gauge(
            "inspector_queue_depth", "Validated requests waiting for inference", registry=r
        )
        self.queue_wait = Histogram(
            "inspector_queue_wait_seconds",
            "Receipt to start of inference",
            buckets=_LATENCY,
            registry=r,
        )
        self.inference = Histogram(
            "inspector_inference_seconds", "Engine time per batch", buckets=_LATENCY, registry=r
        )
        self.end_to_end = Histogram(
            "inspector_end_to_end_seconds",
            "Receipt to verdict published",
            buckets=_LATENCY,
            registry=r,
        )
        self.rationale_latency = Histogram(
            "inspector_rationale_seconds",
            "Receipt to rationale published (the verdict is published before it)",
            buckets=_LATENCY,
            registry=r,
        )
        self.rationales = Counter(
            "inspector_rationales_total",
            "Rationale updates published, by state (produced, skipped: a transcript only, "
            "not_produced)",
            ["state"],
            registry=r,
        )
        self.store_errors = Counter(
            "inspector_store_errors_total", "Failed commits (retried)", registry=r
        )
        self.settle_timeouts = Counter(
            "inspector_settle_timeouts_total",
            "Requests not answered within worker.settle_timeout_s, rejected by the watchdog",
            registry=r,
        )
        self.late_results = Counter(
            "inspector_late_results_total",
            "Outcomes dropped because the watchdog had already rejected their request",
            registry=r,
        )
        self.healthy = Gauge(
            "inspector_worker_healthy",
            "1 while every group is committed or rejected; 0 after one could be neither",
            registry=r,
        )
        self.healthy.set(1)
        self.adapter_version = Gauge(
            "inspector_worker_adapter_version",
            "Registry version of the site adapter served per site (0: none, the base)",
            ["site"],
            registry=r,
        )
        self.adapter_failed = Gauge(
            "inspector_worker_adapter_failed",
            "1 while the site's announced adapter could not be loaded (the previous one serves)",
            ["site"],
            registry=r,
        )
        self.adapter_loads = Counter(
            "inspector_worker_adapter_loads_total",
            "Site adapters loaded (at start-up or announced)",
            ["site"],
            registry=r,
        )
        self.adapter_load_failures = Counter(
            "inspector_worker_adapter_load_failures_total",
            "Announced or active site adapters that could not be served, by reason code",
            ["site", "code"],
            registry=r,
        )
        self.adapter_announcements_refused = Counter(
            "inspector_worker_adapter_announcements_refused_total",
            "Malformed adapter announcements on the control topic, by reason code",
            ["code"],
            registry=r,
        )
        self.canary_answers = Counter(
            "inspector_worker_canary_answers_total",
            "Golden parts from the canary judged and answered (never stored or counted)",
            registry=r,
        )
