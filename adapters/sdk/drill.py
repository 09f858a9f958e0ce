"""Fault drills: make an adapter answer late on purpose.

An operator rehearses a slow registry — the case a dead or frozen process does not
cover: the registry is up, accepts every call, and answers after the caller has
given up. With `govbus adapter serve CODE … --drill` the adapter also serves
`govbus.v1.Drill` on its own port; `SetDelay(ms)` adds that much latency before
every answer of its services, `Clear` takes it away:

```sh
govbus adapter drill --target 127.0.0.1:50051 --delay-ms 3000   # answer after 3 s
govbus adapter drill --target 127.0.0.1:50051 --clear
```

`DrillControl` is the state (one number and a counter); the SDK's call wrapper
awaits `hold()` before running the servicer, so the delay is cancelled with the
call when its deadline passes and the call is logged with the time it really took.
Without `--drill` there is no `DrillControl`, no Drill service, and the wrapper
pays one `is None` test per call.

This module must never sleep unless a drill asked for it, and never serve the drill
on anything but the adapter's own server (it is never published on the bus).
"""

from __future__ import annotations

import asyncio

import grpc

from govbus.errors import InvalidRequest
from govbus.pb.govbus.v1 import drill_pb2, drill_pb2_grpc

__all__ = ["DRILL_SERVICE", "MAX_DELAY_MS", "DrillControl", "DrillServicer", "set_drill_delay"]

DRILL_SERVICE = "govbus.v1.Drill"
#: Longer than any deadline on the bus (120 s at most): enough to outlast every caller.
MAX_DELAY_MS = 600_000


class DrillControl:
    """The added latency of one adapter process."""

    __slots__ = ("delay_ms", "delayed_calls")

    def __init__(self) -> None:
        self.delay_ms = 0
        self.delayed_calls = 0

    def set_delay_ms(self, delay_ms: int) -> None:
        if (
            not isinstance(delay_ms, int)
            or isinstance(delay_ms, bool)
            or not 0 <= delay_ms <= MAX_DELAY_MS
        ):
            raise InvalidRequest(f"drill delay must be 0…{MAX_DELAY_MS} ms, got {delay_ms!r}")
        self.delay_ms = delay_ms

    def clear(self) -> None:
        self.delay_ms = 0

    async def hold(self) -> None:
        """Wait the drill's delay (at once when there is none)."""
        if self.delay_ms:
            self.delayed_calls += 1
            await asyncio.sleep(self.delay_ms / 1000)

    def state(self) -> drill_pb2.DrillState:
        return drill_pb2.DrillState(delay_ms=self.delay_ms, delayed_calls=self.delayed_calls)


class DrillServicer(drill_pb2_grpc.DrillServicer):
    """`govbus.v1.Drill` over a `DrillControl`."""

    def __init__(self, control: DrillControl) -> None:
        self.control = control

    async def SetDelay(
        self, request: drill_pb2.DrillDelayRequest, context: grpc.aio.ServicerContext
    ) -> drill_pb2.DrillState:
        try:
            self.control.set_delay_ms(request.delay_ms)
        except InvalidRequest as error:
            await error.abort(context)
        return self.control.state()

    async def Clear(
        self, request: drill_pb2.DrillClearRequest, context: grpc.aio.ServicerContext
    ) -> drill_pb2.DrillState:
        self.control.clear()
        return self.control.state()

    async def Status(
        self, request: drill_pb2.DrillStatusRequest, context: grpc.aio.ServicerContext
    ) -> drill_pb2.DrillState:
        return self.control.state()


def set_drill_delay(target: str, delay_ms: int, *, timeout: float = 5.0) -> drill_pb2.DrillState:
    """Set (0 = clear) the drill delay of the adapter at `target` (host:port, plaintext)."""
    with grpc.insecure_channel(target) as channel:
        stub = drill_pb2_grpc.DrillStub(channel)
        if delay_ms == 0:
            state: drill_pb2.DrillState = stub.Clear(drill_pb2.DrillClearRequest(), timeout=timeout)
        else:
            state = stub.SetDelay(drill_pb2.DrillDelayRequest(delay_ms=delay_ms), timeout=timeout)
        return state
