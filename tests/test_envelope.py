"""Envelope sealing and opening, freshness, replay and call metadata — pure tests."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govbus import metadata as md
from govbus.crypto.pki import CertificateAuthority, Role, certificate_der, load_certificate
from govbus.errors import (
    CertificateInvalid,
    CertificateRevoked,
    DeadlineExceeded,
    GovbusError,
    InvalidIdentifier,
    InvalidRequest,
    ReplayDetected,
    SignatureInvalid,
    StaleMessage,
)
from govbus.pb.govbus.v1 import envelope_pb2
from security_server.envelope import check_fresh, open_envelope, seal
from security_server.replay import ReplayGuard
from tests.conftest import PASSPHRASE

MEMBER = "KZ/GOV/990140000017"


def _header(now: int) -> envelope_pb2.Header:
    return envelope_pb2.Header(
        kind=envelope_pb2.REQUEST,
        request_id="r1",
        client=f"{MEMBER}/tson",
        service="KZ/GOV/040340123459/gbdfl/person/v1",
        method="/kz.gov.gbdfl.v1.PersonRegistry/GetPerson",
        subject="900517312343",
        purpose="ID card",
        sent_at_ms=now,
        deadline_ms=now + 5000,
    )


@pytest.fixture
def sealed(
    ca: CertificateAuthority,
) -> tuple[CertificateAuthority, envelope_pb2.SignedMessage, int]:
    key = ca.issue_key(Role.SIGNING, MEMBER)
    now = int(time.time() * 1000)
    signed, _ = seal(_header(now), b"request body", key.signer(), certificate_der(key.certificate))
    return ca, signed, now


def test_round_trip(sealed: tuple[CertificateAuthority, envelope_pb2.SignedMessage, int]) -> None:
    ca, signed, now = sealed
    opened = open_envelope(
        signed.SerializeToString(), ca.trust_anchor(), expected_member=MEMBER, now_ms=now
    )
    assert opened.header.subject == "900517312343"
    assert opened.body == b"request body"


@pytest.mark.parametrize("part", ["header", "body", "signature"])
def test_every_flipped_byte_is_refused(
    sealed: tuple[CertificateAuthority, envelope_pb2.SignedMessage, int], part: str
) -> None:
    ca, signed, now = sealed
    anchor = ca.trust_anchor()
    original = signed.signature.value if part == "signature" else getattr(signed, part)
    for position in range(len(original)):
        tampered = envelope_pb2.SignedMessage()
        tampered.CopyFrom(signed)
        flipped = bytearray(original)
        flipped[position] ^= 0x01
        if part == "signature":
            tampered.signature.value = bytes(flipped)
        else:
            setattr(tampered, part, bytes(flipped))
        with pytest.raises((SignatureInvalid, InvalidRequest)):
            open_envelope(tampered, anchor, expected_member=MEMBER, now_ms=now)


def test_wrong_member_foreign_ca_revoked_and_wrong_role(
    sealed: tuple[CertificateAuthority, envelope_pb2.SignedMessage, int], tmp_path: Path
) -> None:
    ca, signed, now = sealed
    with pytest.raises(SignatureInvalid, match="expected"):
        open_envelope(signed, ca.trust_anchor(), expected_member="KZ/GOV/040340123459", now_ms=now)
    other = CertificateAuthority.init(tmp_path / "other", PASSPHRASE)
    foreign = other.issue_key(Role.SIGNING, MEMBER)
    forged, _ = seal(_header(now), b"x", foreign.signer(), certificate_der(foreign.certificate))
    with pytest.raises(CertificateInvalid):
        open_envelope(forged, ca.trust_anchor(), expected_member=MEMBER, now_ms=now)
    server_key = ca.issue_key(Role.SERVER, f"{MEMBER}/ss1")
    wrong_role, _ = seal(
        _header(now), b"x", server_key.signer(), certificate_der(server_key.certificate)
    )
    with pytest.raises(CertificateInvalid, match="signing certificate"):
        open_envelope(wrong_role, ca.trust_anchor(), expected_member=MEMBER, now_ms=now)
    signer_serial = load_certificate(signed.signer_certificate).serial_number
    ca.revoke(signer_serial)
    with pytest.raises(CertificateRevoked):
        open_envelope(signed, ca.trust_anchor(), expected_member=MEMBER, now_ms=now)


def test_freshness_window_and_deadline() -> None:
    now = 1_800_000_000_000
    header = _header(now)
    header.deadline_ms = now + 60_000
    check_fresh(header, now + 29_000, 30_000)
    with pytest.raises(StaleMessage):
        check_fresh(header, now + 31_000, 30_000)
    with pytest.raises(StaleMessage):
        check_fresh(header, now - 31_000, 30_000)
    header.deadline_ms = now + 5_000
    with pytest.raises(DeadlineExceeded):
        check_fresh(header, now + 5_000, 30_000)


def test_replay_guard_window() -> None:
    guard = ReplayGuard(window_ms=1000)
    guard.check_and_remember("c", "r1", 0, 0)
    guard.check_and_remember("c", "r1", 1, 0)  # a retry is another attempt
    guard.check_and_remember("other", "r1", 0, 0)  # ids are per client
    with pytest.raises(ReplayDetected):
        guard.check_and_remember("c", "r1", 0, 1500)
    guard.check_and_remember("c", "r2", 0, 2500)
    assert len(guard) == 1  # everything older than two windows is forgotten


def test_call_metadata_valid_and_generated_request_id() -> None:
    call = md.parse_call_metadata(
        [
            (md.CLIENT, f"{MEMBER}/tson"),
            (md.SERVICE, "KZ/GOV/040340123459/gbdfl/person/v1"),
            (md.SUBJECT, "900517312343"),
            (md.TRACEPARENT, "garbage"),
        ]
    )
    assert call.subject == "900517312343"
    assert len(call.request_id) == 32
    assert call.traceparent == ""


@pytest.mark.parametrize(
    ("metadata", "error", "match"),
    [
        ([], InvalidRequest, "govbus-client is missing"),
        ([(md.CLIENT, f"{MEMBER}/tson")], InvalidRequest, "govbus-service is missing"),
        (
            [(md.CLIENT, "nonsense"), (md.SERVICE, "KZ/GOV/040340123459/gbdfl/person/v1")],
            InvalidIdentifier,
            "must look like",
        ),
        (
            [(md.CLIENT, f"{MEMBER}/tson"), (md.SERVICE, "KZ/GOV/040340123459/gbdfl/person")],
            InvalidIdentifier,
            "must look like",
        ),
        (
            [
                (md.CLIENT, f"{MEMBER}/tson"),
                (md.SERVICE, "KZ/GOV/040340123459/gbdfl/person/v1"),
                (md.SUBJECT, "900517312345"),
            ],
            InvalidIdentifier,
            "check digit",
        ),
        (
            [
                (md.CLIENT, f"{MEMBER}/tson"),
                (md.SERVICE, "KZ/GOV/040340123459/gbdfl/person/v1"),
                (md.REQUEST_ID, "bad id with spaces"),
            ],
            InvalidRequest,
            "request-id",
        ),
        (
            [(md.CLIENT, f"{MEMBER}/tson"), (md.CLIENT, f"{MEMBER}/tson")],
            InvalidRequest,
            "more than once",
        ),
        (
            [
                (md.CLIENT, f"{MEMBER}/tson"),
                (md.SERVICE, "KZ/GOV/040340123459/gbdfl/person/v1"),
                (md.PURPOSE, "x" * 300),
            ],
            InvalidRequest,
            "purpose",
        ),
    ],
)
def test_call_metadata_refusals(
    metadata: list[tuple[str, str]], error: type[GovbusError], match: str
) -> None:
    with pytest.raises(error, match=match):
        md.parse_call_metadata(metadata)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([md.CLIENT, md.SERVICE, md.SUBJECT, md.REQUEST_ID, md.PURPOSE]),
            st.text(max_size=80),
        ),
        max_size=6,
    )
)
def test_any_metadata_gives_a_vocabulary_error_or_a_value(metadata: list[tuple[str, str]]) -> None:
    with contextlib.suppress(GovbusError):
        md.parse_call_metadata(metadata)
