"""The ЦОН's counter for consents: asks the consent service, on the operator port.

A citizen at the counter gives consent by a one-time code sent to their phone
(the operator may register the phone first), or in person: the operator checks
an identity document and confirms with the application's operator certificate
(mutual TLS), which the consent records as evidence. The signed artefact that
comes back is what the application sends with every exchange it covers
(`govbus-consent` + `govbus-consent-artefact-bin`, see consent/client.py).

Nothing here decides whether an exchange is allowed: providers do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consent.client import ConsentClient, consent_channel
from govbus.crypto.keys import load_private_key, passphrase_from_env, private_key_pem
from govbus.errors import ConsentInvalid, Origin
from govbus.pb.govbus.v1 import consent_pb2, usage_pb2

__all__ = ["ConsentDesk", "GivenConsent"]

#: How long a visit's consent lasts: long enough for queued steps to be retried.
CONSENT_VALIDITY_MS = 30 * 86_400_000


@dataclass(frozen=True)
class GivenConsent:
    consent_id: str
    subject: str
    method: str  # otp | in-person
    expires_ms: int
    artefact: bytes  # serialized SignedConsent


class ConsentDesk:
    def __init__(self, client: ConsentClient, grantee: str) -> None:
        self.client = client
        self.grantee = grantee

    @classmethod
    def connect(
        cls,
        operator_address: str,
        *,
        ca: Path,
        key: Path,
        cert: Path,
        grantee: str,
        passphrase_file: Path | None = None,
    ) -> ConsentDesk:
        key_pem = private_key_pem(load_private_key(key, passphrase_from_env(passphrase_file)))
        channel = consent_channel(
            operator_address,
            ca.read_bytes(),
            client_key_pem=key_pem,
            client_cert_pem=cert.read_bytes(),
        )
        return cls(ConsentClient(channel, timeout=5.0), grantee)

    async def close(self) -> None:
        await self.client.close()

    async def register_phone(self, subject: str, phone: str) -> None:
        await self.client.set_phone(subject, phone)

    async def _request(
        self,
        subject: str,
        services: Sequence[str],
        purpose: str,
        purpose_text: str,
        method: usage_pb2.ConsentMethod,
    ) -> consent_pb2.RequestConsentResponse:
        return await self.client.request_consent(
            subject=subject,
            grantee=self.grantee,
            scopes=[(service, ()) for service in services],
            purpose_code=purpose,
            purpose_text=purpose_text,
            expires_at_ms=int(time.time() * 1000) + CONSENT_VALIDITY_MS,
            method=method,
            mode=consent_pb2.CONSENT_MODE_STORE,  # the ЦОН keeps the certificate it issues
        )

    async def request_otp(
        self, subject: str, services: Sequence[str], purpose: str, purpose_text: str
    ) -> consent_pb2.RequestConsentResponse:
        """Send the citizen a code; confirm it with `confirm_otp`."""
        return await self._request(
            subject, services, purpose, purpose_text, usage_pb2.CONSENT_METHOD_OTP
        )

    async def confirm_otp(self, request_id: str, code: str) -> GivenConsent:
        record = await self.client.confirm_otp(request_id, code)
        return _given(record, "otp")

    async def in_person(
        self,
        subject: str,
        services: Sequence[str],
        purpose: str,
        purpose_text: str,
        document_type: str,
        document_number: str,
    ) -> GivenConsent:
        """Request and confirm at once: the operator has checked the document."""
        asked = await self._request(
            subject, services, purpose, purpose_text, usage_pb2.CONSENT_METHOD_IN_PERSON
        )
        record = await self.client.confirm_in_person(
            asked.request_id, document_type, document_number
        )
        return _given(record, "in-person")


def _given(record: consent_pb2.ConsentRecord, method: str) -> GivenConsent:
    signed = consent_pb2.SignedConsent()
    artefact = consent_pb2.ConsentArtefact()
    try:
        signed.ParseFromString(record.signed_consent)
        artefact.ParseFromString(signed.artefact)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        artefact.Clear()
    if not artefact.id:
        raise ConsentInvalid(
            "the consent service answered without a signed artefact",
            origin=Origin.CONSENT_SERVICE,
        )
    return GivenConsent(
        consent_id=artefact.id,
        subject=artefact.subject,
        method=method,
        expires_ms=artefact.expires_at_ms,
        artefact=record.signed_consent,
    )
