"""Audit records of a security server: what it writes for every message.

A record never carries the raw subject IIN: only its keyed pseudonym. The signed
header (which names the subject) is handed to the log with the record, and the
log keeps it sealed under its data key, so an auditor holding that key can
re-verify the signature; bodies are sealed only when the log stores them.

This module builds records; it never writes them (the log does).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from govbus.errors import GovbusError
from govbus.pb.govbus.v1 import audit_pb2, envelope_pb2, signature_pb2

__all__ = [
    "NOT_JUDGED",
    "ExchangeLog",
    "Justified",
    "Pseudonymizer",
    "RecordFactory",
    "append_signed",
]


class ExchangeLog(Protocol):
    async def append(
        self,
        record: audit_pb2.ExchangeRecord,
        *,
        header: bytes | None = None,
        body: bytes | None = None,
        signer_certificate: bytes | None = None,
    ) -> int:
        """Append (sealing `header`, and `body` if bodies are stored); return the
        record's index once it is durable."""
        ...


class Pseudonymizer(Protocol):
    def pseudonym(self, iin: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Justified:
    """How an exchange about personal data was justified (from the consent check)."""

    justification: audit_pb2.Justification = audit_pb2.JUSTIFICATION_UNSPECIFIED
    consent_id: str = ""
    legal_basis_id: str = ""
    law_reference: str = ""
    hidden_until_ms: int = 0
    reason: str = ""


NOT_JUDGED = Justified()


class RecordFactory:
    """Builds the records of one security server (one side of each exchange)."""

    def __init__(
        self,
        server_id: str,
        side: audit_pb2.Side,
        pseudonymizer: Pseudonymizer,
    ) -> None:
        self.server_id = server_id
        self.side = side
        self._pseudonymizer = pseudonymizer
        self._pseudonyms: dict[str, bytes] = {}

    def pseudonym(self, iin: str) -> bytes:
        if not iin:
            return b""
        found = self._pseudonyms.get(iin)
        if found is None:
            if len(self._pseudonyms) > 50_000:
                self._pseudonyms.clear()
            found = self._pseudonyms[iin] = self._pseudonymizer.pseudonym(iin)
        return found

    def message(
        self,
        phase: audit_pb2.Phase,
        header: envelope_pb2.Header,
        *,
        message_hash: bytes,
        request_hash: bytes,
        signature: signature_pb2.Signature,
        body: bytes,
        peer_server: str,
        request: envelope_pb2.Header | None = None,
        justified: Justified = NOT_JUDGED,
        duration_us: int = 0,
        upstream_us: int = 0,
    ) -> audit_pb2.ExchangeRecord:
        """A record of a signed message this server sent or accepted."""
        about = request if request is not None else header
        return audit_pb2.ExchangeRecord(
            request_id=header.request_id,
            logged_at_ms=time.time_ns() // 1_000_000,
            side=self.side,
            phase=phase,
            server=self.server_id,
            peer_server=peer_server,
            client=about.client,
            service=about.service,
            method=about.method,
            subject_pseudonym=self.pseudonym(about.subject),
            purpose=about.purpose,
            initiator=about.initiator,
            justification=justified.justification,
            consent_id=justified.consent_id or about.consent,
            legal_basis_id=justified.legal_basis_id or about.legal_basis,
            law_reference=justified.law_reference,
            hidden_until_ms=justified.hidden_until_ms,
            decision=_decision(header),
            decision_reason=justified.reason,
            status_code=header.status_code,
            error_code=header.error_code,
            error_origin=header.error_origin,
            request_hash=request_hash,
            message_hash=message_hash,
            body_sha256=header.body_sha256,
            sequence=header.sequence,
            signature=signature,
            signer_certificate_sha256=signature.key_id,
            duration_us=duration_us,
            upstream_us=upstream_us,
            body_size=len(body),
            traceparent=about.traceparent,
        )

    def refusal(
        self,
        about: envelope_pb2.Header,
        error: GovbusError,
        *,
        phase: audit_pb2.Phase = audit_pb2.PHASE_REFUSED,
        peer_server: str = "",
        request_hash: bytes = b"",
        signature: signature_pb2.Signature | None = None,
        justified: Justified = NOT_JUDGED,
        duration_us: int = 0,
    ) -> audit_pb2.ExchangeRecord:
        """A record of a request refused before it reached the provider, or (with
        `phase=PHASE_RESPONSE`) of a failure for which no signed answer exists.

        `about` is the request as far as it is known (possibly unverified input, so
        every text is cut to its column's size)."""
        return audit_pb2.ExchangeRecord(
            # The log needs an id; a request refused before its id was read gets one.
            request_id=about.request_id[:128] or f"refused-{uuid.uuid4().hex}",
            logged_at_ms=time.time_ns() // 1_000_000,
            side=self.side,
            phase=phase,
            server=self.server_id,
            peer_server=peer_server,
            client=about.client[:300],
            service=about.service[:300],
            method=about.method[:300],
            subject_pseudonym=self.pseudonym(about.subject),
            purpose=about.purpose[:256],
            initiator=about.initiator[:256],
            justification=justified.justification or audit_pb2.JUSTIFICATION_NONE,
            consent_id=justified.consent_id or about.consent[:128],
            legal_basis_id=justified.legal_basis_id or about.legal_basis[:128],
            law_reference=justified.law_reference,
            hidden_until_ms=justified.hidden_until_ms,
            decision=audit_pb2.DECISION_DENIED,
            decision_reason=error.message[:1000],
            status_code=error.status.value[0],
            error_code=error.code,
            error_origin=error.origin.value,
            request_hash=request_hash,
            message_hash=request_hash,
            signature=signature,
            signer_certificate_sha256=signature.key_id if signature is not None else b"",
            duration_us=duration_us,
        )


async def append_signed(
    log: ExchangeLog,
    record: audit_pb2.ExchangeRecord,
    signed: envelope_pb2.SignedMessage | None,
) -> int:
    """Append `record` with the signed message it is about (header sealed, signer
    certificate kept beside the log for evidence export)."""
    if signed is None:
        return await log.append(record)
    return await log.append(
        record, header=signed.header, body=signed.body, signer_certificate=signed.signer_certificate
    )


def _decision(header: envelope_pb2.Header) -> audit_pb2.Decision:
    """A refusal by a security server is a denial; an agency's answer, even an error
    such as NOT_FOUND, means access was allowed."""
    if header.status_code and header.error_origin in ("CONSUMER_SS", "PROVIDER_SS"):
        return audit_pb2.DECISION_DENIED
    return audit_pb2.DECISION_ALLOWED
