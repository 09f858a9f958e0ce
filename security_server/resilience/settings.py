"""Resilience settings of a provider service, read from the global configuration.

`service_settings` turns a published `govbus.v1.Service` (its `resilience`
`BreakerSettings`, default deadline and servers) into immutable, validated
values; every field left at zero takes the counter-side default below (the
reasons are in docs/adr/0005-resilience.md). A value that makes no sense is
refused with `CONFIG_INVALID` naming the service and the field, so the
registry can run the same check before it signs a configuration.

Pure functions; this module must never perform I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from govbus.errors import ConfigInvalid
from govbus.globalconf import GlobalConfView
from govbus.pb.govbus.v1 import globalconf_pb2
from security_server.resilience.breaker import BreakerConfig, WindowKind
from security_server.resilience.bulkhead import BulkheadConfig
from security_server.resilience.endpoints import Endpoint, OutlierConfig
from security_server.resilience.outcome import OutcomePolicy
from security_server.resilience.retry import MAX_ATTEMPTS, RetryPolicy, ThrottleConfig

__all__ = [
    "DEFAULT_DEADLINE_S",
    "ServiceSettings",
    "service_settings",
    "settings_of_view",
]

#: Deadline of an exchange whose caller set none and whose service publishes none.
DEFAULT_DEADLINE_S = 5.0
#: Slow-call threshold when the service sets none (capped at its deadline).
DEFAULT_SLOW_CALL_S = 2.0


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    service_id: str
    default_deadline: float
    breaker: BreakerConfig
    bulkhead: BulkheadConfig
    retry: RetryPolicy
    throttle: ThrottleConfig
    outlier: OutlierConfig
    outcomes: OutcomePolicy
    provider: BulkheadConfig  # provider-side load shedding
    endpoints: tuple[Endpoint, ...]


def _or(value: float, default: float) -> float:
    return value if value else default


def service_settings(
    service: globalconf_pb2.Service,
    servers: Mapping[str, globalconf_pb2.SecurityServer] | None = None,
) -> ServiceSettings:
    """Validated settings of one service (servers unknown to `servers` are left out)."""
    r = service.resilience
    deadline = service.default_deadline_ms / 1000 if service.default_deadline_ms else None
    default_deadline = deadline or DEFAULT_DEADLINE_S
    try:
        breaker = BreakerConfig(
            window=WindowKind.TIME
            if r.window == globalconf_pb2.BREAKER_WINDOW_TIME
            else WindowKind.COUNT,
            window_size=int(_or(r.window_size, 20)),
            window_seconds=_or(r.window_seconds, 10.0),
            minimum_calls=int(_or(r.minimum_calls, 10)),
            failure_rate_threshold=_or(r.failure_rate_threshold, 0.5),
            slow_call_rate_threshold=_or(r.slow_call_rate_threshold, 0.8),
            slow_call_s=(
                r.slow_call_ms / 1000
                if r.slow_call_ms
                else min(DEFAULT_SLOW_CALL_S, default_deadline)
            ),
            open_s=_or(r.open_ms, 5000) / 1000,
            half_open_probes=int(_or(r.half_open_probes, 2)),
        )
        bulkhead = BulkheadConfig(
            max_in_flight=int(_or(r.max_in_flight, 64)), max_queue=int(_or(r.max_queue, 16))
        )
        retry = RetryPolicy(
            # A6: a larger published value is treated as the client's maximum.
            max_attempts=min(int(_or(r.retry_max_attempts, 3)), MAX_ATTEMPTS),
            initial_backoff=_or(r.retry_initial_backoff_ms, 50) / 1000,
            max_backoff=_or(r.retry_max_backoff_ms, 1000) / 1000,
            multiplier=_or(r.retry_backoff_multiplier, 2.0),
        )
        throttle = ThrottleConfig(
            max_tokens=_or(r.retry_max_tokens, 10), token_ratio=_or(r.retry_token_ratio, 0.1)
        )
        outlier = OutlierConfig(
            consecutive_failures=int(_or(r.eject_consecutive_failures, 5)),
            base_ejection_s=_or(r.eject_base_ms, 10_000) / 1000,
            max_ejection_s=_or(r.eject_max_ms, 120_000) / 1000,
            max_ejected_fraction=_or(r.max_ejected_fraction, 0.5),
        )
        provider = BulkheadConfig(
            max_in_flight=int(_or(r.provider_max_concurrent, 64)),
            max_queue=int(_or(r.provider_max_queue, 32)),
        )
        outcomes = OutcomePolicy.from_codes(r.failure_codes)
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"resilience settings of {service.id} refused: {exc.message}") from None
    endpoints: tuple[Endpoint, ...] = ()
    if servers is not None:
        endpoints = tuple(
            Endpoint(server_id, servers[server_id].address)
            for server_id in dict.fromkeys(service.servers)  # listed twice = once
            # A server registered before its address is known cannot be called yet.
            if server_id in servers and servers[server_id].address
        )
    return ServiceSettings(
        service_id=service.id,
        default_deadline=default_deadline,
        breaker=breaker,
        bulkhead=bulkhead,
        retry=retry,
        throttle=throttle,
        outlier=outlier,
        outcomes=outcomes,
        provider=provider,
        endpoints=endpoints,
    )


def settings_of_view(view: GlobalConfView) -> dict[str, ServiceSettings]:
    """Settings of every published service; one bad service refuses them all."""
    return {sid: service_settings(service, view.servers) for sid, service in view.services.items()}
