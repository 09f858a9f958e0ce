"""Sealing and opening `SignedMessage` envelopes — pure functions, no I/O.

A header is serialized once; the signature covers those exact bytes and the
header carries the SHA-256 of the body, so nothing is canonicalised. Opening an
envelope checks, in order: it parses; the signer certificate chains to the
trust anchor as a member signing certificate of the expected member and is not
revoked or expired; the signature verifies; the body matches its hash. Only
then is the header trusted.

This module must never touch sockets, files or clocks: `now_ms` is passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from govbus.crypto.keys import KeySigner
from govbus.crypto.pki import Identity, Role, TrustAnchor
from govbus.errors import (
    CertificateInvalid,
    DeadlineExceeded,
    InvalidRequest,
    SignatureInvalid,
    StaleMessage,
)
from govbus.pb.govbus.v1 import envelope_pb2

__all__ = ["Opened", "check_fresh", "member_of", "open_envelope", "seal"]

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified envelope: the header can be trusted."""

    header: envelope_pb2.Header
    header_bytes: bytes
    body: bytes
    message_hash: bytes  # SHA-256 of header_bytes
    signed: envelope_pb2.SignedMessage
    signer: Identity


def seal(
    header: envelope_pb2.Header, body: bytes, signer: KeySigner, certificate_der: bytes
) -> tuple[envelope_pb2.SignedMessage, bytes]:
    """Sign `header` (its body hash is set here). Returns the envelope and its message hash."""
    header.body_sha256 = _sha256(body).digest()
    header_bytes = header.SerializeToString()
    signed = envelope_pb2.SignedMessage(
        header=header_bytes,
        body=body,
        signature=signer.sign(header_bytes),
        signer_certificate=certificate_der,
    )
    return signed, _sha256(header_bytes).digest()


def open_envelope(
    signed: envelope_pb2.SignedMessage | bytes,
    anchor: TrustAnchor,
    *,
    expected_member: str | None,
    now_ms: int,
) -> Opened:
    """Verify an envelope; raise the precise govbus error if anything is wrong."""
    if isinstance(signed, bytes):
        message = envelope_pb2.SignedMessage()
        try:
            message.ParseFromString(signed)
        except DecodeError:
            raise InvalidRequest("envelope is not a valid SignedMessage") from None
        signed = message
    if not signed.header or not signed.signature.value or not signed.signer_certificate:
        raise SignatureInvalid("envelope is unsigned or has no signer certificate")
    at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    identity = anchor.validate(signed.signer_certificate, role=None, at=at)
    if identity.role is not Role.SIGNING:
        raise CertificateInvalid(
            f"envelope signed with a {identity.role.value} certificate; a member signing "
            "certificate is required"
        )
    identity.verifier().verify(signed.signature, signed.header)
    header = envelope_pb2.Header()
    try:
        header.ParseFromString(signed.header)
    except DecodeError:
        raise InvalidRequest("signed header does not parse") from None
    if expected_member is not None and identity.name != expected_member:
        raise SignatureInvalid(
            f"envelope signed by member {identity.name}, expected {expected_member}"
        )
    if _sha256(signed.body).digest() != header.body_sha256:
        raise SignatureInvalid("body does not match the signed body hash: altered in transit")
    return Opened(
        header=header,
        header_bytes=signed.header,
        body=signed.body,
        message_hash=_sha256(signed.header).digest(),
        signed=signed,
        signer=identity,
    )


def check_fresh(header: envelope_pb2.Header, now_ms: int, window_ms: int) -> None:
    """The sender's clock must be within `window_ms` of ours; the deadline not passed."""
    skew = now_ms - header.sent_at_ms
    if abs(skew) > window_ms:
        raise StaleMessage(
            f"message sent at {header.sent_at_ms} is {skew / 1000:+.1f} s from this server's "
            f"clock (window ±{window_ms / 1000:.0f} s): check clocks, or it is replayed"
        )
    if header.deadline_ms and now_ms >= header.deadline_ms:
        raise DeadlineExceeded("the caller's deadline passed before the request arrived")


def member_of(client_or_service: str) -> str:
    """`KZ/GOV/<BIN>` of any id below a member (cheap split; ids are validated elsewhere)."""
    parts = client_or_service.split("/", 3)
    if len(parts) < 3:
        raise InvalidRequest(f"{client_or_service!r} does not name a member")
    return "/".join(parts[:3])
