"""How the registry's gRPC methods end: with a govbus error, never a raw exception.

`govbus_rpc` wraps an aio servicer method: a `GovbusError` ends the call with
its code, origin and details; anything unexpected is logged with its traceback
here and leaves as `INTERNAL` without internals.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from govbus.errors import GovbusError, Internal, Origin

__all__ = ["govbus_rpc"]

log = logging.getLogger("govbus.registry.rpc")

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def govbus_rpc(method: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    """End the call with the govbus error it raised; never leak an unexpected exception."""

    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except GovbusError as exc:
            error = exc
        except Exception:
            log.exception("unexpected failure in %s", method.__name__)
            error = Internal(f"the registry failed in {method.__name__}", origin=Origin.REGISTRY)
        await error.abort(context)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    return wrapper
