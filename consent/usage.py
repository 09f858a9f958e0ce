""" "Who accessed my data": citizen tokens, the provider's answer and the aggregator.

- (a) `issue_citizen_token` / `verify_citizen_token`: the consent service signs a
  short-lived `CitizenToken` once the citizen has proved who they are (EDS or
  one-time code); every provider security server verifies it itself.
- (b) `usage_entries` (pure) and `AccessHistoryServicer`: a provider security
  server answers from its own audit log — only its provider-side records about
  the token's subject (searched by the log's keyed pseudonym of the IIN), one
  entry per exchange, minus those hidden under a legal basis until a date still
  in the future. The servicer is what the security server mounts.
- (c) `find_usage_everywhere`: the consent service asks every provider security
  server in the global configuration in parallel and merges the answers,
  marking each server that did not answer. There is no central copy of the logs.

A provider never returns a record about another subject, never one still hidden,
and never answers without a valid token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import grpc

from consent.trust import ConsentServiceKey, ms_to_datetime, verify_consent_service_signature
from govbus.crypto.pki import TrustAnchor
from govbus.errors import (
    GovbusError,
    Internal,
    InvalidIdentifier,
    InvalidRequest,
    Origin,
    ServiceUnavailable,
    Unauthenticated,
    from_rpc_error,
)
from govbus.globalconf import GlobalConfView
from govbus.ids import Iin
from govbus.pb.govbus.v1 import audit_pb2, globalconf_pb2, usage_pb2, usage_pb2_grpc

__all__ = [
    "DEFAULT_USAGE_LIMIT",
    "TOKEN_TTL_MS",
    "AccessHistoryServicer",
    "ChannelFactory",
    "UsageSource",
    "find_usage",
    "find_usage_everywhere",
    "issue_citizen_token",
    "provider_servers",
    "usage_entries",
    "verify_citizen_token",
]

log = logging.getLogger("govbus.consent.usage")

TOKEN_TTL_MS = 10 * 60 * 1000
DEFAULT_USAGE_LIMIT = 1000
MAX_USAGE_LIMIT = 10_000

#: A security server the aggregator should ask -> a channel to its AccessHistory
#: endpoint. The aggregator owns the channel and closes it when done.
ChannelFactory = Callable[[globalconf_pb2.SecurityServer], grpc.aio.Channel]


# --- (a) citizen tokens -------------------------------------------------------------


def issue_citizen_token(
    key: ConsentServiceKey,
    subject: str,
    method: usage_pb2.ConsentMethod,
    now_ms: int,
    *,
    ttl_ms: int = TOKEN_TTL_MS,
    operator: str = "",
) -> usage_pb2.SignedCitizenToken:
    """Sign a token saying the holder proved to be `subject` by `method` at `now_ms`."""
    Iin(subject)
    token = usage_pb2.CitizenToken(
        subject=subject,
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_ms,
        nonce=os.urandom(16),
        method=method,
        operator=operator,
    )
    body = token.SerializeToString(deterministic=True)
    return usage_pb2.SignedCitizenToken(
        token=body, signature=key.sign(body), signer_certificate=key.certificate
    )


def verify_citizen_token(
    signed: usage_pb2.SignedCitizenToken, anchor: TrustAnchor, now_ms: int
) -> usage_pb2.CitizenToken:
    """The token if the consent service signed it and it is current; else raise
    `Unauthenticated` (missing, malformed, expired) or `SignatureInvalid` /
    `Certificate*` (not signed by a trusted consent service)."""
    if not signed.token or not signed.signature.value:
        raise Unauthenticated(
            "a citizen token is needed: log in to the consent service by EDS or one-time code"
        )
    verify_consent_service_signature(
        anchor, signed.signer_certificate, signed.signature, signed.token, at=ms_to_datetime(now_ms)
    )
    token = usage_pb2.CitizenToken()
    try:
        token.ParseFromString(signed.token)
        Iin(token.subject)
    except InvalidIdentifier:
        raise Unauthenticated("the citizen token names no valid IIN") from None
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        raise Unauthenticated("the citizen token is malformed") from None
    if now_ms >= token.expires_at_ms:
        raise Unauthenticated("the citizen token has expired: log in again")
    if now_ms < token.issued_at_ms - 60_000:
        raise Unauthenticated("the citizen token is issued in the future (clock skew?)")
    return token


# --- (b) the provider's answer --------------------------------------------------------


class UsageSource(Protocol):
    """Searches one security server's audit log (implemented by the audit log)."""

    async def find(
        self, pseudonym: bytes, since_ms: int, until_ms: int
    ) -> list[audit_pb2.ExchangeRecord]:
        """Records whose subject pseudonym is `pseudonym`, logged in [since_ms, until_ms)."""
        ...


_LISTED_PHASES = {audit_pb2.PHASE_REQUEST, audit_pb2.PHASE_REFUSED}


def usage_entries(
    records: Iterable[audit_pb2.ExchangeRecord],
    pseudonym: bytes,
    now_ms: int,
    *,
    since_ms: int = 0,
    until_ms: int = 2**62,
    server: str = "",
) -> list[usage_pb2.UsageEntry]:
    """One entry per exchange about `pseudonym`, oldest first, without hidden ones.

    Only provider-side request and refusal records count (the provider decided
    on the exchange; its other records are the same exchange again). A record
    whose `hidden_until_ms` is still in the future is left out entirely.
    """
    seen: set[str] = set()
    entries: list[usage_pb2.UsageEntry] = []
    for record in sorted(records, key=lambda r: (r.logged_at_ms, r.request_id)):
        if (
            record.side != audit_pb2.SIDE_PROVIDER
            or record.phase not in _LISTED_PHASES
            or record.subject_pseudonym != pseudonym
            or not pseudonym
            or not since_ms <= record.logged_at_ms < until_ms
            or record.hidden_until_ms > now_ms
            or record.request_id in seen
        ):
            continue
        seen.add(record.request_id)
        entries.append(
            usage_pb2.UsageEntry(
                request_id=record.request_id,
                time_ms=record.logged_at_ms,
                server=record.server or server,
                consumer=record.client,
                service=record.service,
                method=record.method,
                purpose=record.purpose,
                initiator=record.initiator,
                justification=record.justification,
                consent_id=record.consent_id,
                legal_basis_id=record.legal_basis_id,
                law_reference=record.law_reference,
                decision=record.decision,
                error_code=record.error_code,
            )
        )
    return entries


def _window(since_ms: int, until_ms: int, now_ms: int) -> tuple[int, int]:
    until = until_ms or now_ms + 1
    if since_ms < 0 or until <= since_ms:
        raise InvalidRequest(f"time range [{since_ms}, {until_ms}) is empty or negative")
    return since_ms, until


async def find_usage(
    token: usage_pb2.CitizenToken,
    source: UsageSource,
    pseudonym_of: Callable[[str], bytes],
    since_ms: int,
    until_ms: int,
    now_ms: int,
    *,
    limit: int = DEFAULT_USAGE_LIMIT,
    server: str = "",
) -> usage_pb2.FindUsageResponse:
    """The provider's answer for a verified token (newest `limit` entries kept)."""
    since, until = _window(since_ms, until_ms, now_ms)
    limit = min(limit or DEFAULT_USAGE_LIMIT, MAX_USAGE_LIMIT)
    pseudonym = pseudonym_of(token.subject)
    records = await source.find(pseudonym, since, until)
    entries = usage_entries(
        records, pseudonym, now_ms, since_ms=since, until_ms=until, server=server
    )
    truncated = len(entries) > limit
    return usage_pb2.FindUsageResponse(
        entries=entries[-limit:] if truncated else entries, server=server, truncated=truncated
    )


class AccessHistoryServicer(usage_pb2_grpc.AccessHistoryServicer):
    """`govbus.v1.AccessHistory` for one provider security server."""

    def __init__(
        self,
        source: UsageSource,
        pseudonym_of: Callable[[str], bytes],
        anchor: Callable[[], TrustAnchor],
        server_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._pseudonym_of = pseudonym_of
        self._anchor = anchor
        self._server_id = server_id
        self._clock = clock

    async def FindUsage(
        self, request: usage_pb2.FindUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.FindUsageResponse:
        now_ms = int(self._clock() * 1000)
        try:
            token = verify_citizen_token(request.citizen, self._anchor(), now_ms)
            return await find_usage(
                token,
                self._source,
                self._pseudonym_of,
                request.since_ms,
                request.until_ms,
                now_ms,
                limit=request.limit,
                server=self._server_id,
            )
        except GovbusError as exc:
            error = exc.with_origin(
                Origin.CLIENT if exc.default_origin is Origin.CLIENT else Origin.PROVIDER_SS
            )
        except Exception:  # a failing log search must answer INTERNAL, never crash the server
            log.exception("access history search failed")
            error = Internal("the access history search failed; see the security server log")
        await error.abort(context)
        raise AssertionError("unreachable: abort raises")


# --- (c) the aggregator ---------------------------------------------------------------


def provider_servers(view: GlobalConfView) -> list[globalconf_pb2.SecurityServer]:
    """Every security server that serves at least one service, in id order."""
    ids = {server for service in view.conf.services for server in service.servers}
    return [view.servers[i] for i in sorted(ids) if i in view.servers]


async def _ask(
    server: globalconf_pb2.SecurityServer,
    request: usage_pb2.FindUsageRequest,
    channel_factory: ChannelFactory,
    wait_s: float,
) -> usage_pb2.FindUsageResponse:
    if not server.address:
        raise ServiceUnavailable(f"security server {server.id} has no address")
    channel = channel_factory(server)
    try:
        stub = usage_pb2_grpc.AccessHistoryStub(channel)
        answer: usage_pb2.FindUsageResponse = await stub.FindUsage(request, timeout=wait_s)
        return answer
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    finally:
        await channel.close()


async def find_usage_everywhere(
    view: GlobalConfView,
    token: usage_pb2.SignedCitizenToken,
    since_ms: int,
    until_ms: int,
    channel_factory: ChannelFactory,
    *,
    wait_s: float = 5.0,
    limit: int = DEFAULT_USAGE_LIMIT,
) -> usage_pb2.FindMyUsageResponse:
    """Ask every provider security server at once; merge what they answer, oldest first.

    A server that fails or does not answer within `wait_s` seconds is listed with
    `answered = false` and the error's code; the others' entries are kept.
    """
    servers = provider_servers(view)
    request = usage_pb2.FindUsageRequest(
        citizen=token, since_ms=since_ms, until_ms=until_ms, limit=limit
    )
    outcomes = await asyncio.gather(
        *(_ask(server, request, channel_factory, wait_s) for server in servers),
        return_exceptions=True,
    )
    response = usage_pb2.FindMyUsageResponse()
    merged: list[usage_pb2.UsageEntry] = []
    for server, outcome in zip(servers, outcomes, strict=True):
        status = response.servers.add(server=server.id)
        if isinstance(outcome, usage_pb2.FindUsageResponse):
            status.answered = True
            status.entries = len(outcome.entries)
            status.truncated = outcome.truncated
            for entry in outcome.entries:
                if not entry.server:
                    entry.server = server.id
                merged.append(entry)
        else:
            if not isinstance(outcome, Exception):
                raise outcome  # cancellation and the like are not a server's answer
            error = (
                outcome
                if isinstance(outcome, GovbusError)
                else Internal(f"{type(outcome).__name__}: {outcome}")
            )
            status.answered = False
            status.error_code = error.code
            status.error_message = error.message
    merged.sort(key=lambda e: (e.time_ms, e.server, e.request_id))
    response.entries.extend(merged)
    return response
