"""Prometheus metrics of the resilience core, read at scrape time.

The hot path only bumps plain integers on its own objects; these collectors
turn status rows into metric families when Prometheus scrapes, so guarding an
exchange costs no metric-library call at all. Collectors register on the
`CollectorRegistry` they are given (never the global default), so each test
and each security server in one process has its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from security_server.resilience.breaker import BreakerState
from security_server.resilience.bulkhead import BulkheadSnapshot
from security_server.resilience.endpoints import EndpointHealth
from security_server.resilience.status import ServiceStatus

__all__ = ["BREAKER_STATE_VALUE", "ConsumerCollector", "ProviderCollector"]

#: `govbus_breaker_state` values.
BREAKER_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class ConsumerCollector:
    """Breakers, bulkheads, retries and provider-server health of a consumer SS."""

    def __init__(self, rows: Callable[[], Sequence[ServiceStatus]]) -> None:
        self._rows = rows

    def register(self, registry: CollectorRegistry) -> ConsumerCollector:
        registry.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self._rows())

    @staticmethod
    def _families(rows: Sequence[ServiceStatus]) -> list[Metric]:
        svc = ["service"]
        state = GaugeMetricFamily(
            "govbus_breaker_state",
            "Circuit breaker state per provider service (0 closed, 1 half-open, 2 open)",
            labels=svc,
        )
        transitions = CounterMetricFamily(
            "govbus_breaker_transitions",
            "Times a breaker entered a state",
            labels=["service", "state"],
        )
        refused = CounterMetricFamily(
            "govbus_breaker_rejections", "Calls refused at once by an open breaker", labels=svc
        )
        failure_rate = GaugeMetricFamily(
            "govbus_breaker_failure_rate", "Failure rate in the breaker window", labels=svc
        )
        slow_rate = GaugeMetricFamily(
            "govbus_breaker_slow_call_rate", "Slow-call rate in the breaker window", labels=svc
        )
        in_flight = GaugeMetricFamily(
            "govbus_bulkhead_in_flight", "Calls in flight per provider service", labels=svc
        )
        queued = GaugeMetricFamily(
            "govbus_bulkhead_queued", "Calls waiting for a bulkhead slot", labels=svc
        )
        shed = CounterMetricFamily(
            "govbus_bulkhead_shed", "Calls refused by the consumer bulkhead", labels=svc
        )
        retries = CounterMetricFamily("govbus_retries", "Retries of idempotent reads", labels=svc)
        throttled = CounterMetricFamily(
            "govbus_retries_throttled", "Retries refused by the retry token bucket", labels=svc
        )
        tokens = GaugeMetricFamily(
            "govbus_retry_tokens", "Tokens in the retry throttle bucket", labels=svc
        )
        failovers = CounterMetricFamily(
            "govbus_failovers",
            "Calls sent to another provider server before processing",
            labels=svc,
        )
        healthy = GaugeMetricFamily(
            "govbus_provider_server_healthy",
            "1 when a provider security server is in use for the service",
            labels=["service", "server"],
        )
        ejections = CounterMetricFamily(
            "govbus_provider_server_ejections",
            "Passive ejections of a provider security server",
            labels=["service", "server"],
        )
        for row in rows:
            sid, b, k = [row.service_id], row.breaker, row.bulkhead
            state.add_metric(sid, BREAKER_STATE_VALUE[b.state])
            for entered, count in b.transitions:
                transitions.add_metric([row.service_id, entered.value], count)
            refused.add_metric(sid, b.rejected)
            failure_rate.add_metric(sid, b.failure_rate)
            slow_rate.add_metric(sid, b.slow_call_rate)
            in_flight.add_metric(sid, k.in_flight)
            queued.add_metric(sid, k.queued)
            shed.add_metric(sid, k.shed)
            retries.add_metric(sid, row.retries)
            throttled.add_metric(sid, row.retries_throttled)
            tokens.add_metric(sid, row.retry_tokens)
            failovers.add_metric(sid, row.failovers)
            for ep in row.endpoints:
                labels = [row.service_id, ep.server_id]
                healthy.add_metric(labels, 1 if ep.health is EndpointHealth.HEALTHY else 0)
                ejections.add_metric(labels, ep.ejections)
        return [
            state,
            transitions,
            refused,
            failure_rate,
            slow_rate,
            in_flight,
            queued,
            shed,
            retries,
            throttled,
            tokens,
            failovers,
            healthy,
            ejections,
        ]


class ProviderCollector:
    """Load shedding of a provider SS, per published service."""

    def __init__(self, rows: Callable[[], Sequence[BulkheadSnapshot]]) -> None:
        self._rows = rows

    def register(self, registry: CollectorRegistry) -> ProviderCollector:
        registry.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self._rows())

    @staticmethod
    def _families(rows: Sequence[BulkheadSnapshot]) -> list[Metric]:
        svc = ["service"]
        in_flight = GaugeMetricFamily(
            "govbus_provider_in_flight", "Exchanges being handled per service", labels=svc
        )
        queued = GaugeMetricFamily(
            "govbus_provider_queued", "Exchanges waiting to be handled per service", labels=svc
        )
        shed = CounterMetricFamily(
            "govbus_provider_shed", "Exchanges refused to shed load", labels=svc
        )
        for row in rows:
            in_flight.add_metric([row.name], row.in_flight)
            queued.add_metric([row.name], row.queued)
            shed.add_metric([row.name], row.shed)
        return [in_flight, queued, shed]
