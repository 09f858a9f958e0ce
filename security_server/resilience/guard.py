"""The one entry point the consumer security server calls per exchange.

`ExchangeGuard` holds, per provider service of the global configuration, a
circuit breaker, a bulkhead, a retry throttle and the set of provider security
servers with their health (`ServiceGuard`). For one exchange:

    answer = await guard.run(service_id, send, idempotent=method.idempotent,
                             time_left=context.time_remaining())

where `send(endpoint, attempt, time_left)` makes one call to one provider
server and returns its answer or raises. `run`:
1. sets the deadline (the caller's, or the service's default) — `time_left` passed
   to `send` is always the time left, so the deadline propagates hop to hop;
2. per attempt: asks the breaker (refused at once when open), takes a bulkhead
   slot (refused at once when full; queue wait bounded by the deadline), picks
   a provider server, and on a failure where nothing was processed (connection
   refused, server shedding) fails over to another server within the same
   attempt;
3. retries idempotent reads within the A6 rules (retry.py).

A new global configuration rebuilds only what changed: a service whose breaker
settings are unchanged keeps its breaker state, servers that stay keep their
health. `snapshot()` gives immutable rows for `govbus ss status` and metrics.

This module must never block the event loop; the only I/O it starts is the
active health checks (`start()` / `check_health()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias, TypeVar

from prometheus_client import CollectorRegistry

from govbus.errors import UnknownService
from govbus.globalconf import GlobalConfView
from security_server.resilience.breaker import BreakerListener, BreakerState, CircuitBreaker
from security_server.resilience.bulkhead import Bulkhead
from security_server.resilience.clock import Clock, Deadline, steady
from security_server.resilience.endpoints import (
    ChannelFactory,
    Endpoint,
    EndpointSet,
    HealthProber,
)
from security_server.resilience.metrics import ConsumerCollector
from security_server.resilience.outcome import failover_allowed
from security_server.resilience.retry import RetryStats, RetryThrottle, call_with_retries
from security_server.resilience.settings import ServiceSettings, settings_of_view
from security_server.resilience.status import ServiceStatus

__all__ = ["ExchangeGuard", "Send", "ServiceGuard"]

log = logging.getLogger("govbus.resilience")

T = TypeVar("T")

#: One call to one provider server: (server, attempt number from 1, seconds left) -> answer.
Send: TypeAlias = Callable[[Endpoint, int, float], Awaitable[T]]


def _log_transition(breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
    if new is BreakerState.OPEN:
        snap = breaker.snapshot()
        log.warning(
            "%s: circuit breaker %s -> open for %.1f s (failure rate %.0f%%, slow %.0f%%)",
            breaker.name,
            old.value,
            breaker.config.open_s,
            snap.failure_rate * 100,
            snap.slow_call_rate * 100,
        )
    else:
        log.info("%s: circuit breaker %s -> %s", breaker.name, old.value, new.value)


class ServiceGuard:
    """Breaker, bulkhead, retry throttle and provider servers of one service."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        clock: Clock,
        rng: random.Random,
        listeners: tuple[BreakerListener, ...] = (),
    ) -> None:
        sid = settings.service_id
        self.settings = settings
        self._listeners = (_log_transition, *listeners)
        self.breaker = CircuitBreaker(
            sid,
            settings.breaker,
            clock=clock,
            policy=settings.outcomes,
            listeners=self._listeners,
        )
        self.bulkhead = Bulkhead(sid, settings.bulkhead, clock=clock)
        self.throttle = RetryThrottle(settings.throttle)
        self.endpoints = EndpointSet(
            sid,
            settings.endpoints,
            settings.outlier,
            clock=clock,
            policy=settings.outcomes,
            rng=rng,
        )
        self.stats = RetryStats()
        self._clock = clock

    def reconfigure(self, new: ServiceSettings) -> None:
        """Put `new` in force, keeping the state of every part whose settings did not change."""
        old = self.settings
        sid = new.service_id
        if new.breaker != old.breaker:
            log.info("%s: breaker settings changed; its window starts afresh", sid)
            self.breaker = CircuitBreaker(
                sid,
                new.breaker,
                clock=self._clock,
                policy=new.outcomes,
                listeners=self._listeners,
            )
        self.breaker.policy = new.outcomes
        if new.bulkhead != old.bulkhead:
            # Calls in flight release into the bulkhead they were admitted by.
            fresh = Bulkhead(sid, new.bulkhead, clock=self._clock)
            fresh.admitted, fresh.shed = self.bulkhead.admitted, self.bulkhead.shed
            self.bulkhead = fresh
        if new.throttle != old.throttle:
            self.throttle = RetryThrottle(new.throttle)
        self.endpoints.config = new.outlier
        self.endpoints.policy = new.outcomes
        self.endpoints.update(new.endpoints)
        self.settings = new

    async def attempt(self, send: Send[T], deadline: Deadline, number: int) -> T:
        """One attempt: breaker, bulkhead slot, then a server (failing over if allowed)."""
        permit = self.breaker.allow()
        bulkhead = self.bulkhead
        if not bulkhead.try_acquire():
            try:
                await bulkhead.acquire(deadline.remaining())
            except BaseException:
                permit.release()
                raise
        endpoints = self.endpoints
        tried: list[Endpoint] = []
        try:
            while True:
                try:
                    endpoint = endpoints.pick(tried)
                    time_left = deadline.check("before the call could be sent")
                except BaseException:
                    permit.release()
                    raise
                endpoints.begin(endpoint)
                try:
                    answer = await send(endpoint, number, time_left)
                except BaseException as error:
                    endpoints.end(endpoint, error)
                    if isinstance(error, Exception) and failover_allowed(error):
                        tried.append(endpoint)
                        if endpoints.has_alternative(tried) and deadline.remaining() > 0:
                            endpoints.failovers += 1
                            log.info(
                                "%s: %s refused before processing (%s); trying another server",
                                self.settings.service_id,
                                endpoint.server_id,
                                type(error).__name__,
                            )
                            continue
                    permit.done(error)
                    raise
                endpoints.end(endpoint, None)
                permit.done(None)
                return answer
        finally:
            bulkhead.release()

    def status(self) -> ServiceStatus:
        return ServiceStatus(
            service_id=self.settings.service_id,
            breaker=self.breaker.snapshot(),
            bulkhead=self.bulkhead.snapshot(),
            endpoints=self.endpoints.snapshot(),
            retry_tokens=self.throttle.tokens,
            retry_max_tokens=self.throttle.config.max_tokens,
            retries=self.stats.retries,
            retries_throttled=self.stats.throttled,
            failovers=self.endpoints.failovers,
        )


class ExchangeGuard:
    """Per-service resilience of a consumer security server; see the module docstring."""

    def __init__(
        self,
        view: GlobalConfView | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: CollectorRegistry | None = None,
        channel_factory: ChannelFactory | None = None,
        health_interval: float = 2.0,
        health_timeout: float = 1.0,
        breaker_listeners: tuple[BreakerListener, ...] = (),
    ) -> None:
        self._clock = steady(clock)
        #: Told of every breaker state change of every service (audit, tracing).
        self.breaker_listeners = breaker_listeners
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter and load spreading only
        self._guards: dict[str, ServiceGuard] = {}
        self._prober = (
            HealthProber(channel_factory, timeout=health_timeout) if channel_factory else None
        )
        self.health_interval = health_interval
        self._probing = False
        self._task: asyncio.Task[None] | None = None
        if metrics is not None:
            ConsumerCollector(self.snapshot).register(metrics)
        if view is not None:
            self.update(view)

    # --- configuration -------------------------------------------------------------

    def update(self, view: GlobalConfView) -> None:
        """Take a new global configuration (usable as a `GlobalConfClient` listener).

        Every service's settings are validated first; if one is refused
        (`CONFIG_INVALID`) nothing changes.
        """
        self.apply(settings_of_view(view))

    def apply(self, settings: Mapping[str, ServiceSettings]) -> None:
        fresh: dict[str, ServiceGuard] = {}
        for service_id, wanted in settings.items():
            guard = self._guards.get(service_id)
            if guard is None:
                guard = ServiceGuard(
                    wanted, clock=self._clock, rng=self._rng, listeners=self.breaker_listeners
                )
                guard.endpoints.probed = self._probing
            elif guard.settings != wanted:
                guard.reconfigure(wanted)
            fresh[service_id] = guard
        self._guards = fresh

    def service(self, service_id: str) -> ServiceGuard:
        guard = self._guards.get(service_id)
        if guard is None:
            raise UnknownService(
                f"service {service_id} is not published in the global configuration"
            )
        return guard

    # --- the exchange path ---------------------------------------------------------

    async def run(
        self,
        service_id: str,
        send: Send[T],
        *,
        idempotent: bool,
        time_left: float | None = None,
    ) -> T:
        """Make one exchange through the guards of `service_id`; see the module docstring."""
        guard = self._guards.get(service_id) or self.service(service_id)
        settings = guard.settings
        deadline = Deadline.after(time_left, settings.default_deadline, self._clock)
        return await call_with_retries(
            functools.partial(guard.attempt, send, deadline),
            idempotent=idempotent,
            deadline=deadline,
            policy=settings.retry,
            throttle=guard.throttle,
            outcomes=settings.outcomes,
            sleep=self._sleep,
            rng=self._rng,
            stats=guard.stats,
        )

    # --- status --------------------------------------------------------------------

    def snapshot(self) -> tuple[ServiceStatus, ...]:
        return tuple(g.status() for _, g in sorted(self._guards.items()))

    # --- active health checks ------------------------------------------------------

    async def check_health(self) -> None:
        """One round of health checks of every provider server of every service."""
        if self._prober is None:
            return
        by_endpoint: dict[Endpoint, list[EndpointSet]] = {}
        for guard in self._guards.values():
            guard.endpoints.probed = True
            for endpoint in guard.endpoints.endpoints:
                by_endpoint.setdefault(endpoint, []).append(guard.endpoints)
        self._probing = True
        endpoints = list(by_endpoint)
        results = await asyncio.gather(*(self._prober.check(e) for e in endpoints))
        for endpoint, ok in zip(endpoints, results, strict=True):
            for endpoint_set in by_endpoint[endpoint]:
                endpoint_set.record_check(endpoint, ok)

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.check_health()
            except Exception:
                log.exception("health check round failed")
            await asyncio.sleep(self.health_interval)

    def start(self) -> None:
        """Start periodic health checks (needs a `channel_factory`)."""
        if self._prober is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._health_loop(), name="resilience-health-checks"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._prober is not None:
            await self._prober.aclose()
