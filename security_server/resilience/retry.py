"""Retries of idempotent reads, throttled so that they can never become a storm.

The rules follow gRPC's retry design (proposal A6):
- only methods published as idempotent are retried, and only on failures a
  retry may cure (`UNAVAILABLE`); never on a deadline, never on an answer;
- at most `max_attempts` attempts in all (A6 caps it at 5);
- the n-th retry waits random(0, min(initial x multiplier^(n-1), max)) —
  full jitter, so callers that failed together do not come back together;
- a token bucket per provider service (`RetryThrottle`): each failure takes a
  token, each success gives back `token_ratio`; no retry while the tokens are at
  or below half, so a registry failing more than ~1 call in 10 gets no retries;
- the server may push back: `grpc-retry-pushback-ms` = wait exactly that long
  (back-off starts over afterwards), negative or garbage = do not retry;
- a retry never starts when its wait would end past the deadline.

`call_with_retries` drives an attempt function; the clock, sleep and random
source are injected so tests run without waiting.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from govbus.errors import ConfigInvalid
from security_server.resilience.clock import Deadline
from security_server.resilience.outcome import NO_RETRY, Outcome, OutcomePolicy, pushback_of

__all__ = [
    "MAX_ATTEMPTS",
    "RetryPolicy",
    "RetryStats",
    "RetryThrottle",
    "ThrottleConfig",
    "call_with_retries",
]

T = TypeVar("T")

#: Client-side ceiling on attempts (A6's default maximum).
MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3  # including the first call
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            problems.append(f"max_attempts must be in 1..{MAX_ATTEMPTS}, got {self.max_attempts}")
        if not (0 < self.initial_backoff <= 60 and math.isfinite(self.initial_backoff)):
            problems.append(f"initial backoff must be in (0, 60] s, got {self.initial_backoff}")
        if not (self.initial_backoff <= self.max_backoff <= 600):
            problems.append(
                f"max backoff must be in [initial backoff, 600] s, got {self.max_backoff}"
            )
        if not (1 <= self.multiplier <= 10):
            problems.append(f"backoff multiplier must be in [1, 10], got {self.multiplier}")
        if problems:
            raise ConfigInvalid("retry settings refused: " + "; ".join(problems))

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before the `retry`-th retry (1-based), with full jitter."""
        ceiling = min(self.initial_backoff * self.multiplier ** (retry - 1), self.max_backoff)
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    max_tokens: float = 10.0
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not (0 < self.max_tokens <= 1000 and math.isfinite(self.max_tokens)):
            raise ConfigInvalid(f"retry max_tokens must be in (0, 1000], got {self.max_tokens}")
        if not (0 < self.token_ratio <= self.max_tokens):
            raise ConfigInvalid(
                f"retry token_ratio must be in (0, max_tokens], got {self.token_ratio}"
            )


class RetryThrottle:
    """A6's token bucket, one per provider service."""

    __slots__ = ("config", "throttled", "tokens")

    def __init__(self, config: ThrottleConfig | None = None) -> None:
        self.config = config or ThrottleConfig()
        self.tokens = self.config.max_tokens
        self.throttled = 0  # retries refused by the throttle since start

    def on_success(self) -> None:
        self.tokens = min(self.config.max_tokens, self.tokens + self.config.token_ratio)

    def on_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1.0)

    def allows_retry(self) -> bool:
        return self.tokens > self.config.max_tokens / 2


@dataclass(slots=True)
class RetryStats:
    """Counters one service's retries add to (read by status and metrics)."""

    retries: int = 0
    throttled: int = 0
    exhausted: int = 0  # failures returned after the last allowed attempt


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    idempotent: bool,
    deadline: Deadline,
    policy: RetryPolicy,
    throttle: RetryThrottle,
    outcomes: OutcomePolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    stats: RetryStats | None = None,
) -> T:
    """Run `attempt(1)`, and retry it (`attempt(2)`, ...) where the rules allow.

    The error of the last attempt is raised as it is.
    """
    outcomes = outcomes or _DEFAULT_OUTCOMES
    stats = stats if stats is not None else RetryStats()
    number = 1
    backoff_step = 0
    while True:
        try:
            result = await attempt(number)
        except Exception as error:
            retryable = outcomes.retryable(error)
            pushback = pushback_of(error)
            if retryable or pushback == NO_RETRY:
                throttle.on_failure()
            elif outcomes.classify(error) is Outcome.SUCCESS:
                throttle.on_success()  # an answer: the registry is working
            if not (idempotent and retryable) or pushback == NO_RETRY:
                raise
            if not _may_retry(number, policy, throttle, stats):
                raise
            if pushback is not None:
                delay = pushback
                backoff_step = 0  # A6: after a pushback the back-off starts over
            else:
                backoff_step += 1
                delay = policy.backoff(backoff_step, rng or _RNG)
            if delay >= deadline.remaining():
                raise  # the retry could not finish in time: fail now, not later
            stats.retries += 1
            await sleep(delay)
            number += 1
            continue
        throttle.on_success()
        return result


def _may_retry(
    number: int, policy: RetryPolicy, throttle: RetryThrottle, stats: RetryStats
) -> bool:
    if number >= policy.max_attempts:
        stats.exhausted += 1
        return False
    if not throttle.allows_retry():
        throttle.throttled += 1
        stats.throttled += 1
        return False
    return True


_DEFAULT_OUTCOMES = OutcomePolicy()
# Jitter needs no cryptographic quality; a module-level source keeps calls cheap.
_RNG = random.Random()  # noqa: S311 - back-off jitter, not a secret
