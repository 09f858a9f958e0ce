"""Time for the resilience core: an injected monotonic clock and per-call deadlines.

Every breaker, bulkhead, throttle and endpoint set reads time only through a
`Clock` (a callable returning seconds), so tests drive it by hand with
`ManualClock`. `SteadyClock` wraps any clock so that time seen by the core never
runs backwards: a clock that jumps back is taken to stand still at the jump and
to run on from there, so a breaker can never be stuck open for the length of
the jump. A forward jump is taken as time that really passed (a suspended VM):
open breakers and ejections end early, which only lets a few probes through.

This module must never sleep or touch the event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from govbus.errors import DeadlineExceeded, InvalidRequest, Origin

__all__ = ["Clock", "Deadline", "ManualClock", "SteadyClock", "steady"]

#: Seconds from an arbitrary origin; only differences matter.
Clock = Callable[[], float]


class SteadyClock:
    """A clock that never goes backwards, whatever the clock under it does."""

    __slots__ = ("_last", "_skew", "_source")

    def __init__(self, source: Clock = time.monotonic) -> None:
        self._source = source
        self._skew = 0.0
        self._last = source()

    def __call__(self) -> float:
        now = self._source() + self._skew
        if now < self._last:
            # Re-anchor: time stands still at the jump and runs on from there.
            self._skew += self._last - now
            return self._last
        self._last = now
        return now


def steady(clock: Clock) -> SteadyClock:
    """`clock` as a `SteadyClock` (itself if it already is one)."""
    return clock if isinstance(clock, SteadyClock) else SteadyClock(clock)


class ManualClock:
    """A clock moved by hand, for tests and simulations."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock by `seconds` (negative = a jump backwards)."""
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """An `asyncio.sleep` stand-in for the retry loop: moves time instead of waiting."""
        self.now += max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Deadline:
    """The absolute time (on one steady clock) by which an exchange must end."""

    expires_at: float
    clock: Clock

    @classmethod
    def after(cls, timeout: float | None, default: float, clock: Clock) -> Deadline:
        """The caller's timeout, or the service's default when the caller gave none.

        A timeout that is not a finite number is refused (`INVALID_REQUEST`);
        one already spent is `DEADLINE_EXCEEDED`.
        """
        chosen = default if timeout is None else timeout
        if isinstance(chosen, int | float) and 0 < chosen < math.inf:
            return cls(clock() + chosen, clock)
        if not isinstance(chosen, int | float) or math.isnan(chosen) or chosen > 0:
            raise InvalidRequest(f"deadline must be a finite number of seconds, got {chosen!r}")
        raise DeadlineExceeded(
            "the caller's deadline had already passed when the exchange started",
            origin=Origin.CLIENT,
        )

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.expires_at - self.clock()

    def check(self, what: str) -> float:
        """Seconds left; raises `DEADLINE_EXCEEDED` saying what ran out of time."""
        left = self.expires_at - self.clock()
        if left <= 0:
            raise DeadlineExceeded(
                f"deadline passed {what}; raise the deadline or try again later",
                origin=Origin.CONSUMER_SS,
            )
        return left
