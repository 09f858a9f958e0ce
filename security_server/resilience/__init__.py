"""Resilience core of the security servers: a failing registry fails alone and fast.

Consumer side: per provider service a circuit breaker, a bulkhead, deadlines,
throttled retries of idempotent reads, and high availability over the
provider security servers of the service (`ExchangeGuard.run` composes them
for one exchange). Provider side: load shedding per service (`LoadShedder`).
Everything takes an injected clock and is observable through immutable status
rows (`render_status`) and Prometheus collectors.

This package must never import the security server's exchange code: the
server depends on it, not the other way round.
"""

from security_server.resilience.breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
    WindowKind,
)
from security_server.resilience.bulkhead import (
    Bulkhead,
    BulkheadConfig,
    BulkheadSnapshot,
    LoadShedder,
)
from security_server.resilience.clock import Clock, Deadline, ManualClock, SteadyClock
from security_server.resilience.endpoints import (
    ChannelFactory,
    Endpoint,
    EndpointHealth,
    EndpointSet,
    EndpointStatus,
    HealthProber,
    OutlierConfig,
)
from security_server.resilience.guard import ExchangeGuard, Send, ServiceGuard
from security_server.resilience.metrics import ConsumerCollector, ProviderCollector
from security_server.resilience.outcome import (
    DEFAULT_FAILURE_CODES,
    NO_RETRY,
    PUSHBACK_KEY,
    UNPROCESSED_KEY,
    Outcome,
    OutcomePolicy,
    failover_allowed,
    parse_pushback,
    pushback_metadata,
    pushback_of,
    unprocessed,
)
from security_server.resilience.retry import (
    MAX_ATTEMPTS,
    RetryPolicy,
    RetryStats,
    RetryThrottle,
    ThrottleConfig,
    call_with_retries,
)
from security_server.resilience.settings import (
    DEFAULT_DEADLINE_S,
    ServiceSettings,
    service_settings,
    settings_of_view,
)
from security_server.resilience.status import ServiceStatus, render_shedding, render_status

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_FAILURE_CODES",
    "MAX_ATTEMPTS",
    "NO_RETRY",
    "PUSHBACK_KEY",
    "UNPROCESSED_KEY",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadSnapshot",
    "ChannelFactory",
    "CircuitBreaker",
    "Clock",
    "ConsumerCollector",
    "Deadline",
    "Endpoint",
    "EndpointHealth",
    "EndpointSet",
    "EndpointStatus",
    "ExchangeGuard",
    "HealthProber",
    "LoadShedder",
    "ManualClock",
    "Outcome",
    "OutcomePolicy",
    "OutlierConfig",
    "Permit",
    "ProviderCollector",
    "RetryPolicy",
    "RetryStats",
    "RetryThrottle",
    "Send",
    "ServiceGuard",
    "ServiceSettings",
    "ServiceStatus",
    "SteadyClock",
    "ThrottleConfig",
    "WindowKind",
    "call_with_retries",
    "failover_allowed",
    "parse_pushback",
    "pushback_metadata",
    "pushback_of",
    "render_shedding",
    "render_status",
    "service_settings",
    "settings_of_view",
    "unprocessed",
]
