"""The consumer library: call agency services through your own security server
with the agency's generated stubs.

    bus = Bus("127.0.0.1:8081", client="KZ/GOV/990140000017/tson", initiator="operator-17")
    people = bus.stub(PersonRegistryStub, "KZ/GOV/040340123459/gbdfl/person/v1",
                      subject="900517312343", purpose="ID card reissue", consent=consent_id)
    person = await people.GetPerson(GetPersonRequest(iin="900517312343"))

Every call carries the `govbus-*` metadata (a fresh request id per call and a W3C
`traceparent`), and a failure is raised as the typed govbus error
(`govbus.errors`), with the origin saying which side refused. A plain gRPC client
in any language reaches the same security server by setting the same metadata.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, TypeVar

import grpc

from govbus import metadata as md
from govbus.errors import from_rpc_error
from govbus.ids import Iin, ServiceId, SubsystemId
from govbus.serving import DEFAULT_OPTIONS

__all__ = ["Bus", "new_traceparent"]

StubT = TypeVar("StubT")


def new_traceparent() -> str:
    """A fresh W3C trace context (the current OpenTelemetry span's, when there is one)."""
    try:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return (
                f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
            )
    except ImportError:  # opentelemetry is a dependency; tolerate a trimmed install
        pass
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


class _Unary:
    def __init__(self, inner: Any, metadata: Callable[[], list[tuple[str, str | bytes]]]) -> None:
        self._inner = inner
        self._metadata = metadata

    # `timeout` keeps the signature of a generated stub method.
    async def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
    ) -> Any:
        try:
            return await self._inner(
                request, timeout=timeout, metadata=[*self._metadata(), *(metadata or ())]
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None


class _Stream:
    def __init__(self, inner: Any, metadata: Callable[[], list[tuple[str, str | bytes]]]) -> None:
        self._inner = inner
        self._metadata = metadata

    # `timeout` keeps the signature of a generated stub method.
    async def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
    ) -> AsyncIterator[Any]:
        call = self._inner(
            request, timeout=timeout, metadata=[*self._metadata(), *(metadata or ())]
        )
        try:
            async for message in call:
                yield message
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None


class _BusChannel:
    """Looks like a grpc.aio channel to a generated stub; adds govbus metadata to every call."""

    def __init__(
        self, channel: grpc.aio.Channel, metadata: Callable[[], list[tuple[str, str | bytes]]]
    ) -> None:
        self._channel = channel
        self._metadata = metadata

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> _Unary:
        return _Unary(
            self._channel.unary_unary(method, request_serializer, response_deserializer),
            self._metadata,
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> Any:
        inner = self._channel.unary_stream(method, request_serializer, response_deserializer)
        stream = _Stream(inner, self._metadata)
        return stream.__call__

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("govbus carries unary and server-streaming methods")

    stream_stream = stream_unary


class Bus:
    """A consumer's handle on its local security server."""

    def __init__(
        self,
        address: str,
        client: str,
        *,
        initiator: str = "",
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.client = str(SubsystemId.parse(client))
        self.initiator = initiator
        self._own_channel = channel is None
        self.channel = channel or grpc.aio.insecure_channel(address, options=DEFAULT_OPTIONS)

    def stub(
        self,
        stub_class: Callable[[Any], StubT],
        service: str,
        *,
        subject: str | None = None,
        purpose: str = "",
        consent: str | None = None,
        consent_artefact: bytes | None = None,
        legal_basis: str | None = None,
        initiator: str | None = None,
    ) -> StubT:
        """A typed stub whose calls go to `service` through the security server."""
        fixed: list[tuple[str, str | bytes]] = [
            (md.CLIENT, self.client),
            (md.SERVICE, str(ServiceId.parse(service))),
        ]
        if subject:
            fixed.append((md.SUBJECT, str(Iin.parse(subject))))
        if purpose:
            fixed.append((md.PURPOSE, purpose))
        if consent:
            fixed.append((md.CONSENT, consent))
        if consent_artefact:
            fixed.append((md.CONSENT_ARTEFACT, consent_artefact))
        if legal_basis:
            fixed.append((md.LEGAL_BASIS, legal_basis))
        who = initiator if initiator is not None else self.initiator
        if who:
            fixed.append((md.INITIATOR, who))

        def metadata() -> list[tuple[str, str | bytes]]:
            return [*fixed, (md.REQUEST_ID, uuid.uuid4().hex), (md.TRACEPARENT, new_traceparent())]

        return stub_class(_BusChannel(self.channel, metadata))

    async def close(self) -> None:
        if self._own_channel:
            await self.channel.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
