"""`make demo`: start a bus on localhost, run sample exchanges, show what happened.

Everything runs as real processes on loopback and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console

from govbus.client import Bus as Client
from govbus.errors import GovbusError
from govbus.pb.govbus.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from loadtest.bench_exchange import CLIENT, CONSUMER, SERVICE, start_echo_bus

__all__ = ["main"]

console = Console()


async def _visits(consumer_address: str) -> None:
    async with Client(consumer_address, CLIENT, initiator="operator-1") as client:
        stub = client.stub(
            diagnostics_pb2_grpc.DiagnosticsStub, SERVICE, purpose="connectivity check"
        )
        started = time.perf_counter()
        reply = await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"salem"))
        elapsed = (time.perf_counter() - started) * 1000
        console.print(f"  echo through the bus: {reply.payload.decode()!r} in {elapsed:.1f} ms")
        for line in reply.metadata:
            console.print(f"    provider received {line}")
        try:
            await stub.Echo(diagnostics_pb2.EchoRequest(fail_with="NOT_FOUND"))
        except GovbusError as exc:
            console.print(f"  a refusal travels back typed: [yellow]{exc}[/]")


def main() -> None:
    console.rule("govbus demo")
    with tempfile.TemporaryDirectory(prefix="govbus-demo-") as tmp:
        console.print(
            "starting a CA, a signed global configuration, two security servers and an adapter …"
        )
        bus, _adapter = start_echo_bus(Path(tmp))
        try:
            asyncio.run(_visits(bus.servers[f"{CONSUMER}/ss1"].consumer_address))
        finally:
            bus.stop()
    console.print("everything stopped.")


if __name__ == "__main__":
    main()
