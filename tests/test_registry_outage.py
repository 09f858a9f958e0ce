"""The registry down, through real security servers (issue 4).

With the registry process killed, exchanges go on on the cached configuration;
once that copy expires the consumer security server refuses with
GLOBAL_CONF_EXPIRED; when the registry comes back on the same address the
security servers recover by themselves, without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest

from govbus import metadata as md
from govbus.errors import GovbusError, Origin, from_rpc_error
from govbus.pb.govbus.v1 import diagnostics_pb2
from loadtest.harness import RegistryBus

pytestmark = pytest.mark.e2e

CONSUMER = "KZ/GOV/990140000017"
PROVIDER = "KZ/GOV/040340123459"
CLIENT = f"{CONSUMER}/tson"
SERVICE = f"{PROVIDER}/diag/echo/v1"
TTL = 6.0  # seconds a configuration stays valid without a newer one


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryBus]:
    bus = RegistryBus(tmp_path_factory.mktemp("outage"), conf_ttl=TTL, resign_interval=1.0)
    try:
        bus.start()
        for member in (CONSUMER, PROVIDER):
            bus.member(member)
        bus.subsystem(CLIENT)
        bus.subsystem(f"{PROVIDER}/diag")
        bus.server(f"{CONSUMER}/ss1")
        provider = bus.server(f"{PROVIDER}/ss1")
        bus.publish(SERVICE, "govbus.v1.Diagnostics", diagnostics_pb2.DESCRIPTOR, [provider.id])
        bus.grant(CLIENT, SERVICE)
        provider.adapters[SERVICE] = bus.start_diagnostics()
        bus.start_server(f"{CONSUMER}/ss1")
        bus.start_server(provider.id)
        bus.wait_for_conf(bus.admin.wait_published())
        yield bus
    finally:
        bus.stop()


def _echo(bus: RegistryBus) -> GovbusError | None:
    """One exchange through the bus: None when it succeeded, else the error."""

    async def call() -> GovbusError | None:
        address = bus.servers[f"{CONSUMER}/ss1"].consumer_address
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                await channel.unary_unary("/govbus.v1.Diagnostics/Echo")(
                    diagnostics_pb2.EchoRequest(payload=b"x").SerializeToString(),
                    metadata=((md.CLIENT, CLIENT), (md.SERVICE, SERVICE)),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                return from_rpc_error(exc)
        return None

    return asyncio.run(call())


def _until(bus: RegistryBus, wanted: str | None, timeout: float) -> GovbusError | None:
    """Exchange until the outcome's code is `wanted` (None = success), within `timeout`."""
    end = time.monotonic() + timeout
    while True:
        outcome = _echo(bus)
        if (outcome.code if outcome else None) == wanted or time.monotonic() > end:
            return outcome
        time.sleep(0.2)


def test_exchanges_outlive_the_registry_until_expiry_then_recover(bus: RegistryBus) -> None:
    assert _echo(bus) is None
    consumer_pid = bus.servers[f"{CONSUMER}/ss1"].process.pid  # type: ignore[union-attr]
    bus.kill_registry()
    assert _echo(bus) is None  # the cached, signed configuration is still in force
    expired = _until(bus, "GLOBAL_CONF_EXPIRED", timeout=TTL + 10)
    assert expired is not None and expired.code == "GLOBAL_CONF_EXPIRED", expired
    assert expired.origin is Origin.CONSUMER_SS
    bus.start()  # same state, same address
    assert _until(bus, None, timeout=30) is None
    assert bus.servers[f"{CONSUMER}/ss1"].process.pid == consumer_pid  # type: ignore[union-attr]
