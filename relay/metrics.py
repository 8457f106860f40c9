"""Prometheus metrics of the relay, on a registry of its own.

Two views of messages: ``relay_messages_stored_total`` counts what was
accepted since the process started (sends and recall replacements), and
``relay_messages_held{state}`` is what the database holds now, refreshed
from its statistics every ``stats_interval`` (see :mod:`.gauges`).  The
database is timed three ways: each write batch and its commit, each read,
and the readiness ping.
"""

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
        self.requests_in_flight = Gauge(
            "relay_requests_in_flight",
            "HTTP requests being handled now (a scrape of /metrics counts itself)",
            registry=self.registry,
        )
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
        self.db_read_seconds = Histogram(
            "relay_db_read_seconds",
            "time to run one database read",
            registry=self.registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
        )
        self.db_checkpoints = Counter(
            "relay_db_checkpoints_total",
            "WAL checkpoints by result (truncated: purged bytes left the WAL; busy: retried)",
            ["result"],
            registry=self.registry,
        )
        self.db_scrub_seconds = Histogram(
            "relay_db_scrub_seconds",
            "time to rewrite the database after purges (SQLite: VACUUM, during which writes "
            "wait; PostgreSQL: VACUUM FULL table by table, during which that table waits)",
            registry=self.registry,
        )
        self.db_ping_seconds = Gauge(
            "relay_db_ping_seconds", "latency of the last readiness query", registry=self.registry
        )
        self.messages_held = Gauge(
            "relay_messages_held",
            "messages the database holds now, by state (live ones hold ciphertext)",
            ["state"],
            registry=self.registry,
        )
        self.ciphertext_bytes_held = Gauge(
            "relay_ciphertext_bytes_held",
            "ciphertext the database holds now, in bytes",
            registry=self.registry,
        )
        self.events_queued = Gauge(
            "relay_events_queued",
            "events waiting for devices to acknowledge them",
            registry=self.registry,
        )

    # the storage engine reports here (from its threads; prometheus-client is thread-safe)
    def on_commit(self, jobs: int, seconds: float) -> None:
        self.db_batch_size.observe(jobs)
        self.db_commit_seconds.observe(seconds)

    def on_read(self, seconds: float) -> None:
        self.db_read_seconds.observe(seconds)

    def on_checkpoint(self, truncated: bool) -> None:
        self.db_checkpoints.labels("truncated" if truncated else "busy").inc()

    def on_scrub(self, seconds: float) -> None:
        self.db_scrub_seconds.observe(seconds)
