"""The diagnostics service (`govbus.v1.Diagnostics`): an echo an operator puts
behind a security server to check a path through the bus end to end, and that
the benchmarks call directly and through the bus to measure what the bus adds.

It answers with the `govbus-*` metadata it received, so a test sees exactly what
reached the provider. `delay_ms` and `fail_with` make deadline and error drills
possible without touching an agency system; `Stats` counts what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from govbus.errors import GovbusError, InvalidRequest, error_class
from govbus.pb.govbus.v1 import diagnostics_pb2, diagnostics_pb2_grpc

__all__ = ["SERVICE_NAME", "DiagnosticsServicer"]

SERVICE_NAME = "govbus.v1.Diagnostics"
_MAX_COUNT = 10_000
_MAX_DELAY_MS = 60_000


def _received(context: grpc.aio.ServicerContext) -> list[str]:
    return sorted(
        f"{key}={value}"
        for key, value in context.invocation_metadata() or ()
        if key.startswith("govbus-") and isinstance(value, str)
    )


class DiagnosticsServicer(diagnostics_pb2_grpc.DiagnosticsServicer):
    def __init__(self) -> None:
        self.stats = diagnostics_pb2.StatsReply()

    async def _drill(self, request: diagnostics_pb2.EchoRequest) -> None:
        if request.delay_ms:
            try:
                await asyncio.sleep(min(request.delay_ms, _MAX_DELAY_MS) / 1000)
            except asyncio.CancelledError:
                self.stats.cancelled += 1
                raise
        if request.fail_with:
            cls = error_class(request.fail_with)
            if cls is None:
                raise InvalidRequest(
                    f"fail_with names no govbus error code: {request.fail_with[:64]!r}"
                )
            raise cls(f"failing on request ({request.fail_with})")

    async def Echo(
        self, request: diagnostics_pb2.EchoRequest, context: grpc.aio.ServicerContext
    ) -> diagnostics_pb2.EchoReply:
        self.stats.calls += 1
        try:
            await self._drill(request)
        except GovbusError as exc:
            await exc.abort(context)
        self.stats.completed += 1
        return diagnostics_pb2.EchoReply(payload=request.payload, metadata=_received(context))

    async def EchoStream(
        self, request: diagnostics_pb2.EchoRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[diagnostics_pb2.EchoReply]:
        self.stats.calls += 1
        if request.count > _MAX_COUNT:
            await InvalidRequest(f"count must be at most {_MAX_COUNT}").abort(context)
        received = _received(context)
        for sequence in range(request.count):
            yield diagnostics_pb2.EchoReply(
                payload=request.payload, sequence=sequence, metadata=received
            )
        try:
            await self._drill(request)
        except GovbusError as exc:
            await exc.abort(context)
        self.stats.completed += 1

    async def Stats(
        self, request: diagnostics_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> diagnostics_pb2.StatsReply:
        return self.stats
