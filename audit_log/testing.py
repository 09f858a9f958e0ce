"""Realistic sample records for tests, the benchmark and the demo.

Never used by the log itself. The subjects are valid synthetic IINs; the
signatures are filler unless a test makes real ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from audit_log.keys import Pseudonymizer
from govbus.ids import Iin, Sex
from govbus.pb.govbus.v1 import audit_pb2, signature_pb2

__all__ = ["sample_iin", "sample_record"]

_BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def sample_iin(n: int) -> str:
    """A valid synthetic IIN, different for each n."""
    serial = n % 9000
    while True:
        iin = Iin.build(
            dt.date(1980 + n % 30, 1 + n % 12, 1 + n % 28), (Sex.MALE, Sex.FEMALE)[n % 2], serial
        )
        if iin is not None:
            return iin.value
        serial += 1


def sample_record(
    n: int,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    iin: str | None = None,
    request_id: str | None = None,
    logged_at_ms: int | None = None,
    phase: audit_pb2.Phase = audit_pb2.PHASE_REQUEST,
) -> audit_pb2.ExchangeRecord:
    """Record number `n` of a plausible exchange (about 600 bytes serialized)."""
    header_hash = hashlib.sha256(f"header-{n}".encode()).digest()
    record = audit_pb2.ExchangeRecord(
        request_id=request_id or f"req-{n:012d}",
        logged_at_ms=logged_at_ms if logged_at_ms is not None else _BASE_MS + n * 10,
        side=audit_pb2.SIDE_PROVIDER,
        phase=phase,
        server="KZ/GOV/040340123459/ss1",
        peer_server="KZ/GOV/990240000016/ss-con",
        client="KZ/GOV/990240000016/con",
        service="KZ/GOV/040340123459/gbdfl/person/v1",
        method="/kz.gov.gbdfl.v1.PersonRegistry/GetPerson",
        purpose="birth certificate issuance",
        initiator="operator-0042",
        justification=audit_pb2.JUSTIFICATION_CONSENT,
        consent_id=f"consent-{n % 997:06d}",
        decision=audit_pb2.DECISION_ALLOWED,
        status_code=0,
        request_hash=header_hash,
        message_hash=header_hash,
        body_sha256=hashlib.sha256(f"body-{n}".encode()).digest(),
        signature=signature_pb2.Signature(
            algorithm=signature_pb2.ECDSA_P256_SHA256, key_id=b"k" * 32, value=b"s" * 71
        ),
        signer_certificate_sha256=b"c" * 32,
        header_ciphertext=b"h" * 240,
        duration_us=1200 + n % 500,
        upstream_us=800 + n % 300,
        body_size=512,
        traceparent=f"00-{n:032x}-{n:016x}-01",
    )
    if pseudonymizer is not None:
        record.subject_pseudonym = pseudonymizer.pseudonym(iin or sample_iin(n))
    return record
