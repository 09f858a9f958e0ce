"""Load generation: closed-loop (find the maximum) and open-loop (a fixed
arrival rate, so latency is measured without coordinated omission).

Both are bounded in count and time and stop by themselves.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["LoadResult", "closed_loop", "cpu_seconds", "open_loop"]

Call = Callable[[], Awaitable[object]]


@dataclass
class LoadResult:
    duration: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful calls
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.duration if self.duration else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def success_rate(self) -> float:
        total = self.ok + sum(self.errors.values())
        return self.ok / total if total else 0.0

    def summary(self) -> str:
        return (
            f"{self.throughput:8.0f}/s  p50 {self.percentile(50) * 1000:6.2f} ms  "
            f"p99 {self.percentile(99) * 1000:6.2f} ms  ok {self.success_rate * 100:5.1f} %"
        )

    def mean(self) -> float:
        return statistics.fmean(self.latencies) if self.latencies else float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far; this process when `pid` is None.

    Unlike wall-clock throughput, CPU per call barely moves when other work shares
    the machine, so benchmarks report it beside their rates.
    """
    if pid is None:
        times = os.times()
        return times.user + times.system
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _error_name(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):  # a gRPC error: its status code
        code = code()
    return str(getattr(code, "name", code) or type(exc).__name__)


async def closed_loop(
    call: Call, *, concurrency: int, duration: float, max_calls: int = 10_000_000
) -> LoadResult:
    """`concurrency` workers call back to back for `duration` seconds."""
    result = LoadResult(duration)
    end = time.perf_counter() + duration
    budget = [max_calls]

    async def worker() -> None:
        while time.perf_counter() < end and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
                result.errors[_error_name(exc)] += 1
            else:
                result.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.duration = time.perf_counter() - started
    return result


async def open_loop(
    call: Call, *, rate: float, duration: float, max_in_flight: int = 2_000
) -> LoadResult:
    """Start calls at `rate` per second for `duration` seconds; latency counts from the
    scheduled start, so a stalled server is not hidden by a slowed generator."""
    result = LoadResult(duration)
    interval = 1.0 / rate
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        try:
            await call()
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
            result.errors[_error_name(exc)] += 1
        else:
            result.latencies.append(time.perf_counter() - scheduled)

    n = 0
    while True:
        scheduled = start + n * interval
        if scheduled - start >= duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:
            result.errors["generator-overload"] += 1
        else:
            task = asyncio.create_task(one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    result.duration = duration
    return result
