"""Retries: budget (no storms), idempotent only, back-off, deadline, server pushback."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.errors import DeadlineExceeded, NotFound, ServiceUnavailable
from security_server.resilience import (
    NO_RETRY,
    Deadline,
    ManualClock,
    RetryPolicy,
    RetryStats,
    RetryThrottle,
    ThrottleConfig,
    call_with_retries,
    parse_pushback,
    pushback_metadata,
)

Attempt = Callable[[int], Awaitable[str]]


def _unavailable(pushback: str | None = None) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if pushback is not None:
        trailing.add("grpc-retry-pushback-ms", pushback)
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), trailing, "registry down"
    )


class Sleeps:
    """Records the waits asked for and moves the manual clock instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def _run(
    attempt: Attempt,
    *,
    idempotent: bool = True,
    clock: ManualClock | None = None,
    timeout: float = 5.0,
    policy: RetryPolicy | None = None,
    throttle: RetryThrottle | None = None,
    stats: RetryStats | None = None,
    sleeps: Sleeps | None = None,
) -> str:
    clock = clock or ManualClock()
    return asyncio.run(
        call_with_retries(
            attempt,
            idempotent=idempotent,
            deadline=Deadline.after(timeout, 5.0, clock),
            policy=policy or RetryPolicy(),
            throttle=throttle or RetryThrottle(),
            sleep=sleeps or Sleeps(clock),
            rng=random.Random(7),
            stats=stats,
        )
    )


def test_half_failing_provider_gets_no_retry_storm() -> None:
    """A registry failing half its calls: retries stay within the token budget."""
    rng = random.Random(11)
    throttle = RetryThrottle(ThrottleConfig(max_tokens=10, token_ratio=0.1))
    stats = RetryStats()
    attempts = successes = 0
    exchanges = 2000

    async def flaky(_: int) -> str:
        nonlocal attempts, successes
        attempts += 1
        if rng.random() < 0.5:
            raise ServiceUnavailable("registry down")
        successes += 1
        return "answer"

    async def all_exchanges() -> None:
        clock = ManualClock()
        for _ in range(exchanges):
            with contextlib.suppress(ServiceUnavailable):
                await call_with_retries(
                    flaky,
                    idempotent=True,
                    deadline=Deadline.after(None, 5.0, clock),
                    policy=RetryPolicy(max_attempts=5),
                    throttle=throttle,
                    sleep=Sleeps(clock),
                    rng=rng,
                    stats=stats,
                )

    asyncio.run(all_exchanges())
    retries = attempts - exchanges
    assert retries == stats.retries
    # Every retry follows a failure and needs tokens above half: the bucket
    # (10, -1 per failure, +0.1 per success) bounds them.
    assert retries < 10 / 2 + 0.1 * successes + 1
    assert retries / exchanges < 0.06  # unthrottled, 5 attempts would add ~94 %
    assert stats.throttled > 0


def test_retries_help_a_registry_that_fails_rarely() -> None:
    rng = random.Random(3)
    throttle = RetryThrottle()
    failed = 0

    async def rarely_failing(_: int) -> str:
        if rng.random() < 0.05:
            raise ServiceUnavailable("blip")
        return "answer"

    async def all_exchanges() -> None:
        nonlocal failed
        clock = ManualClock()
        for _ in range(1000):
            try:
                await call_with_retries(
                    rarely_failing,
                    idempotent=True,
                    deadline=Deadline.after(None, 5.0, clock),
                    policy=RetryPolicy(),
                    throttle=throttle,
                    sleep=Sleeps(clock),
                    rng=rng,
                )
            except ServiceUnavailable:
                failed += 1

    asyncio.run(all_exchanges())
    assert failed <= 2  # 5 % failures become ~0.25 % with one retry, ~0.01 % with two


@settings(max_examples=50, deadline=None)
@given(
    errors=st.lists(
        st.sampled_from(
            [
                ServiceUnavailable("down"),
                DeadlineExceeded("slow"),
                ConnectionRefusedError(),
                NotFound("nobody"),
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_non_idempotent_methods_are_never_retried(errors: list[Exception]) -> None:
    calls = 0

    async def write(_: int) -> str:
        nonlocal calls
        calls += 1
        raise errors[min(calls, len(errors)) - 1]

    with pytest.raises(type(errors[0])):
        _run(write, idempotent=False)
    assert calls == 1


def test_retries_stop_at_max_attempts_with_jittered_exponential_backoff() -> None:
    clock = ManualClock()
    sleeps = Sleeps(clock)
    numbers: list[int] = []

    async def down(number: int) -> str:
        numbers.append(number)
        raise ServiceUnavailable("down")

    stats = RetryStats()
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.1, max_backoff=0.3, multiplier=2)
    with pytest.raises(ServiceUnavailable):
        _run(down, clock=clock, policy=policy, sleeps=sleeps, stats=stats, timeout=10)
    assert numbers == [1, 2, 3, 4]
    assert len(sleeps.waits) == 3 and stats.exhausted == 1
    for i, wait in enumerate(sleeps.waits, start=1):
        assert 0 <= wait <= min(0.1 * 2 ** (i - 1), 0.3)


@settings(max_examples=100, deadline=None)
@given(retry=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_backoff_stays_within_its_ceiling(retry: int, seed: int) -> None:
    policy = RetryPolicy(initial_backoff=0.05, max_backoff=1.0, multiplier=2.0)
    wait = policy.backoff(retry, random.Random(seed))
    assert 0 <= wait <= min(0.05 * 2 ** (retry - 1), 1.0)


def test_deadline_and_answers_are_never_retried() -> None:
    for error in (DeadlineExceeded("slow"), NotFound("nobody")):
        calls = 0

        async def once(_: int, error: Exception = error) -> str:
            nonlocal calls
            calls += 1
            raise error

        with pytest.raises(type(error)):
            _run(once)
        assert calls == 1


def test_a_retry_never_starts_past_the_deadline() -> None:
    clock = ManualClock()
    sleeps = Sleeps(clock)

    async def slow_failure(_: int) -> str:
        clock.advance(0.4)  # each attempt takes 0.4 s
        raise ServiceUnavailable("down", retry_after=0.3)

    policy = RetryPolicy(max_attempts=5)
    started = clock()
    with pytest.raises(ServiceUnavailable):
        _run(slow_failure, clock=clock, timeout=1.0, policy=policy, sleeps=sleeps)
    # 0.4 + 0.3 wait + 0.4 = 1.1: the second wait would have ended past the deadline.
    assert sleeps.waits == [0.3]
    assert clock() - started == pytest.approx(1.1)


def test_pushback_is_honoured_exactly_and_backoff_starts_over() -> None:
    clock = ManualClock()
    sleeps = Sleeps(clock)
    failures = [_unavailable("250"), _unavailable(None)]

    async def pushing_back(number: int) -> str:
        if number <= len(failures):
            raise failures[number - 1]
        return "answer"

    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=1.0)
    assert _run(pushing_back, clock=clock, policy=policy, sleeps=sleeps) == "answer"
    assert sleeps.waits[0] == 0.25  # exactly what the server asked
    assert 0 <= sleeps.waits[1] <= 0.01  # back-off restarted from the initial value


@pytest.mark.parametrize("value", ["-1", "abc", "007", "", "99999999999"])
def test_pushback_saying_no_stops_retries_and_takes_a_token(value: str) -> None:
    calls = 0
    throttle = RetryThrottle()

    async def refused(_: int) -> str:
        nonlocal calls
        calls += 1
        raise _unavailable(value)

    with pytest.raises(grpc.aio.AioRpcError):
        _run(refused, throttle=throttle)
    assert calls == 1
    assert throttle.tokens == 9.0


def test_pushback_parsing() -> None:
    assert parse_pushback("0") == 0.0
    assert parse_pushback(b"1500") == 1.5
    assert parse_pushback(None) is None
    for bad in ("-5", "1.5", "+3", "0012", " ", "١٢"):
        assert parse_pushback(bad) == NO_RETRY
    assert pushback_metadata(0.25) == (("grpc-retry-pushback-ms", "250"),)
    assert pushback_metadata(None) == (("grpc-retry-pushback-ms", "-1"),)


def test_throttle_bucket_arithmetic() -> None:
    throttle = RetryThrottle(ThrottleConfig(max_tokens=4, token_ratio=0.5))
    assert throttle.allows_retry()
    throttle.on_failure()
    throttle.on_failure()
    assert throttle.tokens == 2 and not throttle.allows_retry()  # at half: no retries
    throttle.on_success()
    assert throttle.allows_retry()
    for _ in range(10):
        throttle.on_failure()
    assert throttle.tokens == 0
    for _ in range(100):
        throttle.on_success()
    assert throttle.tokens == 4


def test_pushback_from_a_real_server_over_loopback() -> None:
    """A real grpc.aio server pushes back on its first call; the retry waits as told."""

    async def scenario() -> list[float]:
        seen = 0

        async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            nonlocal seen
            seen += 1
            if seen == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "busy", pushback_metadata(0.2))
            return request

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "test.Echo",
                    {"Call": grpc.unary_unary_rpc_method_handler(handler)},
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        clock = ManualClock()
        sleeps = Sleeps(clock)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Echo/Call")

                async def attempt(_: int) -> bytes:
                    answer: bytes = await call(b"ping", timeout=5)
                    return answer

                answer = await call_with_retries(
                    attempt,
                    idempotent=True,
                    deadline=Deadline.after(5.0, 5.0, clock),
                    policy=RetryPolicy(),
                    throttle=RetryThrottle(),
                    sleep=sleeps,
                )
        finally:
            await server.stop(None)
        assert answer == b"ping" and seen == 2
        return sleeps.waits

    assert asyncio.run(scenario()) == [0.2]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"max_attempts": 6},
        {"initial_backoff": 0.0},
        {"initial_backoff": 2.0, "max_backoff": 1.0},
        {"multiplier": 0.5},
    ],
)
def test_bad_retry_settings_refused(bad: dict[str, float]) -> None:
    from govbus.errors import ConfigInvalid

    with pytest.raises(ConfigInvalid):
        RetryPolicy(**bad)  # type: ignore[arg-type]
