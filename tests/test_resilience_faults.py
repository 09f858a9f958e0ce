"""A failing registry fails alone and fast: fault injection with real processes.

Every implemented agency adapter (all twenty once they are implemented) runs behind
its own provider security server; the ЦОН's operators (a fixed pool of workers)
call random agencies' idempotent reads through the ЦОН's consumer security server,
with a per-call deadline, while one adapter is (a) killed with SIGKILL and restarted,
(b) frozen with SIGSTOP and thawed, (c) slowed past the deadline by its drill
control and cleared. In each case the other services keep answering, the failing
one is refused at once by the consumer SS's breaker, and the breaker closes again
through half-open when the registry returns. With `[resilience] enabled = false`
on a second consumer SS, the same frozen registry holds the operators' pool and the
healthy services are served far less: the cascade the breakers prevent.

The figures each case measured are printed (`pytest -s`); assertions are ratios and
counts, never wall-clock times.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator

import pytest

from adapters.sdk.agency import discover
from govbus.pb.govbus.v1 import globalconf_pb2
from loadtest.faults import FaultBus, FaultKind, FaultRun, run_fault

pytestmark = pytest.mark.e2e

DEADLINE = 1.5  # each operator call's deadline, seconds
WORKERS = 8  # the ЦОН operators' pool
#: In the comparison, the registry stays frozen this long after the breaker opened.
HOLD_OPEN_S = 4.5
#: Published for every service: the breaker probes again after 2 s (5 s by default)
#: so that each case recovers within the test's time; everything else as defaulted.
BREAKER = globalconf_pb2.BreakerSettings(open_ms=2000)
#: The registries that fail, in order of preference (the IIN registry first: its
#: outage is the one the ЦОН lived through).
PREFERRED = ("gbdfl", "zags", "address")


#: `make test` runs the scenario on this many agencies (the failing ones among them);
#: with more implemented, the run on all of them is marked slow (`make bench`).
QUICK_AGENCIES = 8


def _ordered(codes: list[str]) -> list[str]:
    return [c for c in PREFERRED if c in codes] + [c for c in codes if c not in PREFERRED]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(QUICK_AGENCIES, id="quick"),
        pytest.param(None, id="all", marks=pytest.mark.slow),
    ],
)
def bus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultBus]:
    implemented = _ordered([a.code for a in discover()])
    size: int | None = request.param
    if size is None and len(implemented) <= QUICK_AGENCIES:
        pytest.skip(f"the quick run already covers all {len(implemented)} implemented agencies")
    codes = implemented[:size] if size else implemented
    root = tmp_path_factory.mktemp("faults")
    with FaultBus(root, persons=2_000, breaker=BREAKER, codes=codes) as bus:
        bus.start()
        print(f"\n{len(bus.codes)} agencies ({', '.join(bus.codes)}); start-up {bus.start_seconds}")
        yield bus


def _victim(bus: FaultBus, index: int) -> str:
    order = _ordered(bus.codes)
    return order[index % len(order)]


def _run(bus: FaultBus, kind: FaultKind, victim: str, **options: object) -> FaultRun:
    run = asyncio.run(
        run_fault(bus, kind, victim, workers=WORKERS, deadline=DEADLINE, **options)  # type: ignore[arg-type]
    )
    print("\n" + run.report())
    return run


def _assert_contained_and_recovered(run: FaultRun) -> None:
    # The other services keep answering: >= 99.9 % of their calls in the whole window
    # from the fault to the recovery, and none of their breakers ever opens.
    healthy = run.healthy()
    assert healthy.calls >= 100, f"too little load to judge: {healthy.summary()}"
    assert healthy.success_rate >= 0.999, (healthy.summary(), dict(healthy.errors))
    for _, states in run.states:
        opened = {s: b for s, b in states.items() if s != run.victim_service and b != "closed"}
        assert not opened, f"a healthy service's breaker left CLOSED: {opened}"

    # The failing registry is refused at once by the consumer SS's breaker.
    refusals = run.breaker_refusals()
    # How many depends on the load a busy shared machine can drive; the share refused
    # in the open window (below) is what shows the breaker at work.
    assert len(refusals) >= 3, run.report()
    assert {r.origin for r in refusals} == {"CONSUMER_SS"}
    latencies = sorted(r.latency for r in refusals)
    # "Fast": the typical refusal comes back in a small part of the deadline that a
    # call to the failing registry would otherwise have waited out.
    assert statistics.median(latencies) < DEADLINE / 5, latencies
    first = min(r.ended for r in refusals)
    # Once open, the breaker answers nearly every call itself: only its half-open
    # probes (two per open period) still go to the registry and wait.
    open_window = [r for r in run.victim_calls() if first <= r.arrived < run.ended_at - DEADLINE]
    refused = sum(r.breaker_refusal for r in open_window)
    assert refused >= 0.8 * len(open_window), (refused, len(open_window))

    # It comes back: OPEN -> HALF_OPEN -> CLOSED, and the calls succeed again.
    assert run.recovered_at is not None
    assert run.entered("open") >= 1 and run.entered("half_open") >= 1, run.report()
    assert run.entered("closed") >= 1, run.report()
    assert run.states[-1][1][run.victim_service] == "closed"
    after = run.after_recovery()
    assert after.calls >= 1 and after.success_rate >= 0.95, after.summary()


def test_a_killed_registry_fails_alone_and_returns(bus: FaultBus) -> None:
    """(a) SIGKILL the adapter; restart it on the same port."""
    victim = _victim(bus, 0)
    pid = bus.adapter_pid(victim)
    run = _run(bus, "kill", victim)
    assert bus.adapter_pid(victim) != pid  # a new process answered at the end
    _assert_contained_and_recovered(run)


def test_a_frozen_registry_fails_alone_and_returns(bus: FaultBus) -> None:
    """(b) SIGSTOP the adapter: it holds its port and answers nothing; then SIGCONT.

    Regression: the consumer SS keeps back part of the caller's deadline, so it sees
    its own deadline pass and counts it; with the caller's very deadline the caller
    hung up first and the breaker of a frozen registry never opened.
    """
    run = _run(bus, "freeze", _victim(bus, 1))
    timed_out = [r for r in run.victim_calls() if r.code == "DEADLINE_EXCEEDED"]
    # Answered by the security servers, not cut off by the caller's own timer (a busy
    # machine may still let the caller's timer win now and then).
    answered = [r for r in timed_out if r.origin != "CLIENT"]
    assert timed_out and len(answered) >= 0.8 * len(timed_out), [r.origin for r in timed_out]
    _assert_contained_and_recovered(run)


def test_a_registry_slower_than_the_deadline_fails_alone_and_returns(bus: FaultBus) -> None:
    """(c) The adapter's drill control makes it answer after the deadline; then clears."""
    run = _run(bus, "slow", _victim(bus, 2), slow_ms=int(DEADLINE * 2000))
    _assert_contained_and_recovered(run)


def test_without_breakers_and_bulkheads_a_frozen_registry_takes_the_counter_down(
    bus: FaultBus,
) -> None:
    """The same freeze through the consumer SS with `[resilience] enabled = false`.

    Without the breaker every call to the frozen registry waits out its deadline, so
    the frozen registry holds most of the operators' pool and the healthy services are
    served far less; through the resilient consumer SS, once its breaker has opened,
    the pool is free and they are served as before. Both freezes last as long, and
    both are judged on the same stretch of it — from one deadline after the resilient
    SS's breaker first refused a call (the calls already waiting when it opened have
    timed out by then) to the end — against their own healthy throughput just before
    the fault (same pool, same deadline), so a busy machine slows both alike.
    """
    victim = _victim(bus, 1)
    on = _run(bus, "freeze", victim, warm_s=2.0, hold_s=HOLD_OPEN_S)
    opened_after = on.first_breaker_refusal_s
    assert opened_after is not None
    off = _run(
        bus, "freeze", victim, resilient=False, warm_s=2.0, fault_s=on.ended_at - on.fault_at
    )
    kept, held = {}, {}
    for run in (on, off):
        start, end = run.fault_at + opened_after + DEADLINE, run.ended_at
        during = run.healthy(start, end)
        assert during.success_rate >= 0.999 or not run.resilient, during.summary()
        kept[run.resilient] = during.throughput / run.baseline().throughput
        held[run.resilient] = run.pool_held(start, end)
    # Nothing refused the frozen registry's calls: each one waited out its deadline.
    calls = [r for r in off.victim_calls() if r.arrived < off.ended_at - DEADLINE]
    assert calls and not any(r.breaker_refusal for r in calls)
    assert all(r.latency > DEADLINE / 2 for r in calls if not r.ok)
    print(
        f"\nfrom {opened_after + DEADLINE:.2f} s into the freeze (breaker open "
        f"{opened_after:.2f} s + one deadline) to its end: the "
        f"frozen registry held {held[True]:.0%} of the operators' time with resilience on, "
        f"{held[False]:.0%} off; healthy throughput kept {kept[True]:.0%} on, "
        f"{kept[False]:.0%} off ({kept[True] / kept[False]:.1f}x)"
    )
    # The cascade: without resilience the frozen registry holds most of the pool …
    assert held[False] >= 0.5 and held[False] >= 2.5 * held[True], held
    # … and the healthy services get a much smaller share of it.
    assert kept[True] >= 0.6, kept
    assert kept[True] >= 1.5 * kept[False], kept
