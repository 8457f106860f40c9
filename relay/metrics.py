"""Prometheus metrics of the relay, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "relay_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "relay_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.messages_stored = Counter(
            "relay_messages_stored_total", "messages accepted", registry=self.registry
        )
        self.recalls = Counter(
            "relay_recalls_total", "recall requests by outcome", ["outcome"], registry=self.registry
        )
        self.websockets = Gauge("relay_websockets_open", "open websockets", registry=self.registry)
        self.db_commit_seconds = Histogram(
            "relay_db_commit_seconds",
            "time to run and commit one write batch",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.db_batch_size = Histogram(
            "relay_db_batch_jobs",
            "writes committed together",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.db_ping_seconds = Gauge(
            "relay_db_ping_seconds", "latency of the last readiness query", registry=self.registry
        )

    def on_commit(self, jobs: int, seconds: float) -> None:
        self.db_batch_size.observe(jobs)
        self.db_commit_seconds.observe(seconds)
