"""Benchmark: what the bus adds to one exchange.

In one run on this machine: a direct gRPC client -> adapter call versus the same
call client -> consumer SS -> provider SS -> adapter, with signing on both sides
and durable audit logging. Prints throughput, p50/p99 and the ratio, then the
added p99 at half of the bus's maximum load (open loop).

Targets (issue 6): bus throughput >= 40 % of direct; added p99 < 5 ms at half load.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from govbus import metadata as md
from govbus.pb.govbus.v1 import diagnostics_pb2
from loadtest.harness import DIAG_METHODS, Bus
from loadtest.load import LoadResult, closed_loop, cpu_seconds, open_loop

__all__ = ["main", "start_echo_bus"]

CONSUMER = "KZ/GOV/990140000017"
PROVIDER = "KZ/GOV/040340123459"
CLIENT = f"{CONSUMER}/tson"
SERVICE = f"{PROVIDER}/diag/echo/v1"
ECHO = "/govbus.v1.Diagnostics/Echo"
DURATION = float(os.environ.get("GOVBUS_BENCH_SECONDS", "8"))
CONCURRENCY = 32


def start_echo_bus(root: Path) -> tuple[Bus, str]:
    """Consumer SS + provider SS + diagnostics adapter; returns the bus and the adapter address."""
    bus = Bus(root, poll_s=0.5)
    for member in (CONSUMER, PROVIDER):
        bus.member(member)
    bus.subsystem(CLIENT)
    bus.server(f"{CONSUMER}/ss1")
    provider = bus.server(f"{PROVIDER}/ss1")
    bus.publish(SERVICE, "govbus.v1.Diagnostics", DIAG_METHODS, [provider.id], idempotent=(ECHO,))
    bus.grant(CLIENT, SERVICE)
    adapter = bus.start_diagnostics()
    provider.adapters[SERVICE] = adapter
    bus.write_conf()
    bus.start_server(f"{CONSUMER}/ss1")
    bus.start_server(f"{PROVIDER}/ss1")
    bus.wait_for_conf(bus.write_conf())
    return bus, adapter


async def _cpu_per_call(
    call: Callable[[], Awaitable[object]], pids: dict[str, int | None], calls: int
) -> tuple[dict[str, float], LoadResult]:
    """CPU microseconds each process spends per call over `calls` calls at 32 in flight."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = await closed_loop(call, concurrency=CONCURRENCY, duration=600, max_calls=calls)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return {name: (after[name] - before[name]) / result.ok * 1e6 for name in pids}, result


async def _run(adapter: str, consumer: str, pids: dict[str, int]) -> None:
    body = diagnostics_pb2.EchoRequest(payload=b"x" * 256).SerializeToString()
    metadata = ((md.CLIENT, CLIENT), (md.SERVICE, SERVICE), (md.PURPOSE, "benchmark"))
    async with (
        grpc.aio.insecure_channel(adapter) as direct_channel,
        grpc.aio.insecure_channel(consumer) as bus_channel,
    ):
        direct = direct_channel.unary_unary(ECHO)
        via = bus_channel.unary_unary(ECHO)

        async def call_direct() -> object:
            return await direct(body, timeout=10)

        async def call_bus() -> object:
            return await via(body, metadata=metadata, timeout=10)

        for call in (call_direct, call_bus):  # warm up channels, caches, JIT-free paths
            await closed_loop(call, concurrency=8, duration=1.0)
        direct_max = await closed_loop(call_direct, concurrency=CONCURRENCY, duration=DURATION)
        bus_max = await closed_loop(call_bus, concurrency=CONCURRENCY, duration=DURATION)
        half = max(10.0, bus_max.throughput / 2)
        direct_half = await open_loop(call_direct, rate=half, duration=DURATION)
        bus_half = await open_loop(call_bus, rate=half, duration=DURATION)
        direct_one = await closed_loop(call_direct, concurrency=1, duration=DURATION / 2)
        bus_one = await closed_loop(call_bus, concurrency=1, duration=DURATION / 2)
        calls = int(os.environ.get("GOVBUS_BENCH_CPU_CALLS", "4000"))
        direct_cpu, _ = await _cpu_per_call(
            call_direct, {"client": None, "adapter": pids["adapter"]}, calls
        )
        bus_cpu, _ = await _cpu_per_call(
            call_bus,
            {
                "client": None,
                "consumer SS": pids["consumer"],
                "provider SS": pids["provider"],
                "adapter": pids["adapter"],
            },
            calls,
        )
    _report(direct_max, bus_max, direct_half, bus_half, direct_one, bus_one, half)
    _report_cpu(direct_cpu, bus_cpu)


def _report_cpu(direct: dict[str, float], bus: dict[str, float]) -> None:
    """CPU per call is what bounds throughput on a shared 2-core machine, and it barely
    moves when other work runs beside the benchmark."""
    print("CPU per call (µs, user+system), 32 in flight:")
    print(
        "  direct: "
        + ", ".join(f"{k} {v:.0f}" for k, v in direct.items())
        + f"  = {sum(direct.values()):.0f}"
    )
    print(
        "  bus:    "
        + ", ".join(f"{k} {v:.0f}" for k, v in bus.items())
        + f"  = {sum(bus.values()):.0f}"
    )
    share = sum(direct.values()) / sum(bus.values()) * 100
    print(
        f"  direct / bus CPU per call          {share:6.1f} %"
        "   (the throughput ratio a CPU-bound machine allows)"
    )


def _report(
    direct_max: LoadResult,
    bus_max: LoadResult,
    direct_half: LoadResult,
    bus_half: LoadResult,
    direct_one: LoadResult,
    bus_one: LoadResult,
    half: float,
) -> None:
    print(f"maximum, {CONCURRENCY} in flight, {DURATION:.0f} s each:")
    print(f"  direct client -> adapter          {direct_max.summary()}")
    print(f"  client -> SS -> SS -> adapter     {bus_max.summary()}")
    ratio = bus_max.throughput / direct_max.throughput if direct_max.throughput else float("nan")
    print(f"  bus / direct throughput           {ratio * 100:6.1f} %   (target >= 40 %)")
    print("one in flight:")
    print(f"  direct                            {direct_one.summary()}")
    print(f"  bus                               {bus_one.summary()}")
    print(f"half of the bus maximum, open loop at {half:.0f}/s:")
    print(f"  direct                            {direct_half.summary()}")
    print(f"  bus                               {bus_half.summary()}")
    added = (bus_half.percentile(99) - direct_half.percentile(99)) * 1000
    print(f"  added p99                         {added:6.2f} ms   (target < 5 ms)")
    for name, result in (("direct", direct_max), ("bus", bus_max), ("bus half", bus_half)):
        if result.errors:
            print(f"  errors {name}: {dict(result.errors)}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        bus, adapter = start_echo_bus(Path(tmp))
        consumer, provider = bus.servers[f"{CONSUMER}/ss1"], bus.servers[f"{PROVIDER}/ss1"]
        assert consumer.process is not None and provider.process is not None
        pids = {
            "adapter": bus.processes[0].pid,
            "consumer": consumer.process.pid,
            "provider": provider.process.pid,
        }
        try:
            asyncio.run(_run(adapter, consumer.consumer_address, pids))
        finally:
            bus.stop()


if __name__ == "__main__":
    main()
