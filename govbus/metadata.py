"""The `govbus-*` call metadata: names, and parsing into a validated value.

A consumer names who calls, what, about whom and why in gRPC metadata; the
client library sets it, the consumer security server reads it, the provider
security server passes it on to the adapter. Parsed and validated here only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from govbus.errors import InvalidIdentifier, InvalidRequest
from govbus.ids import Iin, ServiceId, SubsystemId

__all__ = [
    "CLIENT",
    "CONSENT",
    "CONSENT_ARTEFACT",
    "INITIATOR",
    "LEGAL_BASIS",
    "PURPOSE",
    "REQUEST_ID",
    "SERVICE",
    "SUBJECT",
    "TRACEPARENT",
    "CallMetadata",
    "parse_call_metadata",
]

CLIENT = "govbus-client"
SERVICE = "govbus-service"
SUBJECT = "govbus-subject"
PURPOSE = "govbus-purpose"
CONSENT = "govbus-consent"
CONSENT_ARTEFACT = "govbus-consent-artefact-bin"
LEGAL_BASIS = "govbus-legal-basis"
REQUEST_ID = "govbus-request-id"
INITIATOR = "govbus-initiator"
TRACEPARENT = "traceparent"

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_MAX_TEXT = 256
_MAX_ARTEFACT = 16 * 1024


@dataclass(frozen=True, slots=True)
class CallMetadata:
    client: str  # validated subsystem id, printed form
    service: str  # validated service id, printed form
    subject: str  # validated IIN or ""
    purpose: str
    consent: str
    consent_artefact: bytes
    legal_basis: str
    request_id: str
    initiator: str
    traceparent: str


def _text(name: str, value: str) -> str:
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise InvalidRequest(
            f"metadata {name} must be printable text of at most {_MAX_TEXT} characters"
        )
    return value


def _token(name: str, value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise InvalidRequest(
            f"metadata {name} {value[:70]!r} must be 1-64 letters, digits or . _ : -"
        )
    return value


def parse_call_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> CallMetadata:
    """Validate the `govbus-*` metadata of a call; raise INVALID_REQUEST/INVALID_IDENTIFIER."""
    found: dict[str, str | bytes] = {}
    for key, value in metadata:
        if key.startswith("govbus-") or key == TRACEPARENT:
            if key in found:
                raise InvalidRequest(f"metadata {key} is given more than once")
            found[key] = value

    def text(name: str) -> str:
        value = found.get(name, "")
        if isinstance(value, bytes):
            raise InvalidRequest(f"metadata {name} must be text")
        return value

    client, service = text(CLIENT), text(SERVICE)
    if not client:
        raise InvalidRequest(
            f"metadata {CLIENT} is missing: name the calling subsystem KZ/GOV/<BIN>/<code>"
        )
    if not service:
        raise InvalidRequest(f"metadata {SERVICE} is missing: name the service to call")
    try:
        client = str(SubsystemId.parse(client))
        service = str(ServiceId.parse(service))
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(exc.message) from None
    subject = text(SUBJECT)
    if subject:
        subject = str(Iin.parse(subject))
    request_id = text(REQUEST_ID)
    request_id = _token(REQUEST_ID, request_id) if request_id else uuid.uuid4().hex
    consent = text(CONSENT)
    if consent:
        _token(CONSENT, consent)
    legal_basis = text(LEGAL_BASIS)
    if legal_basis:
        _token(LEGAL_BASIS, legal_basis)
    artefact = found.get(CONSENT_ARTEFACT, b"")
    if not isinstance(artefact, bytes) or len(artefact) > _MAX_ARTEFACT:
        raise InvalidRequest(
            f"metadata {CONSENT_ARTEFACT} must be binary, at most {_MAX_ARTEFACT} bytes"
        )
    traceparent = text(TRACEPARENT)
    if traceparent and not _TRACEPARENT.fullmatch(traceparent):
        traceparent = ""  # W3C: an invalid traceparent is ignored, not an error
    return CallMetadata(
        client=client,
        service=service,
        subject=subject,
        purpose=_text(PURPOSE, text(PURPOSE)),
        consent=consent,
        consent_artefact=artefact,
        legal_basis=legal_basis,
        request_id=request_id,
        initiator=_text(INITIATOR, text(INITIATOR)),
        traceparent=traceparent,
    )
