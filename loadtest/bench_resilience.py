"""What guarding an exchange costs: `ExchangeGuard.run` against a bare await.

Two measurements, each against a baseline taken in the same run:
1. the guard's own CPU per call — a send that returns at once, awaited bare and
   through `guard.run` (one provider server, and three with load spreading);
   the breaker alone (`allow` + `done`) for reference;
2. the same over a real grpc.aio unary call on loopback, sequential and with
   32 calls in flight, so the guard's share of a real exchange is visible.

Run: `python -m loadtest.bench resilience`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc

from govbus.pb.govbus.v1 import globalconf_pb2
from security_server.resilience import (
    CircuitBreaker,
    Endpoint,
    ExchangeGuard,
    service_settings,
)

__all__ = ["main"]

SERVICE = "KZ/GOV/040340123459/gbdfl/person/v1"


def _guard(addresses: list[str]) -> ExchangeGuard:
    servers = {
        f"KZ/GOV/040340123459/ss{i}": globalconf_pb2.SecurityServer(
            id=f"KZ/GOV/040340123459/ss{i}", address=address
        )
        for i, address in enumerate(addresses)
    }
    service = globalconf_pb2.Service(
        id=SERVICE,
        grpc_service="kz.gov.gbdfl.v1.PersonRegistry",
        servers=list(servers),
        resilience=globalconf_pb2.BreakerSettings(max_in_flight=1024, max_queue=1024),
    )
    guard = ExchangeGuard()
    guard.apply({SERVICE: service_settings(service, servers)})
    return guard


def _best_of(runs: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(runs))


async def _per_call(n: int, call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) / n


async def _micro() -> None:
    async def send(endpoint: Endpoint, attempt: int, time_left: float) -> bytes:
        return b"answer"

    endpoint = Endpoint("KZ/GOV/040340123459/ss0", "127.0.0.1:1")
    one = _guard(["127.0.0.1:1"])
    three = _guard(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    breaker = CircuitBreaker(SERVICE)

    async def bare() -> bytes:
        return await send(endpoint, 1, 5.0)

    async def guarded_one() -> bytes:
        return await one.run(SERVICE, send, idempotent=True)

    async def guarded_three() -> bytes:
        return await three.run(SERVICE, send, idempotent=True)

    async def breaker_only() -> bytes:
        permit = breaker.allow()
        answer = await send(endpoint, 1, 5.0)
        permit.done(None)
        return answer

    n = 50_000
    results = {}
    for name, call in [
        ("bare await", bare),
        ("breaker allow+done", breaker_only),
        ("guard.run, 1 server", guarded_one),
        ("guard.run, 3 servers", guarded_three),
    ]:
        samples = [await _per_call(n, call) for _ in range(5)]
        results[name] = min(samples)
    base = results["bare await"]
    print("guard CPU per call (send returns at once; best of 5 x 50,000):")
    for name, seconds in results.items():
        extra = (seconds - base) * 1e6
        ratio = seconds / base
        print(f"  {name:<24} {seconds * 1e6:6.2f} us/call  {ratio:5.1f}x bare  +{extra:.2f} us")


async def _over_grpc() -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    guard = _guard([address])
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary("/bench.Echo/Call")
            payload = b"x" * 256

            async def send(endpoint: Endpoint, attempt: int, time_left: float) -> bytes:
                answer: bytes = await call(payload, timeout=time_left)
                return answer

            async def bare() -> bytes:
                answer: bytes = await call(payload, timeout=5.0)
                return answer

            async def guarded() -> bytes:
                return await guard.run(SERVICE, send, idempotent=True)

            for _ in range(300):
                await bare()  # warm the connection
            print(
                "over a real grpc.aio unary call on loopback "
                "(12 alternating rounds; median of the per-round ratios):"
            )
            for label, concurrency, n in (("1 in flight", 1, 500), ("32 in flight", 32, 1024)):
                ratios, bare_rates, guarded_rates = [], [], []
                for _ in range(12):
                    b = await _throughput(bare, concurrency, n)
                    g = await _throughput(guarded, concurrency, n)
                    bare_rates.append(b)
                    guarded_rates.append(g)
                    ratios.append(g / b)
                b, g = statistics.median(bare_rates), statistics.median(guarded_rates)
                ratio = statistics.median(ratios)
                print(
                    f"  {label:<13} bare {b:7.0f} calls/s  guarded {g:7.0f} calls/s  "
                    f"guarded/bare {ratio:4.2f} (rounds {min(ratios):.2f}..{max(ratios):.2f})"
                )
    finally:
        await server.stop(None)


async def _throughput(call: Callable[[], Awaitable[bytes]], concurrency: int, n: int) -> float:
    per_worker = n // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - started)


def main() -> None:
    asyncio.run(_micro())
    asyncio.run(_over_grpc())


if __name__ == "__main__":
    main()
