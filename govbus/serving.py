"""What every govbus gRPC server shares: health, reflection, readiness and shutdown.

Servers bind port 0 in tests and report the ports they bound in a *ready file*
(JSON, written atomically once the server accepts calls), so tests and the demo
wait on readiness instead of sleeping. SIGTERM and SIGINT start a graceful stop:
in-flight calls get `grace` seconds to finish, then `on_stop` callbacks run
(flush logs, close stores).

Nothing here knows about a particular service.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from govbus.crypto.keys import atomic_write

__all__ = [
    "DEFAULT_OPTIONS",
    "add_health_and_reflection",
    "run_until_signalled",
    "wait_for_ready_file",
    "write_ready_file",
]

#: Channel/server options shared by every govbus server.
DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.max_pings_without_data", 0),
)


def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Iterable[str]
) -> health.aio.HealthServicer:
    """Register standard gRPC health and reflection; every named service starts SERVING."""
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return servicer


async def set_serving(
    servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await servicer.set(name, status)


def write_ready_file(path: Path | None, info: dict[str, Any]) -> None:
    if path is not None:
        atomic_write(path, json.dumps(info).encode())


def wait_for_ready_file(
    path: Path, timeout: float, alive: Callable[[], bool] = lambda: True
) -> dict[str, Any]:
    """Block until `path` holds the ready JSON (or raise TimeoutError / RuntimeError)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        if not alive():
            raise RuntimeError(f"process exited before it was ready ({path})")
        time.sleep(0.02)
    raise TimeoutError(f"not ready after {timeout} s: {path}")


async def run_until_signalled(
    server: grpc.aio.Server,
    *,
    grace: float = 5.0,
    on_stop: Iterable[Callable[[], Awaitable[None]]] = (),
    health_servicer: health.aio.HealthServicer | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then stop gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if health_servicer is not None:
            await health_servicer.enter_graceful_shutdown()
        await server.stop(grace)
        for callback in on_stop:
            await callback()
