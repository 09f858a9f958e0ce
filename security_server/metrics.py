"""Prometheus metrics of one security server.

Registered on a registry object passed in (never the process-wide default) so
that several servers — or tests — in one process keep separate counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SsMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class SsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.exchanges = Counter(
            "govbus_exchanges",
            "Exchanges handled, by side, client, service and result code",
            ["side", "client", "service", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "govbus_exchange_seconds",
            "Time an exchange spent in this security server, upstream included",
            ["side", "service"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.log_append = Histogram(
            "govbus_log_append_seconds",
            "Time from handing a record to the audit log until it is durable",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.conf_version = Gauge(
            "govbus_globalconf_version",
            "Version of the global configuration in force",
            registry=registry,
        )
        self.conf_expires = Gauge(
            "govbus_globalconf_expires_timestamp_seconds",
            "When the global configuration in force expires",
            registry=registry,
        )
        self.consent_decisions = Counter(
            "govbus_consent_decisions",
            "Consent decisions of the provider side, by service, justification and result",
            ["service", "justification", "result"],
            registry=registry,
        )
        # Label values are cached children: creating them on the hot path is the costly part.
        self._children: dict[tuple[str, str, str, str], Counter] = {}

    def count(self, side: str, client: str, service: str, code: str) -> None:
        key = (side, client, service, code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.exchanges.labels(*key)
        child.inc()
