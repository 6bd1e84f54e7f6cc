"""Prometheus metrics, in a registry of their own so several servers can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from resnest.serve.batcher import BatchStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Request counts by endpoint and status; request, queue and compute latency; batch sizes."""

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "resnest_requests", "HTTP requests by endpoint and status code",
            ["endpoint", "code"], registry=self.registry)
        self.request_seconds = Histogram(
            "resnest_request_duration_seconds", "Time from request received to response ready",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.queue_seconds = Histogram(
            "resnest_queue_duration_seconds", "Time a request waited for its batch to start",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.compute_seconds = Histogram(
            "resnest_compute_duration_seconds", "Time of one model call (one batch)",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        batch_buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, max_batch_size})
        self.batch_size = Histogram(
            "resnest_batch_size", "Images per model call",
            buckets=[float(b) for b in batch_buckets], registry=self.registry)
        self.queue_depth = Gauge(
            "resnest_queue_depth", "Requests waiting for a batch", registry=self.registry)
        self.ready = Gauge(
            "resnest_model_ready", "1 once the model is loaded and warmed up",
            registry=self.registry)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.batch_size)
        self.compute_seconds.observe(stats.infer_seconds)
        for seconds in stats.queue_seconds:
            self.queue_seconds.observe(seconds)
