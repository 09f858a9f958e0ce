"""The consumer side of a security server: local clients in, signed envelopes out.

It accepts any gRPC method from local clients (raw bytes, no agency protos),
reads the `govbus-*` metadata, resolves the service in the global
configuration, checks access rights and size, signs the request, logs it, sends
it to a provider security server over mutual TLS, verifies the signed answer
(bound to the request hash), logs it and only then returns it.

Every refusal is logged and raised as a govbus error whose origin says which
side refused. Nothing here blocks the event loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc

from govbus import metadata as md
from govbus.crypto.keys import KeySigner
from govbus.errors import (
    AccessDenied,
    GovbusError,
    Internal,
    Origin,
    ServiceUnavailable,
    SignatureInvalid,
    error_class,
    from_rpc_error,
)
from govbus.globalconf import GlobalConfClient, GlobalConfView
from govbus.pb.govbus.v1 import audit_pb2, envelope_pb2, globalconf_pb2
from govbus.telemetry import Tracing, traceparent_of
from security_server.channels import ChannelPool
from security_server.envelope import Opened, member_of, open_envelope, seal
from security_server.metrics import SsMetrics
from security_server.policy import check_shape, check_size
from security_server.records import ExchangeLog, RecordFactory, append_signed

__all__ = ["ConsumerSide"]

_UNARY = "/govbus.v1.Exchange/Unary"
_STREAM = "/govbus.v1.Exchange/ServerStream"
_DEFAULT_DEADLINE_MS = 10_000
_SKIP_PREFIXES = ("/grpc.health.", "/grpc.reflection.", "/govbus.v1.SecurityServerAdmin/")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Prepared:
    call: md.CallMetadata
    view: GlobalConfView
    service: globalconf_pb2.Service
    header: envelope_pb2.Header
    signed: envelope_pb2.SignedMessage
    request_hash: bytes
    server: globalconf_pb2.SecurityServer
    timeout: float
    started_ns: int
    span: Any = None


class ConsumerSide:
    def __init__(
        self,
        *,
        server_id: str,
        member_id: str,
        signer: KeySigner,
        certificate_der: bytes,
        conf: GlobalConfClient,
        log: ExchangeLog,
        records: RecordFactory,
        channels: ChannelPool,
        metrics: SsMetrics,
        tracing: Tracing | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.server_id = server_id
        self._tracing = tracing or Tracing("", None)
        self.member_id = member_id
        self._signer = signer
        self._certificate = certificate_der
        self._conf = conf
        self._log = log
        self._records = records
        self._channels = channels
        self._metrics = metrics
        self._clock_ms = clock_ms
        self.exchanges = 0
        self.refusals = 0

    # --- gRPC plumbing ----------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler:
        side = self

        class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
                method: str = details.method
                if method.startswith(_SKIP_PREFIXES):
                    return None
                if side._is_streaming(details.invocation_metadata, method):
                    return grpc.unary_stream_rpc_method_handler(partial(side.stream, method))
                return grpc.unary_unary_rpc_method_handler(partial(side.unary, method))

        return _Handler()

    def _is_streaming(self, metadata: tuple[tuple[str, str], ...], method: str) -> bool:
        view = self._conf.view
        if view is None:
            return False
        for key, value in metadata or ():
            if key == md.SERVICE:
                found = view.methods.get((value, method))
                return bool(found and found.server_streaming)
        return False

    # --- the exchange -----------------------------------------------------------------

    async def unary(self, method: str, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter_ns()
        prepared: _Prepared | None = None
        try:
            prepared = await self._prepare(method, body, context, started, streaming=False)
            stub = self._channels.get(prepared.server.address).unary_unary(
                _UNARY,
                request_serializer=envelope_pb2.SignedMessage.SerializeToString,
                response_deserializer=envelope_pb2.SignedMessage.FromString,
            )
            upstream = time.perf_counter_ns()
            try:
                answer = await stub(prepared.signed, timeout=prepared.timeout)
            except grpc.RpcError as exc:
                raise self._transport_error(exc, prepared) from None
            upstream_us = (time.perf_counter_ns() - upstream) // 1000
            opened = self._open_answer(answer, prepared, envelope_pb2.RESPONSE, 0)
            await self._log_answer(opened, prepared, audit_pb2.PHASE_RESPONSE, upstream_us)
            self._finish(context, prepared, opened.header)
            return opened.body
        except GovbusError as exc:
            await self._refused(exc, context, method, prepared)
            raise AssertionError("unreachable: abort raises") from None

    async def stream(
        self, method: str, body: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter_ns()
        prepared: _Prepared | None = None
        try:
            prepared = await self._prepare(method, body, context, started, streaming=True)
            stub = self._channels.get(prepared.server.address).unary_stream(
                _STREAM,
                request_serializer=envelope_pb2.SignedMessage.SerializeToString,
                response_deserializer=envelope_pb2.SignedMessage.FromString,
            )
            expected = 0
            try:
                async for answer in stub(prepared.signed, timeout=prepared.timeout):
                    kind = envelope_pb2.STREAM_MESSAGE
                    header_peek = envelope_pb2.Header.FromString(answer.header)
                    if header_peek.kind == envelope_pb2.STREAM_END:
                        kind = envelope_pb2.STREAM_END
                    opened = self._open_answer(answer, prepared, kind, expected)
                    expected += 1
                    if kind == envelope_pb2.STREAM_END:
                        await self._log_answer(opened, prepared, audit_pb2.PHASE_STREAM_END, 0)
                        self._finish(context, prepared, opened.header)
                        return
                    await self._log_answer(opened, prepared, audit_pb2.PHASE_STREAM_MESSAGE, 0)
                    yield opened.body
            except grpc.RpcError as exc:
                raise self._transport_error(exc, prepared) from None
            raise SignatureInvalid(
                "provider stream ended without a signed end-of-stream message",
                origin=Origin.PROVIDER_SS,
            )
        except GovbusError as exc:
            await self._refused(exc, context, method, prepared)

    # --- steps ------------------------------------------------------------------------

    async def _prepare(
        self,
        method_path: str,
        body: bytes,
        context: grpc.aio.ServicerContext,
        started_ns: int,
        *,
        streaming: bool,
    ) -> _Prepared:
        call = md.parse_call_metadata(context.invocation_metadata() or ())
        view = self._conf.current()
        service = view.service(call.service)
        method = view.method(call.service, method_path)
        check_shape(method, streaming)
        if member_of(call.client) != self.member_id:
            raise AccessDenied(
                f"this security server signs for {self.member_id} only, not for {call.client}",
                origin=Origin.CONSUMER_SS,
            )
        if not view.may_call(call.client, call.service):
            raise AccessDenied(
                f"{call.client} has no access right to {call.service}", origin=Origin.CONSUMER_SS
            )
        check_size(service, len(body))
        servers = view.servers_of(call.service)
        if not servers:
            raise ServiceUnavailable(
                f"no security server serves {call.service}", origin=Origin.CONSUMER_SS
            )
        server = servers[self.exchanges % len(servers)]
        remaining = context.time_remaining()
        timeout = (
            remaining
            if remaining is not None
            else (service.default_deadline_ms or _DEFAULT_DEADLINE_MS) / 1000
        )
        span = self._tracing.start(
            "govbus.consumer",
            traceparent=call.traceparent,
            attributes={
                "govbus.client": call.client,
                "govbus.service": call.service,
                "govbus.request_id": call.request_id,
            },
        )
        now = self._clock_ms()
        header = envelope_pb2.Header(
            kind=envelope_pb2.REQUEST,
            request_id=call.request_id,
            client=call.client,
            service=call.service,
            method=method_path,
            subject=call.subject,
            purpose=call.purpose,
            consent=call.consent,
            legal_basis=call.legal_basis,
            initiator=call.initiator,
            traceparent=traceparent_of(span) if span is not None else call.traceparent,
            sent_at_ms=now,
            deadline_ms=now + int(timeout * 1000),
            sender_server=self.server_id,
            receiver_server=server.id,
            consent_artefact=call.consent_artefact,
        )
        signed, request_hash = seal(header, body, self._signer, self._certificate)
        prepared = _Prepared(
            call, view, service, header, signed, request_hash, server, timeout, started_ns
        )
        record = self._records.message(
            audit_pb2.PHASE_REQUEST,
            header,
            message_hash=request_hash,
            request_hash=request_hash,
            signature=signed.signature,
            body=body,
            peer_server=server.id,
        )
        await self._append(record, signed)
        return prepared

    def _open_answer(
        self,
        answer: envelope_pb2.SignedMessage,
        prepared: _Prepared,
        kind: envelope_pb2.MessageKind,
        sequence: int,
    ) -> Opened:
        try:
            opened = open_envelope(
                answer,
                prepared.view.anchor,
                expected_member=member_of(prepared.call.service),
                now_ms=self._clock_ms(),
            )
        except GovbusError as exc:
            raise exc.with_origin(Origin.PROVIDER_SS) from None
        header = opened.header
        if header.request_hash != prepared.request_hash:
            raise SignatureInvalid(
                "answer is not bound to this request (request hash differs)",
                origin=Origin.PROVIDER_SS,
            )
        if header.kind != kind or header.sequence != sequence:
            raise SignatureInvalid(
                f"answer out of order: kind {header.kind} #{header.sequence}, "
                f"expected {kind} #{sequence}",
                origin=Origin.PROVIDER_SS,
            )
        return opened

    async def _log_answer(
        self,
        opened: Opened,
        prepared: _Prepared,
        phase: audit_pb2.Phase,
        upstream_us: int,
    ) -> None:
        record = self._records.message(
            phase,
            opened.header,
            message_hash=opened.message_hash,
            request_hash=prepared.request_hash,
            signature=opened.signed.signature,
            body=opened.body,
            peer_server=opened.header.sender_server,
            request=prepared.header,
            duration_us=(time.perf_counter_ns() - prepared.started_ns) // 1000,
            upstream_us=upstream_us,
        )
        await self._append(record, opened.signed)

    def _finish(
        self, context: grpc.aio.ServicerContext, prepared: _Prepared, answer: envelope_pb2.Header
    ) -> None:
        if answer.trailers:
            context.set_trailing_metadata(tuple((t.key, t.value) for t in answer.trailers))
        self.exchanges += 1
        elapsed = (time.perf_counter_ns() - prepared.started_ns) / 1e9
        self._metrics.latency.labels("consumer", prepared.call.service).observe(elapsed)
        Tracing.finish(prepared.span, answer.error_code)
        if answer.status_code:
            cls = error_class(answer.error_code) or Internal
            origin = Origin.__members__.get(answer.error_origin, Origin.PROVIDER)
            raise cls(answer.error_message or answer.error_code, origin=origin)
        self._metrics.count("consumer", prepared.call.client, prepared.call.service, "OK")

    def _transport_error(self, exc: grpc.RpcError, prepared: _Prepared) -> GovbusError:
        error = from_rpc_error(exc)
        code = exc.code() if hasattr(exc, "code") else None
        if code is grpc.StatusCode.UNAVAILABLE and error.code == "SERVICE_UNAVAILABLE":
            return ServiceUnavailable(
                f"provider security server {prepared.server.id} at {prepared.server.address} "
                f"is unreachable: {error.message}",
                origin=Origin.PROVIDER_SS,
                retry_after=1.0,
            )
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and error.code == "DEADLINE_EXCEEDED":
            error.origin = Origin.PROVIDER_SS
        return error

    async def _append(
        self, record: audit_pb2.ExchangeRecord, signed: envelope_pb2.SignedMessage | None = None
    ) -> None:
        started = time.perf_counter()
        await append_signed(self._log, record, signed)
        self._metrics.log_append.observe(time.perf_counter() - started)

    async def _refused(
        self,
        error: GovbusError,
        context: grpc.aio.ServicerContext,
        method: str,
        prepared: _Prepared | None,
    ) -> None:
        """Log a refusal or failure, count it, and end the call with the error."""
        self.refusals += 1
        if prepared is not None:
            call = prepared.call
            client, service, subject, purpose, request_id = (
                call.client,
                call.service,
                call.subject,
                call.purpose,
                call.request_id,
            )
            phase = audit_pb2.PHASE_RESPONSE
        else:
            raw = dict(
                (k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
            )
            client, service = raw.get(md.CLIENT, ""), raw.get(md.SERVICE, "")
            subject, purpose, request_id = "", raw.get(md.PURPOSE, ""), raw.get(md.REQUEST_ID, "")
            phase = audit_pb2.PHASE_REFUSED
        record = self._records.refusal(
            request_id=request_id,
            client=client,
            service=service,
            method=method,
            subject=subject,
            purpose=purpose,
            error_code=error.code,
            error_origin=error.origin.value,
            status_code=error.status.value[0],
            reason=error.message,
            peer_server=prepared.server.id if prepared is not None else "",
            request_hash=prepared.request_hash if prepared is not None else b"",
            phase=phase,
            duration_us=(time.perf_counter_ns() - prepared.started_ns) // 1000 if prepared else 0,
        )
        try:
            await self._append(record)
        except GovbusError as log_error:
            error = log_error
        self._metrics.count("consumer", client[:100], service[:100], error.code)
        if prepared is not None and prepared.span is not None and prepared.span.is_recording():
            Tracing.finish(prepared.span, error.code)
        await error.abort(context)
