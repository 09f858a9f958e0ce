"""Serve ordinary grpc.aio servicers as a govbus adapter.

```python
from adapters.sdk import serve
serve([(add_PersonRegistryServicer_to_server, MyServicer(store))], port=0,
      ready_file=Path("ready.json"), metrics_port=0)
```

gives health and reflection for every service, a ready file with the bound ports
(`{"port": …, "metrics_port": …, "pid": …, "services": […]}`), graceful stop on
SIGTERM/SIGINT, the error vocabulary, the `govbus-*` request context, JSON call logs,
Prometheus metrics and OpenTelemetry spans (see `adapters.sdk.instrument`).
`AdapterServer` is the same without the signal handling, for embedding and tests.
Given a `DrillControl` (`--drill`), the server also serves `govbus.v1.Drill`, which
adds latency before every answer for fault drills (see `adapters.sdk.drill`).

This module must never bind anything but the host it is given (loopback by default).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from adapters.sdk.drill import DRILL_SERVICE, DrillControl, DrillServicer
from adapters.sdk.instrument import AddFn, ServiceHandlers, collect_handlers, instrument
from adapters.sdk.telemetry import Telemetry
from govbus.errors import ConfigInvalid
from govbus.pb.govbus.v1 import drill_pb2_grpc
from govbus.serving import (
    DEFAULT_OPTIONS,
    add_health_and_reflection,
    run_until_signalled,
    set_serving,
    write_ready_file,
)

__all__ = ["AdapterServer", "serve", "serve_async"]

Servicers = Sequence[tuple[AddFn, object]]


class AdapterServer:
    """A grpc.aio server with the SDK wired in. `await start()`, then `await stop()`."""

    def __init__(
        self,
        servicers: Servicers,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        telemetry: Telemetry | None = None,
        service_names: Iterable[str] = (),
        subject_field: str | None = "iin",
        grace: float = 5.0,
        on_stop: Iterable[Callable[[], Awaitable[None]]] = (),
        drill: DrillControl | None = None,
    ) -> None:
        if not servicers:
            raise ConfigInvalid("an adapter serves at least one servicer")
        self.host = host
        self.requested_port = port
        self.telemetry = telemetry or Telemetry()
        self.grace = grace
        self.on_stop = list(on_stop)
        self.services: list[ServiceHandlers] = []
        for add_fn, servicer in servicers:
            self.services.extend(collect_handlers(add_fn, servicer))
        self.drill = drill
        extra = {DRILL_SERVICE} if drill is not None else set()
        self.service_names = sorted({s.name for s in self.services} | set(service_names) | extra)
        self.subject_field = subject_field
        self.port = 0
        self.server: grpc.aio.Server | None = None
        self.health: Any = None

    async def start(self) -> int:
        server = grpc.aio.server(options=DEFAULT_OPTIONS)
        for service in self.services:
            handlers = instrument(
                service, self.telemetry, subject_field=self.subject_field, drill=self.drill
            )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service.name, handlers),)
            )
            server.add_registered_method_handlers(service.name, handlers)
        if self.drill is not None:
            drill_pb2_grpc.add_DrillServicer_to_server(DrillServicer(self.drill), server)
        self.health = add_health_and_reflection(server, self.service_names)
        self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if self.port == 0:
            raise ConfigInvalid(f"could not bind {self.host}:{self.requested_port}")
        await server.start()
        await set_serving(self.health, self.service_names, True)
        self.server = server
        return self.port

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        await server.stop(self.grace if grace is None else grace)
        await self._after_stop()

    async def _after_stop(self) -> None:
        for callback in self.on_stop:
            await callback()
        self.telemetry.shutdown()

    async def __aenter__(self) -> AdapterServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_async(
    servicers: Servicers,
    *,
    service_names: Iterable[str] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    ready_file: Path | None = None,
    metrics_port: int | None = None,
    telemetry: Telemetry | None = None,
    subject_field: str | None = "iin",
    grace: float = 5.0,
    on_stop: Iterable[Callable[[], Awaitable[None]]] = (),
    stop: asyncio.Event | None = None,
    ready_info: dict[str, Any] | None = None,
    drill: DrillControl | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set); then stop gracefully."""
    adapter = AdapterServer(
        servicers,
        host=host,
        port=port,
        telemetry=telemetry,
        service_names=service_names,
        subject_field=subject_field,
        grace=grace,
        on_stop=on_stop,
        drill=drill,
    )
    await adapter.start()
    info: dict[str, Any] = {
        **(ready_info or {}),
        "port": adapter.port,
        "pid": os.getpid(),
        "services": adapter.service_names,
        "drill": drill is not None,
    }
    if metrics_port is not None:
        info["metrics_port"] = adapter.telemetry.start_metrics_server(metrics_port, host)
    write_ready_file(ready_file, info)
    assert adapter.server is not None
    try:
        await run_until_signalled(
            adapter.server,
            grace=grace,
            health_servicer=adapter.health,
            stop=stop,
        )
    finally:
        adapter.server = None
        await adapter._after_stop()


def serve(servicers: Servicers, **options: Any) -> None:
    """Blocking form of `serve_async` (same options)."""
    asyncio.run(serve_async(servicers, **options))
