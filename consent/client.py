"""Client side of consent: calling the consent service, and passing consents along.

How a consent travels with an exchange (ADR 0004): the provider must verify the
signed artefact offline, so the *artefact itself* travels in the signed envelope
header (`Header.consent_artefact`, with its id in `Header.consent`). A consumer
puts it on its call as gRPC metadata:

- `govbus-consent`: the consent id (ASCII),
- `govbus-consent-artefact-bin`: the serialized `SignedConsent` (binary).

`ConsentHolder` gives the consumer (or its security server, when a client sent
only the id) the artefact for an id: fetched from the consent service once,
kept until it expires, dropped when a provider answers `CONSENT_REVOKED`.

`ConsentClient` is a typed async wrapper of `govbus.v1.ConsentService` whose
failures are govbus errors. Nothing here decides whether a consent allows an
exchange: that is the provider's verifier.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc

from consent.artefact import terms_of, verify_signed_consent
from govbus.crypto.keys import Signer
from govbus.crypto.pki import TrustAnchor
from govbus.errors import (
    ConsentExpired,
    ConsentInvalid,
    ConsentRevoked,
    Origin,
    from_rpc_error,
)
from govbus.pb.govbus.v1 import consent_pb2, consent_pb2_grpc, usage_pb2
from govbus.serving import DEFAULT_OPTIONS

__all__ = [
    "CONSENT_ARTEFACT_METADATA",
    "CONSENT_ID_METADATA",
    "ConsentClient",
    "ConsentHolder",
    "consent_channel",
    "consent_from_metadata",
    "consent_metadata",
]

CONSENT_ID_METADATA = "govbus-consent"
CONSENT_ARTEFACT_METADATA = "govbus-consent-artefact-bin"

Metadata = tuple[tuple[str, str | bytes], ...]


def consent_metadata(consent_id: str, artefact: bytes) -> Metadata:
    """The metadata a consumer adds to a call made under a consent."""
    return ((CONSENT_ID_METADATA, consent_id), (CONSENT_ARTEFACT_METADATA, artefact))


def consent_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> tuple[str, bytes]:
    """(consent id, artefact bytes) from a call's metadata; empty where absent.

    For the consumer security server filling `Header.consent` / `consent_artefact`.
    """
    consent_id, artefact = "", b""
    for key, value in metadata or ():
        if key == CONSENT_ID_METADATA and isinstance(value, str):
            consent_id = value.strip()
        elif key == CONSENT_ARTEFACT_METADATA and isinstance(value, bytes):
            artefact = value
    return consent_id, artefact


def consent_channel(
    address: str,
    ca_pem: bytes,
    *,
    client_key_pem: bytes | None = None,
    client_cert_pem: bytes | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A TLS channel to the consent service; with a client key, mutual TLS (operator port)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=client_key_pem, certificate_chain=client_cert_pem
    )
    return grpc.aio.secure_channel(address, credentials, options=[*DEFAULT_OPTIONS, *options])


class ConsentClient:
    """Typed calls to the consent service; failures raise the govbus error they carry."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 10.0) -> None:
        self.channel = channel
        self._stub = consent_pb2_grpc.ConsentServiceStub(channel)
        self.timeout = timeout

    async def _call(self, method: Callable[..., Awaitable[Any]], request: object) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def close(self) -> None:
        await self.channel.close()

    async def request_consent(
        self,
        *,
        subject: str,
        grantee: str,
        scopes: Sequence[tuple[str, Sequence[str]]],
        purpose_code: str,
        purpose_text: str,
        expires_at_ms: int,
        method: usage_pb2.ConsentMethod,
        mode: consent_pb2.ConsentMode = consent_pb2.CONSENT_MODE_VIEW,
        not_before_ms: int = 0,
    ) -> consent_pb2.RequestConsentResponse:
        request = consent_pb2.RequestConsentRequest(
            subject=subject,
            grantee=grantee,
            scopes=[consent_pb2.ServiceScope(service=s, fields=list(f)) for s, f in scopes],
            purpose_code=purpose_code,
            purpose_text=purpose_text,
            mode=mode,
            not_before_ms=not_before_ms,
            expires_at_ms=expires_at_ms,
            method=method,
        )
        answer: consent_pb2.RequestConsentResponse = await self._call(
            self._stub.RequestConsent, request
        )
        return answer

    async def describe_request(self, request_id: str) -> consent_pb2.RequestConsentResponse:
        answer: consent_pb2.RequestConsentResponse = await self._call(
            self._stub.DescribeRequest, consent_pb2.DescribeRequestRequest(request_id=request_id)
        )
        return answer

    async def _confirm(
        self, request: consent_pb2.ConfirmConsentRequest
    ) -> consent_pb2.ConsentRecord:
        answer: consent_pb2.ConsentRecord = await self._call(self._stub.ConfirmConsent, request)
        return answer

    async def confirm_otp(self, request_id: str, code: str) -> consent_pb2.ConsentRecord:
        return await self._confirm(
            consent_pb2.ConfirmConsentRequest(
                request_id=request_id, otp=consent_pb2.OtpConfirmation(code=code)
            )
        )

    async def confirm_eds(
        self, request_id: str, signer: Signer, certificate: bytes
    ) -> consent_pb2.ConsentRecord:
        """Sign the request's exact artefact bytes with the citizen's key, then confirm."""
        described = await self.describe_request(request_id)
        if not described.artefact_to_sign:
            raise ConsentInvalid(
                f"consent request {request_id} is not to be confirmed by EDS",
                origin=Origin.CLIENT,
            )
        # Sign only bytes that say what the citizen was shown: the terms are parsed from
        # the very bytes to be signed and must match the terms described.
        shown = consent_pb2.ConsentArtefact()
        try:
            shown.ParseFromString(described.artefact_to_sign)
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
            shown.Clear()
        if shown != described.terms or shown.id != described.consent_id:
            raise ConsentInvalid(
                f"consent request {request_id}: the bytes to sign differ from the terms shown; "
                "not signing",
                origin=Origin.CONSENT_SERVICE,
            )
        return await self._confirm(
            consent_pb2.ConfirmConsentRequest(
                request_id=request_id,
                eds=consent_pb2.EdsConfirmation(
                    signature=signer.sign(described.artefact_to_sign), certificate=certificate
                ),
            )
        )

    async def confirm_in_person(
        self, request_id: str, document_type: str, document_number: str
    ) -> consent_pb2.ConsentRecord:
        return await self._confirm(
            consent_pb2.ConfirmConsentRequest(
                request_id=request_id,
                in_person=consent_pb2.InPersonConfirmation(
                    id_document_type=document_type, id_document_number=document_number
                ),
            )
        )

    async def get(self, consent_id: str) -> consent_pb2.ConsentRecord:
        answer: consent_pb2.ConsentRecord = await self._call(
            self._stub.GetConsent, consent_pb2.GetConsentRequest(consent_id=consent_id)
        )
        return answer

    async def list(
        self, *, token: usage_pb2.SignedCitizenToken | None = None, subject: str = ""
    ) -> list[consent_pb2.ConsentRecord]:
        request = consent_pb2.ListConsentsRequest(subject=subject)
        if token is not None:
            request.citizen.CopyFrom(token)
        answer: consent_pb2.ListConsentsResponse = await self._call(
            self._stub.ListConsents, request
        )
        return list(answer.consents)

    async def revoke(
        self,
        consent_id: str,
        *,
        token: usage_pb2.SignedCitizenToken | None = None,
        reason: str = "",
    ) -> consent_pb2.ConsentRecord:
        request = consent_pb2.RevokeConsentRequest(consent_id=consent_id, reason=reason)
        if token is not None:
            request.citizen.CopyFrom(token)
        answer: consent_pb2.ConsentRecord = await self._call(self._stub.RevokeConsent, request)
        return answer

    async def feed(
        self, after_seq: int, nonce: bytes, limit: int = 0
    ) -> consent_pb2.SignedRevocationFeedPage:
        answer: consent_pb2.SignedRevocationFeedPage = await self._call(
            self._stub.GetRevocationFeed,
            consent_pb2.RevocationFeedRequest(after_seq=after_seq, limit=limit, nonce=nonce),
        )
        return answer

    async def set_phone(self, subject: str, phone: str) -> None:
        await self._call(
            self._stub.SetPhone, consent_pb2.SetPhoneRequest(subject=subject, phone=phone)
        )

    async def start_login(
        self, subject: str, method: usage_pb2.ConsentMethod
    ) -> consent_pb2.StartCitizenLoginResponse:
        answer: consent_pb2.StartCitizenLoginResponse = await self._call(
            self._stub.StartCitizenLogin,
            consent_pb2.StartCitizenLoginRequest(subject=subject, method=method),
        )
        return answer

    async def complete_login_otp(
        self, challenge_id: str, code: str
    ) -> usage_pb2.SignedCitizenToken:
        answer: usage_pb2.SignedCitizenToken = await self._call(
            self._stub.CompleteCitizenLogin,
            consent_pb2.CompleteCitizenLoginRequest(
                challenge_id=challenge_id, otp=consent_pb2.OtpConfirmation(code=code)
            ),
        )
        return answer

    async def login_eds(
        self, subject: str, signer: Signer, certificate: bytes
    ) -> usage_pb2.SignedCitizenToken:
        """Log in with the citizen's EDS key in one go (challenge, sign, answer)."""
        started = await self.start_login(subject, usage_pb2.CONSENT_METHOD_EDS)
        answer: usage_pb2.SignedCitizenToken = await self._call(
            self._stub.CompleteCitizenLogin,
            consent_pb2.CompleteCitizenLoginRequest(
                challenge_id=started.challenge_id,
                eds=consent_pb2.EdsConfirmation(
                    signature=signer.sign(started.challenge), certificate=certificate
                ),
            ),
        )
        return answer

    async def find_my_usage(
        self, token: usage_pb2.SignedCitizenToken, since_ms: int = 0, until_ms: int = 0
    ) -> usage_pb2.FindMyUsageResponse:
        answer: usage_pb2.FindMyUsageResponse = await self._call(
            self._stub.FindMyUsage,
            usage_pb2.FindMyUsageRequest(citizen=token, since_ms=since_ms, until_ms=until_ms),
        )
        return answer


class ConsentHolder:
    """Signed consents by id, fetched once from the consent service and kept until expiry.

    `fetch` is usually `ConsentClient.get`. With `anchor`, every fetched
    artefact's signature is verified before it is kept (a consumer then learns
    of a bad artefact before any exchange); without, it is only parsed.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[consent_pb2.ConsentRecord]],
        *,
        anchor: Callable[[], TrustAnchor] | None = None,
        clock: Callable[[], float] = time.time,
        max_entries: int = 10_000,
    ) -> None:
        self._fetch = fetch
        self._anchor = anchor
        self._clock = clock
        self._max = max_entries
        self._held: dict[str, tuple[bytes, int]] = {}
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    def put(self, signed_consent: bytes) -> str:
        """Keep an artefact already in hand (e.g. just confirmed); returns its id."""
        consent_id, expires_ms = self._inspect(signed_consent)
        self._keep(consent_id, signed_consent, expires_ms)
        return consent_id

    def forget(self, consent_id: str) -> None:
        """Drop an artefact (call it when a provider answers CONSENT_REVOKED or _EXPIRED)."""
        self._held.pop(consent_id, None)

    async def artefact(self, consent_id: str) -> bytes:
        held = self._held.get(consent_id)
        if held is not None and self._clock() * 1000 < held[1]:
            return held[0]
        running = self._inflight.get(consent_id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[consent_id] = future
        try:
            raw = await self._load(consent_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so an unawaited failure is not reported
            raise
        else:
            future.set_result(raw)
            return raw
        finally:
            self._inflight.pop(consent_id, None)

    async def metadata(self, consent_id: str) -> Metadata:
        return consent_metadata(consent_id, await self.artefact(consent_id))

    async def _load(self, consent_id: str) -> bytes:
        record = await self._fetch(consent_id)
        if record.state == consent_pb2.CONSENT_STATE_REVOKED:
            self.forget(consent_id)
            raise ConsentRevoked(f"consent {consent_id} was revoked", origin=Origin.CONSENT_SERVICE)
        if record.state == consent_pb2.CONSENT_STATE_EXPIRED:
            self.forget(consent_id)
            raise ConsentExpired(f"consent {consent_id} has expired", origin=Origin.CONSENT_SERVICE)
        found_id, expires_ms = self._inspect(record.signed_consent)
        if found_id != consent_id:
            raise ConsentInvalid(
                f"the consent service answered artefact {found_id} for consent {consent_id}",
                origin=Origin.CONSENT_SERVICE,
            )
        self._keep(consent_id, record.signed_consent, expires_ms)
        return record.signed_consent

    def _inspect(self, raw: bytes) -> tuple[str, int]:
        if self._anchor is not None:
            parsed = verify_signed_consent(
                raw, self._anchor(), at=dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            )
            return parsed.consent_id, parsed.expires_at_ms
        try:
            artefact = terms_of(raw)
        except ConsentInvalid as exc:
            raise exc.with_origin(Origin.CLIENT) from None
        return artefact.id, artefact.expires_at_ms

    def _keep(self, consent_id: str, raw: bytes, expires_ms: int) -> None:
        if len(self._held) >= self._max:
            del self._held[next(iter(self._held))]
        self._held[consent_id] = (raw, expires_ms)
