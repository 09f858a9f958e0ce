"""Benchmark: the healthy registries while one registry is frozen, resilience on vs off.

Every implemented agency adapter runs behind its own provider security server
(`loadtest.faults.FaultBus`); the ЦОН calls them through one of its two consumer
security servers, one with resilience on and one with `[resilience] enabled =
false`. In one run, on the same processes, one registry is frozen (SIGSTOP) for the
same time in front of each, and the report puts side by side:

1. citizens at the counter: they arrive at a fixed rate (half of what the pool of
   operators served back to back, measured first in the same run) and wait for a
   free operator; each call's deadline and latency count from arrival. Printed:
   success rate, p50 and p99 of the calls to the healthy registries, during the
   freeze — the cascade shows as healthy calls waiting in the queue, up to (or
   past) their deadline, behind operators held by the frozen registry;
2. operators back to back (closed loop): the healthy throughput kept during the
   freeze, against the same pool's throughput just before it.

Every service is published with the ADR 0005 defaults (breaker: 20 calls, 10 at
least, 50 %, open 5 s, 2 probes; bulkhead 64 in flight + 16 waiting).

Run: `python -m loadtest.bench resilience_faults`; `GOVBUS_BENCH_SECONDS` sets how
long the registry stays frozen (default 10 s).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from loadtest.faults import (
    FaultBus,
    FaultRun,
    OperatorPool,
    WindowStats,
    run_fault,
    window_stats,
)

__all__ = ["main"]

DEADLINE = 1.5
OPERATORS = 8
FREEZE_S = float(os.environ.get("GOVBUS_BENCH_SECONDS", "10"))
PREFERRED = ("gbdfl", "zags")


async def _capacity(bus: FaultBus, seconds: float = 3.0) -> float:
    """Calls per second the operators serve back to back, nothing failing."""
    pool = OperatorPool(bus.consumer_address(), bus.reads.values(), workers=OPERATORS)
    stop = asyncio.Event()
    task = asyncio.create_task(pool.run(stop))
    await asyncio.sleep(1.0)  # channels open, caches warm
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return window_stats(pool.records, began, began + seconds).throughput


def _freeze(bus: FaultBus, victim: str, resilient: bool, rate: float | None) -> FaultRun:
    return asyncio.run(
        run_fault(
            bus,
            "freeze",
            victim,
            resilient=resilient,
            workers=OPERATORS,
            deadline=DEADLINE,
            rate=rate,
            warm_s=2.0,
            fault_s=FREEZE_S,
            limit_s=60.0,
        )
    )


def _row(label: str, on: str, off: str) -> str:
    return f"  {label:<40} {on:>24} {off:>24}"


def _figures(stats: WindowStats) -> str:
    return (
        f"{stats.success_rate * 100:.2f} % "
        f"{stats.percentile(50) * 1000:4.0f} / {stats.percentile(99) * 1000:4.0f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="govbus-bench-faults-") as tmp:
        bus = FaultBus(Path(tmp), persons=2_000)
        with bus:
            bus.start()
            victim = next((c for c in PREFERRED if c in bus.codes), bus.codes[0])
            took = ", ".join(f"{k} {v:.1f} s" for k, v in bus.start_seconds.items())
            print(
                f"{len(bus.codes)} agencies ({', '.join(bus.codes)}), each behind its own "
                f"provider SS; start-up: {took}"
            )
            capacity = asyncio.run(_capacity(bus))
            rate = capacity / 2
            print(
                f"{OPERATORS} operators, deadline {DEADLINE} s; back to back they serve "
                f"{capacity:.0f} calls/s; citizens arrive at {rate:.0f}/s; "
                f"{victim} frozen (SIGSTOP) {FREEZE_S:.0f} s"
            )
            counter = {r: _freeze(bus, victim, r, rate) for r in (True, False)}
            closed = {r: _freeze(bus, victim, r, None) for r in (True, False)}
    _report(counter, closed, victim)


def _report(counter: dict[bool, FaultRun], closed: dict[bool, FaultRun], victim: str) -> None:
    both = (True, False)
    on = counter[True]
    opened = on.first_breaker_refusal_s
    print(_row("", "resilience on", "resilience OFF"))
    print("citizens at the counter, calls to the healthy registries (ok, p50 / p99):")
    print(_row("before the freeze", *(_figures(counter[r].baseline()) for r in both)))
    whole = {r: counter[r].healthy(counter[r].fault_at, counter[r].ended_at) for r in both}
    print(_row(f"{victim} frozen, whole {FREEZE_S:.0f} s", *(_figures(whole[r]) for r in both)))
    if opened is not None and opened + DEADLINE < FREEZE_S:
        steady = {
            r: counter[r].healthy(counter[r].fault_at + opened + DEADLINE, counter[r].ended_at)
            for r in both
        }
        label = f"from {opened + DEADLINE:.1f} s (breaker open + deadline)"
        print(_row(label, *(_figures(steady[r]) for r in both)))
    print(_row("healthy calls answered", *(f"{whole[r].ok}/{whole[r].calls}" for r in both)))
    held = {r: counter[r].pool_held(counter[r].fault_at, counter[r].ended_at) for r in both}
    print(_row("operators' time held by the frozen one", *(f"{held[r]:.0%}" for r in both)))
    for r in both:
        errors = dict(whole[r].errors.most_common(3))
        if errors:
            print(f"    healthy errors, resilience {'on' if r else 'OFF'}: {errors}")
    refusals = sorted(r.latency for r in on.breaker_refusals())
    if opened is not None and refusals:
        print(
            f"  breaker: first refusal {opened:.2f} s after the freeze; {len(refusals)} refusals, "
            f"answered in p50 {refusals[len(refusals) // 2] * 1000:.1f} ms"
        )
    print("operators back to back (closed loop), healthy throughput during the freeze:")
    during = {r: closed[r].healthy(closed[r].fault_at, closed[r].ended_at) for r in both}
    kept = {r: during[r].throughput / closed[r].baseline().throughput for r in both}
    print(
        _row(
            "kept, vs just before the freeze",
            *(f"{kept[r]:.0%} ({during[r].throughput:.0f}/s)" for r in both),
        )
    )
    print(f"  on / off {kept[True] / kept[False]:.1f}x")
    print("details:")
    for run in (*counter.values(), *closed.values()):
        print(run.report())


if __name__ == "__main__":
    main()
