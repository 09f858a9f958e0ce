"""High availability: the provider security servers of one service and their health.

A service may be published behind several provider security servers. The
consumer side keeps, per server:
- passive outlier detection (as Envoy does): after `consecutive_failures`
  failures in a row that are the server's own (connection refused, the server
  shedding, a timeout — not the registry behind every server answering
  `UNAVAILABLE`), the server is ejected for base x times-ejected seconds,
  capped; never more than `max_ejected_fraction` of the servers, and never the
  last one;
- active health checks: the standard gRPC health service of each server, called
  through a channel factory the security server passes in (so it is mTLS in
  production and plaintext in tests). A server whose check fails is avoided;
  an ejected server comes back only once its ejection time is over and a check
  succeeds (without a prober it comes back when the time is over).

`pick()` spreads calls over the servers in use with the power of two choices
on calls in flight; when none is in use it falls back to all of them (panic
mode, as Envoy): the breaker, not the picker, decides to stop calling.

The set is mutated only from one event loop; probing does I/O only inside
`HealthProber`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from govbus.errors import ConfigInvalid, GovbusError, Origin, ServiceUnavailable
from security_server.resilience.clock import Clock, steady
from security_server.resilience.outcome import GUARD_KEY, Outcome, OutcomePolicy

__all__ = [
    "ChannelFactory",
    "Endpoint",
    "EndpointHealth",
    "EndpointSet",
    "EndpointStatus",
    "HealthProber",
    "OutlierConfig",
]

log = logging.getLogger("govbus.resilience")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One provider security server of a service."""

    server_id: str  # KZ/GOV/<BIN>/<server code>
    address: str  # host:port of its provider (mTLS) endpoint


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    consecutive_failures: int = 5
    base_ejection_s: float = 10.0
    max_ejection_s: float = 120.0
    max_ejected_fraction: float = 0.5

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 1 <= self.consecutive_failures <= 10_000:
            problems.append(
                f"eject_consecutive_failures must be in 1..10000, got {self.consecutive_failures}"
            )
        if not (0 < self.base_ejection_s <= 3600 and math.isfinite(self.base_ejection_s)):
            problems.append(f"eject base time must be in (0, 3600] s, got {self.base_ejection_s}")
        if not (self.base_ejection_s <= self.max_ejection_s <= 86_400):
            problems.append(f"eject max time must be in [base, 86400] s, got {self.max_ejection_s}")
        if not 0 <= self.max_ejected_fraction <= 1:
            problems.append(
                f"max_ejected_fraction must be in [0, 1], got {self.max_ejected_fraction}"
            )
        if problems:
            raise ConfigInvalid("outlier detection settings refused: " + "; ".join(problems))


class EndpointHealth(enum.Enum):
    HEALTHY = "healthy"
    EJECTED = "ejected"  # passive: too many failures in a row
    UNHEALTHY = "unhealthy"  # active: its health check failed


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    server_id: str
    address: str
    health: EndpointHealth
    in_flight: int
    consecutive_failures: int
    ejected_remaining: float  # seconds (0 unless ejected)
    times_ejected: int
    ejections: int  # since start
    last_check_ok: bool | None  # None = never checked


class _State:
    __slots__ = (
        "check_ok",
        "consecutive",
        "ejected_until",
        "ejections",
        "endpoint",
        "in_flight",
        "returned_at",
        "times_ejected",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.in_flight = 0
        self.consecutive = 0
        self.ejected_until: float | None = None
        self.times_ejected = 0
        self.ejections = 0
        self.returned_at = 0.0
        self.check_ok: bool | None = None


class EndpointSet:
    """The provider security servers of one service, with their health."""

    def __init__(
        self,
        service_id: str,
        endpoints: Sequence[Endpoint],
        config: OutlierConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        policy: OutcomePolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.service_id = service_id
        self.config = config or OutlierConfig()
        self.policy = policy or OutcomePolicy()
        self._now = steady(clock)
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not a secret
        self._states: dict[str, _State] = {}
        #: Set when active checks run: ejected servers then wait for a good check.
        self.probed = False
        self.failovers = 0
        self.update(endpoints)

    # --- membership --------------------------------------------------------------

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """New membership; servers that stay (same id and address) keep their health."""
        fresh: dict[str, _State] = {}
        for endpoint in endpoints:
            old = self._states.get(endpoint.server_id)
            fresh[endpoint.server_id] = (
                old if old is not None and old.endpoint == endpoint else _State(endpoint)
            )
        self._states = fresh

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(s.endpoint for s in self._states.values())

    # --- choosing ----------------------------------------------------------------

    def _usable(self, state: _State, now: float) -> bool:
        if state.check_ok is False:
            return False
        until = state.ejected_until
        if until is None:
            return True
        if now < until or self.probed:
            return False
        self._return(state, now, "ejection time over")
        return True

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint:
        """A server to send the next call to (never one in `exclude`)."""
        states = self._states
        if len(states) == 1 and not exclude:
            (only,) = states.values()
            return only.endpoint
        now = self._now()
        candidates = [
            s for s in states.values() if s.endpoint not in exclude and self._usable(s, now)
        ]
        if not candidates:
            # Panic mode: nobody looks healthy, so health is not a useful signal.
            candidates = [s for s in states.values() if s.endpoint not in exclude]
            if not candidates:
                raise ServiceUnavailable(
                    f"no provider security server left to try for {self.service_id}"
                    if exclude
                    else f"no provider security server is published for {self.service_id}",
                    origin=Origin.REGISTRY if not exclude else Origin.PROVIDER_SS,
                    metadata={GUARD_KEY: "endpoints"},  # final: a retry would find none either
                )
        if len(candidates) == 1:
            return candidates[0].endpoint
        first, second = self._rng.sample(candidates, 2)
        return (first if first.in_flight <= second.in_flight else second).endpoint

    def has_alternative(self, exclude: Collection[Endpoint]) -> bool:
        return any(s.endpoint not in exclude for s in self._states.values())

    # --- outcomes ----------------------------------------------------------------

    def begin(self, endpoint: Endpoint) -> None:
        state = self._states.get(endpoint.server_id)
        if state is not None:
            state.in_flight += 1

    def end(self, endpoint: Endpoint, error: BaseException | None) -> None:
        """Record how a call to `endpoint` ended (pairs with `begin`)."""
        state = self._states.get(endpoint.server_id)
        if state is None or state.endpoint != endpoint:
            return  # removed by a configuration change while the call ran
        state.in_flight -= 1
        if error is None:
            self._success(state)
            return
        outcome = self.policy.classify(error)
        if outcome is Outcome.SUCCESS:
            self._success(state)
        elif outcome is Outcome.FAILURE and not (
            # The agency system behind every server failing is not this server's fault.
            isinstance(error, GovbusError) and error.origin is Origin.PROVIDER
        ):
            state.consecutive += 1
            if state.consecutive >= self.config.consecutive_failures:
                self._maybe_eject(state)

    def _success(self, state: _State) -> None:
        state.consecutive = 0
        if state.times_ejected and state.ejected_until is None:
            now = self._now()
            # A server that stays good long enough earns back one step of ejection time.
            if now - state.returned_at >= self.config.max_ejection_s:
                state.times_ejected -= 1
                state.returned_at = now

    def _maybe_eject(self, state: _State) -> None:
        if state.ejected_until is not None:
            return
        total = len(self._states)
        ejected = sum(1 for s in self._states.values() if s.ejected_until is not None)
        allowed = max(1, math.floor(self.config.max_ejected_fraction * total))
        if self.config.max_ejected_fraction == 0 or ejected >= allowed or ejected + 1 >= total:
            return  # keep enough servers in use; the breaker handles the rest
        now = self._now()
        state.times_ejected += 1
        state.ejections += 1
        duration = min(
            self.config.base_ejection_s * state.times_ejected, self.config.max_ejection_s
        )
        state.ejected_until = now + duration
        log.warning(
            "%s: provider server %s (%s) ejected for %.0f s after %d failures in a row",
            self.service_id,
            state.endpoint.server_id,
            state.endpoint.address,
            duration,
            state.consecutive,
        )

    def _return(self, state: _State, now: float, why: str) -> None:
        state.ejected_until = None
        state.consecutive = 0
        state.returned_at = now
        log.info(
            "%s: provider server %s back in use (%s)",
            self.service_id,
            state.endpoint.server_id,
            why,
        )

    def record_check(self, endpoint: Endpoint, ok: bool) -> None:
        """The result of an active health check of one server."""
        state = self._states.get(endpoint.server_id)
        if state is None or state.endpoint != endpoint:
            return
        server_id = endpoint.server_id
        if ok != state.check_ok and state.check_ok is not None:
            (log.info if ok else log.warning)(
                "%s: provider server %s health check %s",
                self.service_id,
                server_id,
                "passes again" if ok else "fails",
            )
        state.check_ok = ok
        if ok and state.ejected_until is not None and self._now() >= state.ejected_until:
            self._return(state, self._now(), "health check passed")

    # --- status ------------------------------------------------------------------

    def snapshot(self) -> tuple[EndpointStatus, ...]:
        now = self._now()
        rows = []
        for state in self._states.values():
            if state.ejected_until is not None:
                health = EndpointHealth.EJECTED
            elif state.check_ok is False:
                health = EndpointHealth.UNHEALTHY
            else:
                health = EndpointHealth.HEALTHY
            rows.append(
                EndpointStatus(
                    server_id=state.endpoint.server_id,
                    address=state.endpoint.address,
                    health=health,
                    in_flight=state.in_flight,
                    consecutive_failures=state.consecutive,
                    ejected_remaining=max(0.0, (state.ejected_until or now) - now),
                    times_ejected=state.times_ejected,
                    ejections=state.ejections,
                    last_check_ok=state.check_ok,
                )
            )
        return tuple(rows)


#: Builds the channel health checks use for one server (mTLS in production).
ChannelFactory = Callable[[Endpoint], Any]


class HealthProber:
    """Calls the standard gRPC health service of provider security servers.

    The channel factory should give each channel its own connection (channel
    option `grpc.use_local_subchannel_pool`): otherwise gRPC shares one
    connection per address between channels, and a fresh channel inherits the
    reconnect back-off of a broken one — a server that is back would then still
    fail its checks for up to the back-off time.
    """

    def __init__(
        self, channel_factory: ChannelFactory, *, timeout: float = 1.0, service: str = ""
    ) -> None:
        self._factory = channel_factory
        self.timeout = timeout
        self.service = service
        self._channels: dict[Endpoint, Any] = {}

    async def check(self, endpoint: Endpoint) -> bool:
        """True when the server answers SERVING within the timeout."""
        channel = self._channels.get(endpoint)
        if channel is not None:
            answer = await self._ask(endpoint, channel)
            if answer is not None:
                return answer
            # A channel that failed before may sit in reconnect back-off long after the
            # server is back: only a fresh connection's answer counts as a failure.
        channel = self._channels[endpoint] = self._factory(endpoint)
        return bool(await self._ask(endpoint, channel))

    async def _ask(self, endpoint: Endpoint, channel: Any) -> bool | None:
        """SERVING or not; None (and the channel dropped) when the call itself failed."""
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=self.service), timeout=self.timeout
            )
        except (TimeoutError, grpc.RpcError, OSError):
            await self._drop(endpoint)
            return None
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def _drop(self, endpoint: Endpoint) -> None:
        channel = self._channels.pop(endpoint, None)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    async def aclose(self) -> None:
        for endpoint in list(self._channels):
            await self._drop(endpoint)
