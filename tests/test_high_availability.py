"""High availability with real processes: one service behind two provider security
servers; one of them is killed (SIGKILL) under load and comes back.

Calls that had not reached the killed server fail over to the other one; only
calls in flight at the killed server at that instant may fail (a write must
never run twice, so those are not retried). When it returns it takes traffic
again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from govbus import metadata as md
from govbus.errors import from_rpc_error
from govbus.pb.govbus.v1 import (
    diagnostics_pb2,
    security_server_pb2,
    security_server_pb2_grpc,
)
from loadtest.harness import DIAG_METHODS, Bus

pytestmark = pytest.mark.e2e

CONSUMER = "KZ/GOV/990140000017"
PROVIDER = "KZ/GOV/040340123459"
CLIENT = f"{CONSUMER}/tson"
SERVICE = f"{PROVIDER}/diag/echo/v1"
ECHO = "/govbus.v1.Diagnostics/Echo"
WORKERS = 8


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    bus = Bus(tmp_path_factory.mktemp("ha"))
    try:
        for member in (CONSUMER, PROVIDER):
            bus.member(member)
        bus.subsystem(CLIENT)
        bus.server(f"{CONSUMER}/ss1")
        first, second = bus.server(f"{PROVIDER}/ss1"), bus.server(f"{PROVIDER}/ss2")
        # Echo is published as a write (not idempotent): failover only, never a retry.
        bus.publish(SERVICE, "govbus.v1.Diagnostics", DIAG_METHODS, [first.id, second.id])
        bus.grant(CLIENT, SERVICE)
        adapter = bus.start_diagnostics()
        first.adapters[SERVICE] = second.adapters[SERVICE] = adapter
        bus.write_conf()
        for server in (f"{CONSUMER}/ss1", first.id, second.id):
            bus.start_server(server)
        bus.wait_for_conf(bus.write_conf())
        yield bus
    finally:
        bus.stop()


async def _exchanges(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
        reply = await stub.Status(security_server_pb2.StatusRequest(), timeout=5)
        return int(reply.exchanges)


async def _load(consumer: str, stop: asyncio.Event, results: Counter[str]) -> None:
    body = diagnostics_pb2.EchoRequest(payload=b"ha").SerializeToString()
    metadata = ((md.CLIENT, CLIENT), (md.SERVICE, SERVICE))
    async with grpc.aio.insecure_channel(consumer) as channel:
        call = channel.unary_unary(ECHO)

        async def worker() -> None:
            while not stop.is_set():
                try:
                    await call(body, metadata=metadata, timeout=5)
                    results["ok"] += 1
                except grpc.aio.AioRpcError as exc:
                    results[from_rpc_error(exc).code] += 1

        await asyncio.gather(*(worker() for _ in range(WORKERS)))


def test_killing_one_provider_server_is_not_noticed(bus: Bus) -> None:
    consumer = bus.servers[f"{CONSUMER}/ss1"]
    first, second = bus.servers[f"{PROVIDER}/ss1"], bus.servers[f"{PROVIDER}/ss2"]

    async def scenario() -> tuple[Counter[str], Counter[str], int, int]:
        before: Counter[str] = Counter()
        after: Counter[str] = Counter()
        stop = asyncio.Event()
        load = asyncio.create_task(_load(consumer.consumer_address, stop, before))
        while before["ok"] < 200:  # both servers are taking traffic
            await asyncio.sleep(0.05)
        assert await _exchanges(f"127.0.0.1:{second.process.info['consumer']}") > 0  # type: ignore[union-attr]
        second.process.signal(signal.SIGKILL)  # type: ignore[union-attr]
        killed_at = before["ok"]
        while before["ok"] < killed_at + 400:
            await asyncio.sleep(0.05)
        stop.set()
        await load
        # Back on the same address: it must take traffic again.
        await asyncio.to_thread(bus.start_server, second.id)
        served_before = await _exchanges(f"127.0.0.1:{second.process.info['consumer']}")  # type: ignore[union-attr]
        stop = asyncio.Event()
        load = asyncio.create_task(_load(consumer.consumer_address, stop, after))
        deadline = time.monotonic() + 30
        served = served_before
        while served == served_before and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            served = await _exchanges(f"127.0.0.1:{second.process.info['consumer']}")  # type: ignore[union-attr]
        stop.set()
        await load
        return before, after, served_before, served

    before, after, served_before, served = asyncio.run(scenario())
    failed = sum(n for code, n in before.items() if code != "ok")
    # Only calls in flight at the killed server when it died may fail: at most one per worker.
    assert failed <= WORKERS, before
    assert set(before) <= {"ok", "SERVICE_UNAVAILABLE"}, before
    assert sum(n for code, n in after.items() if code != "ok") == 0, after
    assert served > served_before, "the restarted server took no traffic"
    assert first.process is not None and first.process.proc is not None
    assert first.process.proc.poll() is None
