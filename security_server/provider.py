"""The provider side of a security server: signed envelopes in, adapter calls out.

Served on the mutual-TLS port as `govbus.v1.Exchange`. For every request it
checks, in order: the peer's TLS certificate belongs to a registered, unrevoked
security server; the envelope's signature, signer and body hash; freshness and
deadline; replay; that this server serves the service and method; access
rights; size; consent or legal basis. Only then is the request logged and
forwarded to the adapter with the remaining deadline; the answer is signed
(bound to the request hash), logged, and returned.

A request that cannot be authenticated is refused with a plain gRPC error; an
authenticated request that is refused gets a *signed* refusal, so the consumer
holds proof of who refused and why. Nothing reaches the adapter on a refusal,
and every refusal is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from consent.verifier import ConsentVerifier, ExchangeFacts, RevocationState
from govbus import metadata as md
from govbus.crypto.keys import KeySigner
from govbus.crypto.pki import Role, certificate_der, load_certificate
from govbus.errors import (
    AccessDenied,
    CertificateInvalid,
    DeadlineExceeded,
    GovbusError,
    Internal,
    InvalidRequest,
    Origin,
    ServiceUnavailable,
    SignatureInvalid,
    UnknownService,
    from_rpc_error,
)
from govbus.globalconf import GlobalConfClient, GlobalConfView
from govbus.pb.govbus.v1 import audit_pb2, envelope_pb2, globalconf_pb2
from govbus.telemetry import Tracing, traceparent_of
from security_server.channels import ChannelPool
from security_server.envelope import Opened, check_fresh, member_of, open_envelope, seal
from security_server.metrics import SsMetrics
from security_server.policy import check_shape, check_size
from security_server.records import NOT_JUDGED, ExchangeLog, Justified, RecordFactory, append_signed
from security_server.replay import ReplayGuard
from security_server.resilience import LoadShedder

__all__ = ["ProviderSide"]

log = logging.getLogger("govbus.ss.provider")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Accepted:
    opened: Opened
    service: globalconf_pb2.Service
    peer: str
    justified: Justified
    timeout: float
    started_ns: int
    span: Any = None
    # The request record on its way to durability (idempotent reads only: the
    # adapter is called meanwhile; the answer waits for it).
    logged: asyncio.Task[int] | None = None


class ProviderSide:
    def __init__(
        self,
        *,
        server_id: str,
        signer: KeySigner,
        certificate_der: bytes,
        conf: GlobalConfClient,
        log: ExchangeLog,
        records: RecordFactory,
        adapters: dict[str, str],
        adapter_channels: ChannelPool,
        consent: ConsentVerifier,
        feed_state: Callable[[], RevocationState],
        shedder: LoadShedder,
        metrics: SsMetrics,
        freshness_ms: int = 60_000,
        tracing: Tracing | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.server_id = server_id
        self._tracing = tracing or Tracing("", None)
        self._signer = signer
        self._certificate = certificate_der
        self._conf = conf
        self._log = log
        self._records = records
        self._adapters = adapters
        self._adapter_channels = adapter_channels
        self._consent = consent
        self._feed_state = feed_state
        self._shedder = shedder
        self._metrics = metrics
        self._freshness_ms = freshness_ms
        self._clock_ms = clock_ms
        self._replay = ReplayGuard(freshness_ms)
        # PEM -> (conf version, server id, not-after): validated peers.
        self._peers: dict[bytes, tuple[int, str, float]] = {}
        self.exchanges = 0
        self.refusals = 0

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "govbus.v1.Exchange",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(
                    self.unary,
                    request_deserializer=envelope_pb2.SignedMessage.FromString,
                    response_serializer=envelope_pb2.SignedMessage.SerializeToString,
                ),
                "ServerStream": grpc.unary_stream_rpc_method_handler(
                    self.stream,
                    request_deserializer=envelope_pb2.SignedMessage.FromString,
                    response_serializer=envelope_pb2.SignedMessage.SerializeToString,
                ),
            },
        )

    # --- the exchange -------------------------------------------------------------------

    async def unary(
        self, request: envelope_pb2.SignedMessage, context: grpc.aio.ServicerContext
    ) -> envelope_pb2.SignedMessage:
        started = time.perf_counter_ns()
        try:
            accepted = await self._accept(request, context, started, streaming=False)
            if isinstance(accepted, envelope_pb2.SignedMessage):
                return accepted  # a signed refusal
            try:
                return await self._forward_unary(accepted)
            finally:
                self._shedder.bulkhead(accepted.opened.header.service).release()
        except GovbusError as exc:
            await exc.with_origin(Origin.PROVIDER_SS).abort(context)
        except Exception as exc:
            log.exception("provider exchange failed unexpectedly")
            await Internal(f"provider security server failed: {type(exc).__name__}").abort(context)
        raise AssertionError("unreachable: abort raises")

    async def _forward_unary(self, accepted: _Accepted) -> envelope_pb2.SignedMessage:
        header = accepted.opened.header
        call = self._adapter_channels.method(self._adapter_of(header.service), header.method)
        upstream = time.perf_counter_ns()
        answer = envelope_pb2.Header(kind=envelope_pb2.RESPONSE)
        body = b""
        try:
            pending = call(
                accepted.opened.body,
                timeout=accepted.timeout,
                metadata=_forwarded(header, accepted.span),
            )
            body = await pending
            for key, value in await pending.trailing_metadata() or ():
                if isinstance(value, str) and not key.startswith("grpc-"):
                    answer.trailers.add(key=key, value=value)
        except grpc.RpcError as exc:
            _set_error(answer, self._adapter_error(exc, header.service))
            body = b""
        upstream_us = (time.perf_counter_ns() - upstream) // 1000
        if accepted.logged is not None:
            await accepted.logged
        signed = await self._answer(accepted, answer, body, audit_pb2.PHASE_RESPONSE, upstream_us)
        self._done(accepted, answer)
        return signed

    async def stream(
        self, request: envelope_pb2.SignedMessage, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[envelope_pb2.SignedMessage]:
        started = time.perf_counter_ns()
        try:
            accepted = await self._accept(request, context, started, streaming=True)
            if isinstance(accepted, envelope_pb2.SignedMessage):
                yield accepted
                return
            try:
                async for signed in self._forward_stream(accepted):
                    yield signed
            finally:
                self._shedder.bulkhead(accepted.opened.header.service).release()
        except GovbusError as exc:
            await exc.with_origin(Origin.PROVIDER_SS).abort(context)
        except Exception as exc:
            log.exception("provider stream failed unexpectedly")
            await Internal(f"provider security server failed: {type(exc).__name__}").abort(context)

    async def _forward_stream(
        self, accepted: _Accepted
    ) -> AsyncIterator[envelope_pb2.SignedMessage]:
        header = accepted.opened.header
        call = self._adapter_channels.method(
            self._adapter_of(header.service), header.method, streaming=True
        )
        sequence = 0
        end = envelope_pb2.Header(kind=envelope_pb2.STREAM_END)
        try:
            pending = call(
                accepted.opened.body,
                timeout=accepted.timeout,
                metadata=_forwarded(header, accepted.span),
            )
            async for body in pending:
                if accepted.logged is not None:
                    await accepted.logged
                    accepted.logged = None
                message = envelope_pb2.Header(kind=envelope_pb2.STREAM_MESSAGE, sequence=sequence)
                yield await self._answer(accepted, message, body, audit_pb2.PHASE_STREAM_MESSAGE, 0)
                sequence += 1
            for key, value in await pending.trailing_metadata() or ():
                if isinstance(value, str) and not key.startswith("grpc-"):
                    end.trailers.add(key=key, value=value)
        except grpc.RpcError as exc:
            _set_error(end, self._adapter_error(exc, header.service))
        end.sequence = sequence
        if accepted.logged is not None:
            await accepted.logged
        yield await self._answer(accepted, end, b"", audit_pb2.PHASE_STREAM_END, 0)
        self._done(accepted, end)

    # --- steps --------------------------------------------------------------------------

    async def _accept(
        self,
        request: envelope_pb2.SignedMessage,
        context: grpc.aio.ServicerContext,
        started_ns: int,
        *,
        streaming: bool,
    ) -> _Accepted | envelope_pb2.SignedMessage:
        """All checks. Returns the accepted request, or a signed refusal to send back.
        Raises (ends the call) when the request cannot even be authenticated."""
        opened: Opened | None = None
        peer = ""
        justified = NOT_JUDGED
        try:
            view = self._conf.current()
            peer = self._peer_server(context, view)
            now = self._clock_ms()
            opened = open_envelope(request, view.anchor, expected_member=None, now_ms=now)
        except GovbusError as exc:
            error = exc.with_origin(Origin.PROVIDER_SS)
            await self._log_refusal(error, opened, peer, started_ns)
            await error.abort(context)
            raise AssertionError("unreachable: abort raises") from None
        header = opened.header
        try:
            service, method = self._authorize(view, opened, peer, now, streaming=streaming)
            justified, denied = self._judge(view, header, now)
            if denied is not None:
                raise denied
        except GovbusError as exc:
            error = exc.with_origin(Origin.PROVIDER_SS)
            await self._log_refusal(error, opened, peer, started_ns, justified)
            return await self._signed_refusal(opened, error)
        remaining = (header.deadline_ms - now) / 1000 if header.deadline_ms else 30.0
        transport = context.time_remaining()
        timeout = min(remaining, transport) if transport is not None else remaining
        span = self._tracing.start(
            "govbus.provider",
            traceparent=header.traceparent,
            attributes={
                "govbus.client": header.client,
                "govbus.service": header.service,
                "govbus.request_id": header.request_id,
            },
        )
        accepted = _Accepted(
            opened, service, peer, justified, max(timeout, 0.001), started_ns, span
        )
        bulkhead = self._shedder.bulkhead(header.service)
        try:
            await bulkhead.acquire(accepted.timeout)
        except GovbusError as exc:
            # Shed before anything was done: the consumer may try another server.
            error = exc.with_origin(Origin.PROVIDER_SS)
            await self._log_refusal(error, opened, peer, started_ns, justified)
            Tracing.finish(span, error.code)
            return await self._signed_refusal(opened, error)
        try:
            record = self._records.message(
                audit_pb2.PHASE_REQUEST,
                header,
                message_hash=opened.message_hash,
                request_hash=opened.message_hash,
                signature=opened.signed.signature,
                body=opened.body,
                peer_server=peer,
                justified=justified,
            )
            if method.idempotent:
                accepted.logged = asyncio.ensure_future(
                    append_signed(self._log, record, opened.signed)
                )
            else:
                # A write is on record before the agency system sees it.
                await append_signed(self._log, record, opened.signed)
        except BaseException:
            bulkhead.release()
            raise
        return accepted

    def _authorize(
        self, view: GlobalConfView, opened: Opened, peer: str, now: int, *, streaming: bool
    ) -> tuple[globalconf_pb2.Service, globalconf_pb2.Method]:
        """Every check of an authenticated request but consent; raises the refusal."""
        header = opened.header
        if header.kind != envelope_pb2.REQUEST:
            raise InvalidRequest(f"expected a request, got message kind {header.kind}")
        if opened.signer.name != member_of(header.client):
            raise SignatureInvalid(
                f"request for client {header.client} is signed by member {opened.signer.name}"
            )
        if view.servers[peer].owner != opened.signer.name:
            raise AccessDenied(
                f"security server {peer} may not send requests of member {opened.signer.name}"
            )
        check_fresh(header, now, self._freshness_ms)
        self._replay.check_and_remember(header.client, header.request_id, header.attempt, now)
        service = view.service(header.service)
        if self.server_id not in service.servers or header.service not in self._adapters:
            raise UnknownService(f"{header.service} is not served by {self.server_id}")
        if header.receiver_server and header.receiver_server != self.server_id:
            raise InvalidRequest(
                f"request is addressed to {header.receiver_server}, not {self.server_id}"
            )
        method = view.method(header.service, header.method)
        check_shape(method, streaming)
        if not view.may_call(header.client, header.service):
            raise AccessDenied(f"{header.client} has no access right to {header.service}")
        check_size(service, len(opened.body))
        return service, method

    def _judge(
        self, view: GlobalConfView, header: envelope_pb2.Header, now: int
    ) -> tuple[Justified, GovbusError | None]:
        """The consent or legal-basis decision, with what the audit record must carry."""
        decision = self._consent.decide(
            view,
            ExchangeFacts(
                client=header.client,
                service=header.service,
                method=header.method,
                subject=header.subject,
                purpose=header.purpose,
                consent_id=header.consent,
                consent_artefact=header.consent_artefact,
                legal_basis_id=header.legal_basis,
                now_ms=now,
            ),
            self._feed_state(),
        )
        justification = audit_pb2.Justification.Name(decision.justification)
        self._metrics.consent_decisions.labels(
            header.service, justification, decision.error_code or "ALLOWED"
        ).inc()
        justified = Justified(
            justification=decision.justification,  # type: ignore[arg-type]  # an audit enum value
            consent_id=decision.consent_id,
            legal_basis_id=decision.legal_basis_id,
            law_reference=decision.law_reference,
            hidden_until_ms=decision.hidden_until_ms,
            reason=decision.reason,
        )
        return justified, decision.error

    def _peer_server(self, context: grpc.aio.ServicerContext, view: GlobalConfView) -> str:
        """The registered security server behind the TLS connection.

        The validation is cached per certificate and configuration version (a new
        version may revoke it); expiry is checked on every call.
        """
        certs = context.auth_context().get("x509_pem_cert") or []
        if not certs:
            raise CertificateInvalid("no client certificate: the provider port requires mutual TLS")
        pem: bytes = certs[0]
        cached = self._peers.get(pem)
        now = time.time()
        if cached is None or cached[0] != view.version or now >= cached[2]:
            cert = load_certificate(pem)
            identity = view.anchor.validate(cert, role=Role.SERVER)
            server = view.servers.get(identity.name)
            if server is None or server.tls_certificate != certificate_der(cert):
                raise AccessDenied(
                    f"{identity.name} is not a registered security server with this certificate"
                )
            if len(self._peers) > 1000:
                self._peers.clear()
            cached = self._peers[pem] = (
                view.version,
                identity.name,
                identity.not_after.timestamp(),
            )
        return cached[1]

    def _adapter_of(self, service: str) -> str:
        return self._adapters[service]

    def _adapter_error(self, exc: grpc.RpcError, service: str) -> GovbusError:
        error = from_rpc_error(exc)
        code = exc.code() if hasattr(exc, "code") else None
        if code is grpc.StatusCode.UNAVAILABLE and error.code == "SERVICE_UNAVAILABLE":
            return ServiceUnavailable(
                f"the adapter of {service} is unreachable: {error.message}",
                origin=Origin.PROVIDER,
            )
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(
                f"the adapter of {service} did not answer in time", origin=Origin.PROVIDER
            )
        if error.origin not in (Origin.PROVIDER,):
            error = error.with_origin(Origin.PROVIDER)
        return error

    async def _answer(
        self,
        accepted: _Accepted,
        answer: envelope_pb2.Header,
        body: bytes,
        phase: audit_pb2.Phase,
        upstream_us: int,
    ) -> envelope_pb2.SignedMessage:
        request = accepted.opened.header
        answer.request_id = request.request_id
        answer.client = request.client
        answer.service = request.service
        answer.method = request.method
        answer.request_hash = accepted.opened.message_hash
        answer.sent_at_ms = self._clock_ms()
        answer.sender_server = self.server_id
        signed, message_hash = seal(answer, body, self._signer, self._certificate)
        record = self._records.message(
            phase,
            answer,
            message_hash=message_hash,
            request_hash=accepted.opened.message_hash,
            signature=signed.signature,
            body=body,
            peer_server=accepted.peer,
            request=request,
            justified=accepted.justified,
            duration_us=(time.perf_counter_ns() - accepted.started_ns) // 1000,
            upstream_us=upstream_us,
        )
        await append_signed(self._log, record, signed)
        return signed

    def _done(self, accepted: _Accepted, answer: envelope_pb2.Header) -> None:
        header = accepted.opened.header
        self.exchanges += 1
        self._metrics.count("provider", header.client, header.service, answer.error_code or "OK")
        self._metrics.latency.labels("provider", header.service).observe(
            (time.perf_counter_ns() - accepted.started_ns) / 1e9
        )
        Tracing.finish(accepted.span, answer.error_code)

    async def _signed_refusal(
        self, opened: Opened, error: GovbusError
    ) -> envelope_pb2.SignedMessage:
        request = opened.header
        kind = envelope_pb2.RESPONSE
        view = self._conf.view
        if view is not None:
            method = view.methods.get((request.service, request.method))
            if method is not None and method.server_streaming:
                kind = envelope_pb2.STREAM_END
        answer = envelope_pb2.Header(
            kind=kind,
            request_id=request.request_id,
            client=request.client,
            service=request.service,
            method=request.method,
            request_hash=opened.message_hash,
            sent_at_ms=self._clock_ms(),
            sender_server=self.server_id,
        )
        _set_error(answer, error)
        signed, _ = seal(answer, b"", self._signer, self._certificate)
        return signed

    async def _log_refusal(
        self,
        error: GovbusError,
        opened: Opened | None,
        peer: str,
        started_ns: int,
        justified: Justified = NOT_JUDGED,
    ) -> None:
        self.refusals += 1
        header = opened.header if opened is not None else envelope_pb2.Header()
        record = self._records.refusal(
            header,
            error,
            peer_server=peer,
            request_hash=opened.message_hash if opened is not None else b"",
            signature=opened.signed.signature if opened is not None else None,
            justified=justified,
            duration_us=(time.perf_counter_ns() - started_ns) // 1000,
        )
        await append_signed(self._log, record, opened.signed if opened is not None else None)
        self._metrics.count("provider", header.client[:100], header.service[:100], error.code)


def _set_error(header: envelope_pb2.Header, error: GovbusError) -> None:
    header.status_code = error.status.value[0]
    header.error_code = error.code
    header.error_message = error.message
    header.error_origin = error.origin.value
    for key, value in error.metadata.items():
        header.error_metadata.add(key=key, value=value)
    if error.retry_after is not None:
        header.retry_after_ms = max(1, int(error.retry_after * 1000))


def _forwarded(header: envelope_pb2.Header, span: Any) -> tuple[tuple[str, str], ...]:
    """The govbus-* metadata the adapter receives (the verified header's values); the
    trace continues from this server's span when tracing is on."""
    pairs = [
        (md.CLIENT, header.client),
        (md.SERVICE, header.service),
        (md.REQUEST_ID, header.request_id),
    ]
    for key, value in (
        (md.SUBJECT, header.subject),
        (md.PURPOSE, header.purpose),
        (md.CONSENT, header.consent),
        (md.LEGAL_BASIS, header.legal_basis),
        (md.INITIATOR, header.initiator),
        (md.TRACEPARENT, traceparent_of(span) if span is not None else header.traceparent),
    ):
        if value:
            pairs.append((key, value))
    return tuple(pairs)
