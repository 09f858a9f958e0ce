"""The circuit breaker of one provider service, as a pure state machine.

CLOSED lets every call through and keeps a sliding window (the last N calls, or
the calls of the last N seconds) of outcomes. Once the window holds at least
`minimum_calls`, a failure rate or a slow-call rate at or over its threshold
opens the breaker. OPEN refuses at once with `SERVICE_UNAVAILABLE` carrying the
remaining open time as `RetryInfo`. After `open_s` the next caller finds it
HALF_OPEN: at most `half_open_probes` probe calls run at once (stragglers of an
earlier probe round included, so the bound holds across rounds); the first
failed probe reopens it, and once that many probes have answered it closes
(unless they were mostly slow). Calls whose outcome says nothing about the
registry (`Outcome.IGNORED`) give their probe slot back and count nowhere.

Usage on the hot path: `permit = breaker.allow()` (raises when refused), then
`permit.done(error_or_None)` when the call ends. No locks and no awaits: the
breaker lives on one event loop. Time comes from an injected clock, read
through `SteadyClock`, so a clock jumping backwards cannot keep it open.

This module must never sleep, perform I/O or import grpc stubs.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from govbus.errors import ConfigInvalid, Origin, ServiceUnavailable
from security_server.resilience.clock import Clock, steady
from security_server.resilience.outcome import GUARD_KEY, Outcome, OutcomePolicy

__all__ = [
    "BreakerConfig",
    "BreakerListener",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "WindowKind",
]

log = logging.getLogger("govbus.resilience")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class WindowKind(enum.Enum):
    COUNT = "count"  # the last `window_size` calls
    TIME = "time"  # the calls of the last `window_seconds` seconds


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of one breaker; defaults are the counter-side ones of ADR 0005."""

    window: WindowKind = WindowKind.COUNT
    window_size: int = 20
    window_seconds: float = 10.0
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 0.8
    slow_call_s: float = 2.0
    open_s: float = 5.0
    half_open_probes: int = 2

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.window_size < 1:
            problems.append(f"window_size must be >= 1, got {self.window_size}")
        if not (0 < self.window_seconds <= 3600 and math.isfinite(self.window_seconds)):
            problems.append(f"window_seconds must be in (0, 3600], got {self.window_seconds}")
        if self.minimum_calls < 1:
            problems.append(f"minimum_calls must be >= 1, got {self.minimum_calls}")
        if self.window is WindowKind.COUNT and self.minimum_calls > self.window_size:
            problems.append(
                f"minimum_calls ({self.minimum_calls}) exceeds the window of "
                f"{self.window_size} calls: the breaker could never open"
            )
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                problems.append(f"{name} must be in (0, 1], got {value}")
        for name in ("slow_call_s", "open_s"):
            value = getattr(self, name)
            if not (0 < value <= 86_400 and math.isfinite(value)):
                problems.append(f"{name} must be a positive number of seconds, got {value}")
        if not 1 <= self.half_open_probes <= 1000:
            problems.append(f"half_open_probes must be in 1..1000, got {self.half_open_probes}")
        if problems:
            raise ConfigInvalid("circuit breaker settings refused: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """An immutable view of one breaker, for status pages and metrics."""

    name: str
    state: BreakerState
    calls: int  # outcomes in the window
    failure_rate: float
    slow_call_rate: float
    open_remaining: float  # seconds until probes are let through (0 unless OPEN)
    probes_in_flight: int
    rejected: int  # calls refused since start
    transitions: tuple[tuple[BreakerState, int], ...]  # times each state was entered


#: Called after every state change with (breaker, old state, new state).
BreakerListener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]


class _CountWindow:
    """The last `size` outcomes, with running totals (O(1) per call)."""

    __slots__ = ("_head", "_ring", "failed", "slow", "total")

    def __init__(self, size: int) -> None:
        self._ring = [0] * size  # 0 empty, bit 1 = counted, bit 2 = failed, bit 4 = slow
        self._head = 0
        self.total = 0
        self.failed = 0
        self.slow = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        old = self._ring[self._head]
        if old:
            self.total -= 1
            self.failed -= (old >> 1) & 1
            self.slow -= (old >> 2) & 1
        self._ring[self._head] = 1 | (failed << 1) | (slow << 2)
        self._head = (self._head + 1) % len(self._ring)
        self.total += 1
        self.failed += failed
        self.slow += slow

    def counts(self, now: float) -> tuple[int, int, int]:
        return self.total, self.failed, self.slow


class _TimeWindow:
    """Outcomes of the last `seconds`, in ten buckets of `seconds / 10`."""

    __slots__ = ("_buckets", "_n", "_width")

    def __init__(self, seconds: float, buckets: int = 10) -> None:
        self._n = buckets
        self._width = seconds / buckets
        # [bucket index, total, failed, slow]
        self._buckets = [[-(2**62), 0, 0, 0] for _ in range(buckets)]

    def add(self, failed: bool, slow: bool, now: float) -> None:
        index = math.floor(now / self._width)
        bucket = self._buckets[index % self._n]
        if bucket[0] != index:
            bucket[0], bucket[1], bucket[2], bucket[3] = index, 0, 0, 0
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow

    def counts(self, now: float) -> tuple[int, int, int]:
        newest = math.floor(now / self._width)
        total = failed = slow = 0
        for index, t, f, s in self._buckets:
            if newest - self._n < index <= newest:
                total += t
                failed += f
                slow += s
        return total, failed, slow


class Permit:
    """Leave to make one call; say how it ended exactly once (later reports are ignored)."""

    __slots__ = ("_breaker", "_era", "_open", "probe", "started")

    def __init__(self, breaker: CircuitBreaker, era: int, probe: bool, started: float) -> None:
        self._breaker = breaker
        self._era = era
        self._open = True
        self.probe = probe
        self.started = started

    def record(self, outcome: Outcome, duration: float | None = None) -> None:
        """Report the outcome; `duration` defaults to the time since `allow()`."""
        if self._open:
            self._open = False
            self._breaker._settle(self, outcome, duration)

    def done(self, error: BaseException | None = None) -> Outcome:
        """Report a call that returned (`None`) or raised `error`; returns the outcome."""
        outcome = Outcome.SUCCESS if error is None else self._breaker.policy.classify(error)
        if self._open:
            self._open = False
            self._breaker._settle(self, outcome, None)
        return outcome

    def release(self) -> None:
        """The call never reached the registry (or the caller gave up): count nothing."""
        self.record(Outcome.IGNORED, 0.0)


class CircuitBreaker:
    """One provider service's breaker; see the module docstring."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        policy: OutcomePolicy | None = None,
        listeners: tuple[BreakerListener, ...] = (),
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.policy = policy or OutcomePolicy()
        self._now = steady(clock)
        self._listeners = list(listeners)
        self._state = BreakerState.CLOSED
        self._era = 0
        self._window = self._new_window()
        self._opened_at = 0.0
        self._probes_in_flight = 0  # every outstanding probe permit, of any round
        self._probes_admitted = 0  # this round
        self._probe_successes = 0
        self._probe_slow = 0
        self._last_rates = (0.0, 0.0)
        self.rejected = 0
        self._entered = dict.fromkeys(BreakerState, 0)

    def _new_window(self) -> _CountWindow | _TimeWindow:
        if self.config.window is WindowKind.TIME:
            return _TimeWindow(self.config.window_seconds)
        return _CountWindow(self.config.window_size)

    def add_listener(self, listener: BreakerListener) -> None:
        self._listeners.append(listener)

    # --- the two calls of the hot path ------------------------------------------

    def allow(self) -> Permit:
        """Leave for one call, or `ServiceUnavailable` with the time to wait."""
        now = self._now()
        state = self._state
        if state is BreakerState.CLOSED:
            return Permit(self, self._era, False, now)
        if state is BreakerState.OPEN:
            remaining = self._opened_at + self.config.open_s - now
            if remaining > 0:
                self._refuse(remaining, "open")
            self._move(BreakerState.HALF_OPEN, now)
        probes = self.config.half_open_probes
        if self._probes_in_flight >= probes or self._probes_admitted >= probes:
            self._refuse(min(self.config.open_s, self.config.slow_call_s), "half-open, probing")
        self._probes_in_flight += 1
        self._probes_admitted += 1
        return Permit(self, self._era, True, now)

    def _refuse(self, retry_after: float, why: str) -> None:
        self.rejected += 1
        failure, slow = self._last_rates
        raise ServiceUnavailable(
            f"{self.name} is failing (circuit breaker {why} after {failure:.0%} failed and "
            f"{slow:.0%} slow calls); refused at once, retry in {retry_after:.1f} s",
            # Refused here, by this security server: the caller is told who answered
            # (docs/consumer.md); the message says the registry is what failed.
            origin=Origin.CONSUMER_SS,
            retry_after=retry_after,
            metadata={GUARD_KEY: "circuit_breaker"},
        )

    def _settle(self, permit: Permit, outcome: Outcome, duration: float | None) -> None:
        if permit.probe:
            self._probes_in_flight -= 1
        if permit._era != self._era:
            return  # admitted under an earlier state: its verdict is stale
        if outcome is Outcome.IGNORED:
            if permit.probe:
                self._probes_admitted -= 1  # give the probe slot back to the round
            return
        now = self._now()
        slow = (now - permit.started if duration is None else duration) >= self.config.slow_call_s
        failed = outcome is Outcome.FAILURE
        if self._state is BreakerState.CLOSED:
            window = self._window
            window.add(failed, slow, now)
            total, failures, slows = window.counts(now)
            if total >= self.config.minimum_calls:
                failure_rate, slow_rate = failures / total, slows / total
                if (
                    failure_rate >= self.config.failure_rate_threshold
                    or slow_rate >= self.config.slow_call_rate_threshold
                ):
                    self._last_rates = (failure_rate, slow_rate)
                    self._move(BreakerState.OPEN, now)
        elif self._state is BreakerState.HALF_OPEN:
            if failed:
                self._last_rates = (1.0 / (self._probe_successes + 1), self._last_rates[1])
                self._move(BreakerState.OPEN, now)
                return
            self._probe_successes += 1
            self._probe_slow += slow
            probes = self.config.half_open_probes
            if self._probe_successes >= probes:
                if self._probe_slow / probes >= self.config.slow_call_rate_threshold:
                    self._last_rates = (0.0, self._probe_slow / probes)
                    self._move(BreakerState.OPEN, now)
                else:
                    self._move(BreakerState.CLOSED, now)

    # --- transitions -------------------------------------------------------------

    def _move(self, new: BreakerState, now: float) -> None:
        old = self._state
        self._state = new
        self._era += 1
        self._entered[new] += 1
        self._probes_admitted = 0
        self._probe_successes = 0
        self._probe_slow = 0
        if new is BreakerState.OPEN:
            self._opened_at = now
        elif new is BreakerState.CLOSED:
            self._window = self._new_window()
            self._last_rates = (0.0, 0.0)
        for listener in self._listeners:
            try:
                listener(self, old, new)
            except Exception:
                log.exception("breaker listener failed on %s %s -> %s", self.name, old, new)

    def reset(self) -> None:
        """Close the breaker with an empty window (operator action)."""
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED, self._now())
        else:
            self._window = self._new_window()

    # --- what status pages and metrics see ----------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN whose time is up reads as HALF_OPEN)."""
        if self._state is BreakerState.OPEN and self._now() >= self._opened_at + self.config.open_s:
            self._move(BreakerState.HALF_OPEN, self._now())
        return self._state

    def retry_after(self) -> float:
        """Seconds until a call could be let through (0 when it would be now)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.config.open_s - self._now())
        return 0.0

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        now = self._now()
        total, failures, slows = self._window.counts(now)
        if state is BreakerState.CLOSED:
            failure_rate = failures / total if total else 0.0
            slow_rate = slows / total if total else 0.0
        else:
            failure_rate, slow_rate = self._last_rates
        return BreakerSnapshot(
            name=self.name,
            state=state,
            calls=total if state is BreakerState.CLOSED else 0,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            open_remaining=self.retry_after(),
            probes_in_flight=self._probes_in_flight,
            rejected=self.rejected,
            transitions=tuple(self._entered.items()),
        )
