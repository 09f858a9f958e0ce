"""Checks both sides of an exchange apply to a request — pure functions.

The consumer applies them before it signs (to fail early, close to the
client); the provider applies them again because it trusts no consumer.
"""

from __future__ import annotations

from govbus.errors import InvalidRequest, PayloadTooLarge
from govbus.pb.govbus.v1 import globalconf_pb2

__all__ = ["check_shape", "check_size"]


def check_shape(method: globalconf_pb2.Method, streaming: bool) -> None:
    """A unary call to a streaming method (or the reverse) is the client's mistake."""
    if method.server_streaming != streaming:
        shape = "server-streaming" if method.server_streaming else "unary"
        raise InvalidRequest(f"{method.name} is {shape}; call it as such")


def check_size(service: globalconf_pb2.Service, size: int) -> None:
    limit = service.max_message_bytes
    if limit and size > limit:
        raise PayloadTooLarge(
            f"request of {size} bytes exceeds the {limit} bytes {service.id} accepts"
        )
