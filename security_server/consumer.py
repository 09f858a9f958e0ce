"""The consumer side of a security server: local clients in, signed envelopes out.

It accepts any gRPC method from local clients (raw bytes, no agency protos),
reads the `govbus-*` metadata, resolves the service in the global
configuration, checks access rights and size, and hands the exchange to the
resilience guard (breaker, bulkhead, deadline, retries of idempotent reads,
choice among the provider security servers). Each attempt is signed, logged,
sent over mutual TLS, and its signed answer (bound to the request hash)
verified and logged before the payload goes back to the client.

Every refusal is logged and raised as a govbus error whose origin says which
side refused. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

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
from security_server.resilience import Endpoint, ExchangeGuard, Send

__all__ = ["ConsumerSide", "answer_error", "own_time_left"]

log = logging.getLogger("govbus.ss.consumer")

T = TypeVar("T")

_UNARY = "/govbus.v1.Exchange/Unary"
_STREAM = "/govbus.v1.Exchange/ServerStream"
_SKIP_PREFIXES = ("/grpc.health.", "/grpc.reflection.", "/govbus.v1.SecurityServerAdmin/")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def own_time_left(caller_time_left: float | None) -> float | None:
    """The exchange's own deadline: the caller's, less a little time kept back to answer.

    With the very same deadline the caller's own timer often fires first and cancels
    the call here; a registry that never answers would then look like callers hanging
    up, never like a failure, and its breaker would never open. Keeping back 5 %
    (20 ms to 200 ms, at most half) lets this server see the deadline pass, log it,
    count it and answer `DEADLINE_EXCEEDED` before the caller gives up (Envoy's
    `grpc_timeout_header_offset` does the same for the same reason).
    """
    if caller_time_left is None or not caller_time_left > 0:
        return caller_time_left  # none given, or already spent: Deadline.after says so
    kept = min(max(caller_time_left * 0.05, 0.02), 0.2, caller_time_left / 2)
    return caller_time_left - kept


def answer_error(header: envelope_pb2.Header) -> GovbusError:
    """The typed error a signed answer carries."""
    cls = error_class(header.error_code) or Internal
    origin = Origin.__members__.get(header.error_origin, Origin.PROVIDER)
    return cls(
        header.error_message or header.error_code,
        origin=origin,
        retry_after=header.retry_after_ms / 1000 if header.retry_after_ms else None,
        metadata={entry.key: entry.value for entry in header.error_metadata},
    )


@dataclass(slots=True)
class _Exchange:
    """One client call, across every attempt the guard makes."""

    method_path: str
    call: md.CallMetadata
    #: The request header every attempt copies (attempt, times and receiver added).
    request: envelope_pb2.Header
    view: GlobalConfView
    service: globalconf_pb2.Service
    method: globalconf_pb2.Method
    body: bytes
    time_left: float | None
    started_ns: int
    span: Any = None
    header: envelope_pb2.Header | None = None  # of the last attempt
    request_hash: bytes = b""
    server: str = ""
    logged: set[int] = field(default_factory=set)  # ids of errors already logged


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
        guard: ExchangeGuard | None,
        metrics: SsMetrics,
        tracing: Tracing | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.server_id = server_id
        self.member_id = member_id
        self._signer = signer
        self._certificate = certificate_der
        self._conf = conf
        self._log = log
        self._records = records
        self._channels = channels
        self._guard = guard
        self._metrics = metrics
        self._tracing = tracing or Tracing("", None)
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
        exchange: _Exchange | None = None
        try:
            exchange = self._resolve(method, body, context, started, streaming=False)
            opened: Opened = await self._run(exchange, partial(self._send_unary, exchange))
            self._succeeded(context, exchange, opened.header)
            return opened.body
        except (GovbusError, grpc.RpcError) as exc:
            await self._refused(exc, context, method, exchange)
        except Exception as exc:  # noqa: BLE001 - a bug must answer INTERNAL, never crash or hang
            await self._refused(_unexpected(exc), context, method, exchange)
        raise AssertionError("unreachable: abort raises")

    async def stream(
        self, method: str, body: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter_ns()
        exchange: _Exchange | None = None
        try:
            exchange = self._resolve(method, body, context, started, streaming=True)
            # The guard covers setting the stream up, up to its first message: a breaker
            # or bulkhead slot is not held for the whole life of a long stream.
            first: tuple[Any, Opened] = await self._run(
                exchange, partial(self._send_stream, exchange)
            )
            call, opened = first
            sequence = 0
            while opened.header.kind == envelope_pb2.STREAM_MESSAGE:
                yield opened.body
                sequence += 1
                try:
                    answer = await call.read()
                except grpc.RpcError as exc:
                    raise self._transport_error(exc, exchange) from None
                if answer is grpc.aio.EOF:
                    raise SignatureInvalid(
                        "provider stream ended without a signed end-of-stream message",
                        origin=Origin.PROVIDER_SS,
                    )
                opened = await self._checked_answer(answer, exchange, sequence, streaming=True)
            if opened.header.status_code:
                error = answer_error(opened.header)
                exchange.logged.add(id(error))
                raise error
            self._succeeded(context, exchange, opened.header)
        except (GovbusError, grpc.RpcError) as exc:
            await self._refused(exc, context, method, exchange)
        except Exception as exc:  # noqa: BLE001 - a bug must answer INTERNAL, never crash or hang
            await self._refused(_unexpected(exc), context, method, exchange)

    # --- steps ------------------------------------------------------------------------

    async def _run(self, exchange: _Exchange, send: Send[T]) -> T:
        """Through the resilience guard; or, with resilience switched off (a drill that
        shows what the guard prevents), straight to one provider server."""
        if self._guard is not None:
            return await self._guard.run(
                exchange.call.service,
                send,
                idempotent=exchange.method.idempotent,
                time_left=exchange.time_left,
            )
        servers = exchange.view.servers_of(exchange.call.service)
        if not servers:
            raise ServiceUnavailable(
                f"no security server serves {exchange.call.service}", origin=Origin.CONSUMER_SS
            )
        server = servers[self.exchanges % len(servers)]
        time_left = exchange.time_left
        if time_left is None:
            time_left = (exchange.service.default_deadline_ms or 5000) / 1000
        return await send(Endpoint(server.id, server.address), 1, time_left)

    def _resolve(
        self,
        method_path: str,
        body: bytes,
        context: grpc.aio.ServicerContext,
        started_ns: int,
        *,
        streaming: bool,
    ) -> _Exchange:
        """Everything decided once per client call, before any attempt."""
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
        span = self._tracing.start(
            "govbus.consumer",
            traceparent=call.traceparent,
            attributes={
                "govbus.client": call.client,
                "govbus.service": call.service,
                "govbus.request_id": call.request_id,
            },
        )
        request = envelope_pb2.Header(
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
            sender_server=self.server_id,
            consent_artefact=call.consent_artefact,
        )
        return _Exchange(
            method_path,
            call,
            request,
            view,
            service,
            method,
            body,
            own_time_left(context.time_remaining()),
            started_ns,
            span,
        )

    def _sign_and_log(
        self, exchange: _Exchange, endpoint: Endpoint, attempt: int, time_left: float
    ) -> tuple[envelope_pb2.SignedMessage, asyncio.Task[None]]:
        """Sign one attempt and hand its record to the log. The record becomes durable
        while the request travels; callers await the task before they record or
        return the answer, so nothing is returned before the whole exchange is logged."""
        now = self._clock_ms()
        header = envelope_pb2.Header()
        header.CopyFrom(exchange.request)
        header.sent_at_ms = now
        header.deadline_ms = now + max(1, int(time_left * 1000))
        header.receiver_server = endpoint.server_id
        header.attempt = attempt - 1
        signed, request_hash = seal(header, exchange.body, self._signer, self._certificate)
        exchange.header, exchange.request_hash, exchange.server = (
            header,
            request_hash,
            endpoint.server_id,
        )
        record = self._records.message(
            audit_pb2.PHASE_REQUEST,
            header,
            message_hash=request_hash,
            request_hash=request_hash,
            signature=signed.signature,
            body=exchange.body,
            peer_server=endpoint.server_id,
        )
        return signed, asyncio.ensure_future(self._append(record, signed))

    async def _send_unary(
        self, exchange: _Exchange, endpoint: Endpoint, attempt: int, time_left: float
    ) -> Opened:
        """One attempt at one provider server (called by the guard)."""
        signed, logged = self._sign_and_log(exchange, endpoint, attempt, time_left)
        stub = self._channels.method(
            endpoint.address,
            _UNARY,
            request_serializer=envelope_pb2.SignedMessage.SerializeToString,
            response_deserializer=envelope_pb2.SignedMessage.FromString,
        )
        upstream = time.perf_counter_ns()
        try:
            answer = await stub(signed, timeout=time_left)
        except grpc.RpcError as exc:
            await logged
            await self._log_failure(exchange, self._transport_error(exc, exchange))
            exchange.logged.add(id(exc))
            raise
        await logged
        return await self._checked_answer(
            answer,
            exchange,
            0,
            streaming=False,
            upstream_us=(time.perf_counter_ns() - upstream) // 1000,
        )

    async def _send_stream(
        self, exchange: _Exchange, endpoint: Endpoint, attempt: int, time_left: float
    ) -> tuple[Any, Opened]:
        signed, logged = self._sign_and_log(exchange, endpoint, attempt, time_left)
        call = self._channels.method(
            endpoint.address,
            _STREAM,
            streaming=True,
            request_serializer=envelope_pb2.SignedMessage.SerializeToString,
            response_deserializer=envelope_pb2.SignedMessage.FromString,
        )(signed, timeout=time_left)
        try:
            answer = await call.read()
        except grpc.RpcError as exc:
            await logged
            await self._log_failure(exchange, self._transport_error(exc, exchange))
            exchange.logged.add(id(exc))
            raise
        await logged
        if answer is grpc.aio.EOF:
            empty = SignatureInvalid(
                "provider stream ended before any signed message", origin=Origin.PROVIDER_SS
            )
            await self._log_failure(exchange, empty)
            exchange.logged.add(id(empty))
            raise empty
        opened = await self._checked_answer(answer, exchange, 0, streaming=True)
        if opened.header.kind == envelope_pb2.STREAM_END and opened.header.status_code:
            refused = answer_error(opened.header)
            exchange.logged.add(id(refused))
            raise refused
        return call, opened

    async def _checked_answer(
        self,
        answer: envelope_pb2.SignedMessage,
        exchange: _Exchange,
        sequence: int,
        *,
        streaming: bool,
        upstream_us: int = 0,
    ) -> Opened:
        """Verify and log one signed answer. A signed refusal of a unary call is raised
        (as the typed error) so the guard can tell answers from failures."""
        try:
            opened = open_envelope(
                answer,
                exchange.view.anchor,
                expected_member=member_of(exchange.call.service),
                now_ms=self._clock_ms(),
            )
            header = opened.header
            if header.request_hash != exchange.request_hash:
                raise SignatureInvalid("answer is not bound to this request (request hash differs)")
            kinds = (
                (envelope_pb2.STREAM_MESSAGE, envelope_pb2.STREAM_END)
                if streaming
                else (envelope_pb2.RESPONSE,)
            )
            if header.kind not in kinds or header.sequence != sequence:
                raise SignatureInvalid(
                    f"answer out of order: kind {header.kind} #{header.sequence}, "
                    f"expected #{sequence} of a {'stream' if streaming else 'unary call'}"
                )
        except GovbusError as exc:
            error = exc.with_origin(Origin.PROVIDER_SS)
            await self._log_failure(exchange, error)
            exchange.logged.add(id(error))
            raise error from None
        phase = {
            envelope_pb2.RESPONSE: audit_pb2.PHASE_RESPONSE,
            envelope_pb2.STREAM_MESSAGE: audit_pb2.PHASE_STREAM_MESSAGE,
            envelope_pb2.STREAM_END: audit_pb2.PHASE_STREAM_END,
        }[header.kind]
        record = self._records.message(
            phase,
            header,
            message_hash=opened.message_hash,
            request_hash=exchange.request_hash,
            signature=opened.signed.signature,
            body=opened.body,
            peer_server=header.sender_server,
            request=exchange.header,
            duration_us=(time.perf_counter_ns() - exchange.started_ns) // 1000,
            upstream_us=upstream_us,
        )
        await self._append(record, opened.signed)
        if not streaming and header.status_code:
            error = answer_error(header)
            exchange.logged.add(id(error))
            raise error
        return opened

    def _succeeded(
        self, context: grpc.aio.ServicerContext, exchange: _Exchange, answer: envelope_pb2.Header
    ) -> None:
        if answer.trailers:
            context.set_trailing_metadata(tuple((t.key, t.value) for t in answer.trailers))
        self.exchanges += 1
        elapsed = (time.perf_counter_ns() - exchange.started_ns) / 1e9
        self._metrics.latency.labels("consumer", exchange.call.service).observe(elapsed)
        self._metrics.count("consumer", exchange.call.client, exchange.call.service, "OK")
        Tracing.finish(exchange.span)

    def _transport_error(self, exc: grpc.RpcError, exchange: _Exchange | None) -> GovbusError:
        error = from_rpc_error(exc)
        code = exc.code() if hasattr(exc, "code") else None
        server = exchange.server if exchange is not None else "?"
        if code is grpc.StatusCode.UNAVAILABLE and error.code == "SERVICE_UNAVAILABLE":
            return ServiceUnavailable(
                f"provider security server {server} is unreachable: {error.message}",
                origin=Origin.PROVIDER_SS,
            )
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and error.code == "DEADLINE_EXCEEDED":
            return error.with_origin(Origin.PROVIDER_SS)
        return error

    async def _append(
        self, record: audit_pb2.ExchangeRecord, signed: envelope_pb2.SignedMessage | None = None
    ) -> None:
        started = time.perf_counter()
        await append_signed(self._log, record, signed)
        self._metrics.log_append.observe(time.perf_counter() - started)

    async def _log_failure(self, exchange: _Exchange, error: GovbusError) -> None:
        """The outcome of an attempt that got no valid signed answer."""
        record = self._records.refusal(
            exchange.header or exchange.request,
            error,
            phase=audit_pb2.PHASE_RESPONSE,
            peer_server=exchange.server,
            request_hash=exchange.request_hash,
            duration_us=(time.perf_counter_ns() - exchange.started_ns) // 1000,
        )
        await self._append(record)

    async def _refused(
        self,
        failure: GovbusError | grpc.RpcError,
        context: grpc.aio.ServicerContext,
        method: str,
        exchange: _Exchange | None,
    ) -> None:
        """Log a refusal not logged yet, count it, and end the call with the error."""
        self.refusals += 1
        already = exchange is not None and id(failure) in exchange.logged
        error = (
            failure
            if isinstance(failure, GovbusError)
            else self._transport_error(failure, exchange)
        )
        about = exchange.request if exchange is not None else _unverified(context, method)
        if not already:
            record = self._records.refusal(
                about,
                error,
                duration_us=(time.perf_counter_ns() - exchange.started_ns) // 1000
                if exchange is not None
                else 0,
            )
            try:
                await self._append(record)
            except GovbusError as log_error:
                error = log_error
        self._metrics.count("consumer", about.client[:100], about.service[:100], error.code)
        if exchange is not None:
            Tracing.finish(exchange.span, error.code)
        await error.abort(context)


def _unexpected(exc: Exception) -> Internal:
    log.exception("consumer exchange failed unexpectedly")
    return Internal(f"consumer security server failed: {type(exc).__name__}")


def _unverified(context: grpc.aio.ServicerContext, method: str) -> envelope_pb2.Header:
    """What a refused call said about itself, as given (for its refusal record)."""
    raw = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return envelope_pb2.Header(
        request_id=raw.get(md.REQUEST_ID, ""),
        client=raw.get(md.CLIENT, ""),
        service=raw.get(md.SERVICE, ""),
        method=method,
        purpose=raw.get(md.PURPOSE, ""),
    )
