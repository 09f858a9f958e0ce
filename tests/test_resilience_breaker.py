"""The circuit breaker as the bus relies on it: properties, state machine, edge cases."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from govbus.errors import (
    AccessDenied,
    AlreadyExists,
    ConfigInvalid,
    ConsentRequired,
    ConsentRevoked,
    ConsentStatusStale,
    DeadlineExceeded,
    FailedPrecondition,
    GlobalConfExpired,
    InvalidRequest,
    NotFound,
    Origin,
    ServiceUnavailable,
)
from security_server.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    ManualClock,
    Outcome,
    OutcomePolicy,
    Permit,
    WindowKind,
)

SERVICE = "KZ/GOV/040340123459/gbdfl/person/v1"


def _breaker(clock: ManualClock, **overrides: object) -> CircuitBreaker:
    return CircuitBreaker(SERVICE, BreakerConfig(**overrides), clock=clock)  # type: ignore[arg-type]


def _fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.allow().record(Outcome.FAILURE, 0.01)


def _ok(breaker: CircuitBreaker, n: int = 1, duration: float = 0.01) -> None:
    for _ in range(n):
        breaker.allow().record(Outcome.SUCCESS, duration)


def _grpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "x")


# --- behaviour the bus relies on, one case each ------------------------------------------


def test_opens_only_at_the_minimum_number_of_calls() -> None:
    clock = ManualClock()
    breaker = _breaker(clock)  # window 20, minimum 10, 50 %
    _fail(breaker, 9)
    assert breaker.state is BreakerState.CLOSED  # 100 % failures but only 9 calls
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_open_refuses_at_once_with_remaining_open_time() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, open_s=5.0)
    _fail(breaker, 10)
    clock.advance(1.5)
    with pytest.raises(ServiceUnavailable) as refused:
        breaker.allow()
    assert refused.value.retry_after == pytest.approx(3.5)
    assert refused.value.metadata["guard"] == "circuit_breaker"
    # Regression: the refusal is the consumer SS's own, as the consumer guide says.
    assert refused.value.origin is Origin.CONSUMER_SS
    status = refused.value.to_status_proto()
    assert len(status.details) == 2  # ErrorInfo + RetryInfo on the wire
    assert breaker.snapshot().rejected == 1


def test_half_open_first_failed_probe_reopens() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, half_open_probes=2)
    _fail(breaker, 10)
    clock.advance(5)
    first, second = breaker.allow(), breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ServiceUnavailable):
        breaker.allow()  # a third probe at once is never let through
    first.record(Outcome.FAILURE, 0.01)
    assert breaker.state is BreakerState.OPEN
    second.record(Outcome.SUCCESS, 0.01)  # stale verdict of the old round
    assert breaker.state is BreakerState.OPEN


def test_half_open_closes_after_the_probes_succeed_with_a_fresh_window() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, half_open_probes=2)
    _fail(breaker, 10)
    clock.advance(5)
    _ok(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    snap = breaker.snapshot()
    assert snap.calls == 0 and snap.failure_rate == 0
    _fail(breaker, 9)
    assert breaker.state is BreakerState.CLOSED  # the minimum applies afresh


def test_ignored_probe_gives_its_slot_back() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, half_open_probes=1)
    _fail(breaker, 10)
    clock.advance(5)
    breaker.allow().release()  # e.g. the caller was cancelled
    probe = breaker.allow()  # the slot is free again
    probe.record(Outcome.SUCCESS, 0.01)
    assert breaker.state is BreakerState.CLOSED


def test_probes_of_an_earlier_round_still_count_against_the_limit() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, half_open_probes=2)
    _fail(breaker, 10)
    clock.advance(5)
    failing, straggler = breaker.allow(), breaker.allow()
    failing.record(Outcome.FAILURE, 0.01)
    clock.advance(5)
    breaker.allow()  # one new probe; the straggler still holds the other slot
    with pytest.raises(ServiceUnavailable):
        breaker.allow()
    straggler.record(Outcome.SUCCESS, 0.01)
    breaker.allow()  # now the straggler is gone


def test_slow_calls_open_it() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, slow_call_s=2.0, slow_call_rate_threshold=0.8)
    _ok(breaker, 2)
    _ok(breaker, 8, duration=2.5)
    assert breaker.state is BreakerState.OPEN  # 8 of 10 slow
    assert breaker.snapshot().slow_call_rate == pytest.approx(0.8)


def test_slow_calls_measured_on_the_injected_clock() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, slow_call_s=1.0, slow_call_rate_threshold=0.5, minimum_calls=2)
    for _ in range(2):
        permit = breaker.allow()
        clock.advance(1.2)
        permit.done(None)
    assert breaker.state is BreakerState.OPEN


def test_time_window_forgets_old_outcomes() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, window=WindowKind.TIME, window_seconds=10.0, minimum_calls=10)
    _fail(breaker, 9)
    clock.advance(11)
    _fail(breaker, 9)
    assert breaker.state is BreakerState.CLOSED  # the first nine left the window
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_clock_jumping_back_does_not_keep_it_open() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, open_s=5.0)
    _fail(breaker, 10)
    clock.advance(-3600)  # the clock source jumps an hour back
    with pytest.raises(ServiceUnavailable) as refused:
        breaker.allow()
    assert refused.value.retry_after is not None and refused.value.retry_after <= 5.0
    clock.advance(5)
    breaker.allow()  # a probe, five seconds of real time later
    assert breaker.state is BreakerState.HALF_OPEN


def test_clock_jumping_forward_only_lets_probes_through() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, half_open_probes=2)
    _fail(breaker, 10)
    clock.advance(10**9)
    breaker.allow()
    breaker.allow()
    with pytest.raises(ServiceUnavailable):
        breaker.allow()


def test_listener_sees_transitions_and_a_broken_listener_changes_nothing() -> None:
    seen: list[tuple[BreakerState, BreakerState]] = []

    def broken(_: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("observer bug")

    clock = ManualClock()
    breaker = CircuitBreaker(
        SERVICE, clock=clock, listeners=(lambda _b, old, new: seen.append((old, new)), broken)
    )
    _fail(breaker, 10)
    clock.advance(5)
    _ok(breaker, 2)
    assert seen == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert dict(breaker.snapshot().transitions)[BreakerState.OPEN] == 1


def test_a_permit_reports_once() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, minimum_calls=1, window_size=1)
    permit = breaker.allow()
    permit.record(Outcome.SUCCESS, 0.0)
    permit.record(Outcome.FAILURE, 0.0)  # ignored
    assert breaker.state is BreakerState.CLOSED


def test_reset_closes() -> None:
    clock = ManualClock()
    breaker = _breaker(clock)
    _fail(breaker, 10)
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()


@pytest.mark.parametrize(
    "bad",
    [
        {"window_size": 0},
        {"minimum_calls": 0},
        {"minimum_calls": 30, "window_size": 20},
        {"failure_rate_threshold": 0.0},
        {"failure_rate_threshold": 1.5},
        {"slow_call_rate_threshold": float("nan")},
        {"open_s": -1.0},
        {"open_s": float("inf")},
        {"slow_call_s": 0.0},
        {"half_open_probes": 0},
        {"window_seconds": 0.0},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigInvalid):
        BreakerConfig(**bad)  # type: ignore[arg-type]


# --- which outcomes count --------------------------------------------------------------

ANSWERS = [
    NotFound("no such person"),
    InvalidRequest("bad field", origin=Origin.PROVIDER),
    AccessDenied("not allowed", origin=Origin.PROVIDER_SS),
    ConsentRequired("no consent"),
    ConsentRevoked("revoked"),
    # Regression: a stale consent feed travels as UNAVAILABLE, yet it is a refusal
    # about consent, not a registry failure, and must never open the breaker.
    ConsentStatusStale("feed older than the bound", origin=Origin.PROVIDER_SS),
    FailedPrecondition("already registered"),
    AlreadyExists("exists"),
    _grpc_error(grpc.StatusCode.NOT_FOUND),
    _grpc_error(grpc.StatusCode.PERMISSION_DENIED),
    _grpc_error(grpc.StatusCode.INVALID_ARGUMENT),
]
FAILURES = [
    ServiceUnavailable("registry down"),
    DeadlineExceeded("too slow"),
    _grpc_error(grpc.StatusCode.UNAVAILABLE),
    _grpc_error(grpc.StatusCode.DEADLINE_EXCEEDED),
    _grpc_error(grpc.StatusCode.INTERNAL),
    _grpc_error(grpc.StatusCode.UNKNOWN),
    _grpc_error(grpc.StatusCode.DATA_LOSS),
    ConnectionRefusedError(),
    TimeoutError(),
]


@pytest.mark.parametrize("error", ANSWERS, ids=repr)
def test_answers_are_successes(error: BaseException) -> None:
    assert OutcomePolicy().classify(error) is Outcome.SUCCESS


@pytest.mark.parametrize("error", FAILURES, ids=repr)
def test_failures_are_failures(error: BaseException) -> None:
    assert OutcomePolicy().classify(error) is Outcome.FAILURE


def test_local_failures_and_cancellation_are_ignored() -> None:
    policy = OutcomePolicy()
    assert policy.classify(GlobalConfExpired("expired")) is Outcome.IGNORED
    assert policy.classify(AccessDenied("our own refusal")) is Outcome.IGNORED
    assert policy.classify(_grpc_error(grpc.StatusCode.CANCELLED)) is Outcome.IGNORED
    assert policy.classify(ValueError("a bug of ours")) is Outcome.IGNORED


def test_failure_codes_are_configurable() -> None:
    policy = OutcomePolicy.from_codes(["not_found", "SERVICE_UNAVAILABLE"])
    assert policy.classify(NotFound("x")) is Outcome.FAILURE
    assert policy.classify(DeadlineExceeded("x")) is Outcome.SUCCESS
    assert OutcomePolicy.from_codes([]) == OutcomePolicy()
    with pytest.raises(ConfigInvalid, match="NO_SUCH_CODE"):
        OutcomePolicy.from_codes(["NO_SUCH_CODE"])
    with pytest.raises(ConfigInvalid):
        OutcomePolicy.from_codes(["OK"])


@settings(max_examples=60, deadline=None)
@given(
    errors=st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=200),
    steps=st.lists(st.floats(-100, 100), min_size=1, max_size=200),
)
def test_answers_never_open_it(errors: list[BaseException], steps: list[float]) -> None:
    clock = ManualClock()
    breaker = _breaker(clock, minimum_calls=1, window_size=5, failure_rate_threshold=0.01)
    for error, step in zip(errors, steps * (len(errors) // len(steps) + 1), strict=False):
        permit = breaker.allow()
        clock.advance(step)
        permit.record(breaker.policy.classify(error), 0.0)
        assert breaker.state is BreakerState.CLOSED


@settings(max_examples=60, deadline=None)
@given(
    minimum=st.integers(1, 30),
    extra=st.integers(0, 10),
    threshold=st.floats(0.05, 1.0),
)
def test_slow_calls_are_counted(minimum: int, extra: int, threshold: float) -> None:
    clock = ManualClock()
    breaker = _breaker(
        clock,
        minimum_calls=minimum,
        window_size=minimum + extra,
        slow_call_rate_threshold=threshold,
        slow_call_s=1.0,
    )
    for i in range(minimum):
        assert breaker.state is BreakerState.CLOSED, f"opened after {i} calls"
        breaker.allow().record(Outcome.SUCCESS, 1.0)  # at the threshold = slow
    assert breaker.state is BreakerState.OPEN


# --- the state machine under any interleaving ------------------------------------------


class BreakerMachine(RuleBasedStateMachine):
    """Random interleavings of calls, outcomes, durations and clock jumps."""

    @initialize(
        window=st.sampled_from(list(WindowKind)),
        size=st.integers(1, 20),
        minimum=st.integers(1, 12),
        failure=st.floats(0.05, 1.0),
        slow=st.floats(0.05, 1.0),
        probes=st.integers(1, 4),
        open_s=st.floats(0.5, 30.0),
    )
    def setup(
        self,
        window: WindowKind,
        size: int,
        minimum: int,
        failure: float,
        slow: float,
        probes: int,
        open_s: float,
    ) -> None:
        self.clock = ManualClock()
        self.config = BreakerConfig(
            window=window,
            window_size=max(size, minimum),
            window_seconds=10.0,
            minimum_calls=minimum,
            failure_rate_threshold=failure,
            slow_call_rate_threshold=slow,
            slow_call_s=1.0,
            open_s=open_s,
            half_open_probes=probes,
        )
        self.outstanding: list[tuple[Permit, int]] = []
        self.era = 0  # transitions seen; a permit counts only in the era it was admitted in
        self.recorded_since_close = 0
        self.opened_from_closed_with: list[int] = []
        self.breaker = CircuitBreaker(
            SERVICE, self.config, clock=self.clock, listeners=(self._on_change,)
        )

    def _on_change(self, _: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        self.era += 1
        if old is BreakerState.CLOSED and new is BreakerState.OPEN:
            self.opened_from_closed_with.append(self.recorded_since_close)
        if new is BreakerState.CLOSED:
            self.recorded_since_close = 0

    @rule(
        seconds=st.one_of(
            st.sampled_from([0.5, 5.0, 30.0]), st.floats(0, 40), st.floats(-7200, 7200)
        )
    )
    def move_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def call(self) -> None:
        try:
            permit = self.breaker.allow()
        except ServiceUnavailable as refused:
            assert refused.retry_after is not None
            assert 0 <= refused.retry_after <= self.config.open_s + 1e-9
            assert self.breaker.state is not BreakerState.CLOSED
            return
        self.outstanding.append((permit, self.era))

    @precondition(lambda self: self.outstanding)
    @rule(
        which=st.one_of(st.just(-1), st.integers(0, 10**6)),
        outcome=st.sampled_from(
            [Outcome.SUCCESS, Outcome.FAILURE, Outcome.FAILURE, Outcome.IGNORED]
        ),
        slow=st.booleans(),
    )
    def finish(self, which: int, outcome: Outcome, slow: bool) -> None:
        # -1 = the newest call: reaches "one probe fails while another still runs" often.
        permit, era = self.outstanding.pop(which % len(self.outstanding))
        if (
            outcome is not Outcome.IGNORED
            and era == self.era
            and self.breaker.state is BreakerState.CLOSED
        ):
            self.recorded_since_close += 1  # before the call: the listener may fire inside
        permit.record(outcome, 1.5 if slow else 0.1)

    @invariant()
    def never_more_concurrent_probes_than_allowed(self) -> None:
        if hasattr(self, "breaker"):
            probes = sum(1 for p, _ in self.outstanding if p.probe)
            assert probes <= self.config.half_open_probes
            assert self.breaker.snapshot().probes_in_flight == probes

    @invariant()
    def opens_only_after_the_minimum_number_of_calls(self) -> None:
        if hasattr(self, "breaker"):
            for count in self.opened_from_closed_with:
                assert count >= self.config.minimum_calls

    @invariant()
    def open_time_never_exceeds_its_setting(self) -> None:
        if hasattr(self, "breaker"):
            assert 0 <= self.breaker.retry_after() <= self.config.open_s + 1e-9


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase
