"""High availability: passive ejection, active health checks on real servers, failover rules."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2

from govbus.errors import Origin, ServiceUnavailable
from govbus.serving import add_health_and_reflection
from security_server.resilience import (
    Endpoint,
    EndpointHealth,
    EndpointSet,
    HealthProber,
    ManualClock,
    OutlierConfig,
    failover_allowed,
    unprocessed,
)

SERVICE = "KZ/GOV/040340123459/gbdfl/person/v1"
A = Endpoint("KZ/GOV/040340123459/ss1", "127.0.0.1:1")
B = Endpoint("KZ/GOV/040340123459/ss2", "127.0.0.1:2")
C = Endpoint("KZ/GOV/040340123459/ss3", "127.0.0.1:3")


def _set(*endpoints: Endpoint, clock: ManualClock, **outlier: float) -> EndpointSet:
    return EndpointSet(
        SERVICE,
        endpoints,
        OutlierConfig(**outlier),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(1),
    )


def _fail(endpoints: EndpointSet, endpoint: Endpoint, n: int, error: Exception) -> None:
    for _ in range(n):
        endpoints.begin(endpoint)
        endpoints.end(endpoint, error)


def _health(endpoints: EndpointSet) -> dict[str, EndpointHealth]:
    return {row.server_id: row.health for row in endpoints.snapshot()}


def test_consecutive_failures_eject_for_growing_capped_time() -> None:
    clock = ManualClock()
    endpoints = _set(A, B, clock=clock, base_ejection_s=10, max_ejection_s=25)
    _fail(endpoints, A, 4, ConnectionRefusedError())
    endpoints.begin(A)
    endpoints.end(A, None)  # a success resets the run of failures
    _fail(endpoints, A, 4, ConnectionRefusedError())
    assert _health(endpoints)[A.server_id] is EndpointHealth.HEALTHY
    _fail(endpoints, A, 1, ConnectionRefusedError())
    assert _health(endpoints)[A.server_id] is EndpointHealth.EJECTED
    assert {endpoints.pick() for _ in range(50)} == {B}
    for expected in (10, 20, 25, 25):  # base x times ejected, capped
        row = next(r for r in endpoints.snapshot() if r.server_id == A.server_id)
        assert row.ejected_remaining == pytest.approx(expected)
        clock.advance(expected)
        assert A in {endpoints.pick() for _ in range(50)}  # back after its time (no prober)
        _fail(endpoints, A, 5, ConnectionRefusedError())
    assert next(r for r in endpoints.snapshot() if r.server_id == A.server_id).ejections == 5


def test_never_ejects_the_last_server_or_more_than_the_fraction() -> None:
    clock = ManualClock()
    alone = _set(A, clock=clock)
    _fail(alone, A, 50, ConnectionRefusedError())
    assert _health(alone)[A.server_id] is EndpointHealth.HEALTHY
    assert alone.pick() == A

    pair = _set(A, B, clock=clock)
    _fail(pair, A, 5, ConnectionRefusedError())
    _fail(pair, B, 5, ConnectionRefusedError())
    assert _health(pair) == {
        A.server_id: EndpointHealth.EJECTED,
        B.server_id: EndpointHealth.HEALTHY,
    }

    three = _set(A, B, C, clock=clock, max_ejected_fraction=0.34)
    for endpoint in (A, B, C):
        _fail(three, endpoint, 5, ConnectionRefusedError())
    assert list(_health(three).values()).count(EndpointHealth.EJECTED) == 1


def test_registry_failures_behind_every_server_do_not_eject() -> None:
    clock = ManualClock()
    endpoints = _set(A, B, clock=clock)
    _fail(endpoints, A, 20, ServiceUnavailable("the agency system is down", origin=Origin.PROVIDER))
    assert _health(endpoints)[A.server_id] is EndpointHealth.HEALTHY
    _fail(endpoints, A, 5, ServiceUnavailable("shedding", origin=Origin.PROVIDER_SS))
    assert _health(endpoints)[A.server_id] is EndpointHealth.EJECTED


def test_pick_spreads_and_prefers_the_less_loaded() -> None:
    clock = ManualClock()
    endpoints = _set(A, B, C, clock=clock)
    counts = Counter(endpoints.pick() for _ in range(3000))
    assert set(counts) == {A, B, C}
    assert min(counts.values()) > 600  # roughly even
    for _ in range(10):
        endpoints.begin(A)
    counts = Counter(endpoints.pick() for _ in range(3000))
    assert counts[A] == 0  # two choices: A always loses against B or C
    assert endpoints.pick(exclude=[B, C]) == A
    with pytest.raises(ServiceUnavailable):
        endpoints.pick(exclude=[A, B, C])


def test_panic_mode_uses_all_servers_when_none_is_healthy() -> None:
    clock = ManualClock()
    endpoints = _set(A, B, clock=clock)
    endpoints.record_check(A, False)
    endpoints.record_check(B, False)
    assert {endpoints.pick() for _ in range(50)} == {A, B}


def test_membership_change_keeps_health_of_servers_that_stay() -> None:
    clock = ManualClock()
    endpoints = _set(A, B, clock=clock)
    _fail(endpoints, A, 5, ConnectionRefusedError())
    endpoints.update([A, C])
    assert _health(endpoints) == {
        A.server_id: EndpointHealth.EJECTED,
        C.server_id: EndpointHealth.HEALTHY,
    }
    moved = Endpoint(A.server_id, "127.0.0.1:9")
    endpoints.update([moved, C])  # same server id, new address: a fresh start
    assert _health(endpoints)[A.server_id] is EndpointHealth.HEALTHY
    endpoints.end(A, ConnectionRefusedError())  # a call to the old address ending: ignored


def test_no_servers_published() -> None:
    endpoints = _set(clock=ManualClock())
    with pytest.raises(ServiceUnavailable) as refused:
        endpoints.pick()
    assert refused.value.origin is Origin.REGISTRY


# --- real servers on loopback --------------------------------------------------------------


@asynccontextmanager
async def _provider_server(port: int = 0) -> AsyncIterator[tuple[grpc.aio.Server, int, object]]:
    """A real grpc.aio server with the standard health service (and an echo method)."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "processed, then failed")
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    health = add_health_and_reflection(server, ["test.Echo"])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield server, bound, health
    finally:
        await server.stop(None)


def _channel(endpoint: Endpoint) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(endpoint.address)


def test_active_checks_on_real_servers_one_stopped_then_back() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        prober = HealthProber(_channel, timeout=2.0)
        async with (
            _provider_server() as (_, port_a, _),
            _provider_server() as (
                server_b,
                port_b,
                _,
            ),
        ):
            a = Endpoint("KZ/GOV/040340123459/ss1", f"127.0.0.1:{port_a}")
            b = Endpoint("KZ/GOV/040340123459/ss2", f"127.0.0.1:{port_b}")
            endpoints = EndpointSet(SERVICE, [a, b], clock=clock, rng=random.Random(2))
            endpoints.probed = True

            async def check_all() -> None:
                for endpoint in (a, b):
                    endpoints.record_check(endpoint, await prober.check(endpoint))

            await check_all()
            assert set(_health(endpoints).values()) == {EndpointHealth.HEALTHY}

            await server_b.stop(None)  # one provider security server goes down
            await check_all()
            assert _health(endpoints)[b.server_id] is EndpointHealth.UNHEALTHY
            assert {endpoints.pick() for _ in range(50)} == {a}

            # It comes back on the same port: the next check returns it.
            async with _provider_server(port_b):
                await check_all()
                assert _health(endpoints)[b.server_id] is EndpointHealth.HEALTHY
                assert b in {endpoints.pick() for _ in range(50)}

                # Passive ejection: back only after its time AND a passing check.
                _fail(endpoints, b, 5, ConnectionRefusedError())
                clock.advance(60)
                assert {endpoints.pick() for _ in range(50)} == {a}  # time over, no check yet
                await check_all()
                assert b in {endpoints.pick() for _ in range(50)}
        await prober.aclose()

    asyncio.run(scenario())


def test_not_serving_fails_the_check() -> None:
    async def scenario() -> None:
        prober = HealthProber(_channel, timeout=2.0)
        async with _provider_server() as (_, port, health):
            endpoint = Endpoint("KZ/GOV/040340123459/ss1", f"127.0.0.1:{port}")
            assert await prober.check(endpoint)
            await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # type: ignore[attr-defined]
            assert not await prober.check(endpoint)
        await prober.aclose()

    asyncio.run(scenario())


def test_failover_only_when_nothing_was_processed() -> None:
    async def scenario() -> None:
        async with (
            _provider_server() as (server, port, _),
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            call = channel.unary_unary("/test.Echo/Call")
            with pytest.raises(grpc.aio.AioRpcError) as processed:
                await call(b"fail", timeout=5)
            assert processed.value.code() is grpc.StatusCode.UNAVAILABLE
            assert not failover_allowed(processed.value)  # it ran: never twice
            await server.stop(None)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"ping", timeout=5)
            assert failover_allowed(refused.value)  # could not connect: nothing sent

    asyncio.run(scenario())
    assert failover_allowed(unprocessed(ServiceUnavailable("shed", origin=Origin.PROVIDER_SS)))
    assert not failover_allowed(ServiceUnavailable("registry down"))
    assert failover_allowed(ConnectionRefusedError())
    assert not failover_allowed(TimeoutError())
