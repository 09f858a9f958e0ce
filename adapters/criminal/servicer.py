"""КПСиСУ criminal records as a gRPC service: `kz.gov.criminal.v1.CriminalRecords`.

Reads: whether a person has an unspent conviction or is wanted ("no record" is an
answer about anyone, not NOT_FOUND), the convictions themselves, a certificate by
its number; one write: issuing the certificate of (no) criminal record the ЦОН hands
to the citizen. Convictions are spent by the date, not by a write: a conviction is
expunged once its `expunge_date` has come.

Certificate rules: the purpose must be one this registry knows (for work with
children, adoption and guardianship the certificate discloses spent convictions
too, as the law requires); nobody under 14 (the lowest age of criminal
responsibility) gets one; a wanted person gets none electronically; and asking again
on the same day for the same purpose answers the certificate already issued. A
certificate read by number is about its holder: a call under someone else's consent
is refused (CONSENT_SCOPE). The servicer never calls another registry.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from adapters.criminal.data import PURPOSES
from adapters.criminal.store import CriminalStore
from adapters.sdk.context import RequestContext
from adapters.sdk.fields import iin_field, text_field
from govbus.errors import FailedPrecondition, InvalidIdentifier, InvalidRequest, NotFound
from govbus.pb.agencies.criminal.v1 import criminal_pb2 as pb
from govbus.pb.agencies.criminal.v1 import criminal_pb2_grpc as pb_grpc

__all__ = ["CriminalRecordsServicer", "parse_certificate_number"]

_NUMBER_DIGITS = 13
_MIN_AGE = 14


def parse_certificate_number(value: str, field: str = "certificate_number") -> str:
    """A certificate number: 13 digits, the first four the year of issue (2000…2099)."""
    text = value.strip()
    if not text:
        raise InvalidIdentifier(
            f"{field}: a certificate number of {_NUMBER_DIGITS} digits is required"
        )
    if len(text) != _NUMBER_DIGITS or not text.isascii() or not text.isdigit():
        shown = text if len(text) <= 24 else text[:24] + "…"
        raise InvalidIdentifier(
            f"{field}: a certificate number is exactly {_NUMBER_DIGITS} digits, got {shown!r}"
        )
    if not 2000 <= int(text[:4]) <= 2099:
        raise InvalidIdentifier(f"{field}: {text} does not start with a year of issue")
    return text


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _spent(row: sqlite3.Row, on: str) -> bool:
    return row["expunge_date"] is not None and row["expunge_date"] <= on


def _conviction(row: sqlite3.Row, on: str) -> pb.Conviction:
    spent = _spent(row, on)
    return pb.Conviction(
        case_number=row["case_number"],
        article=row["article"],
        court=row["court"],
        verdict_date=row["verdict_date"],
        sentence=row["sentence"],
        expunged=spent,
        expunged_date=row["expunge_date"] if spent else "",
    )


def _certificate(row: sqlite3.Row, convictions: Sequence[sqlite3.Row]) -> pb.Certificate:
    issued = row["issued_date"]
    return pb.Certificate(
        certificate_number=row["certificate_number"],
        iin=row["iin"],
        has_convictions=bool(row["has_convictions"]),
        convictions=[_conviction(c, issued) for c in convictions],
        issued_date=issued,
        purpose=row["purpose"],
    )


class CriminalRecordsServicer(pb_grpc.CriminalRecordsServicer):
    def __init__(self, store: CriminalStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def CheckRecord(self, request: pb.CheckRecordRequest, context: Any) -> pb.RecordCheck:
        iin = iin_field(request.iin)
        return pb.RecordCheck(
            iin=iin.value,
            has_convictions=self.store.has_unexpunged(iin.value, self.today().isoformat()),
            wanted=self.store.wanted(iin.value) is not None,
        )

    async def ListConvictions(
        self, request: pb.ListConvictionsRequest, context: Any
    ) -> AsyncIterator[pb.Conviction]:
        iin = iin_field(request.iin)
        today = self.today().isoformat()
        for row in self.store.convictions(iin.value):
            if request.include_expunged or not _spent(row, today):
                yield _conviction(row, today)

    async def GetCertificate(
        self, request: pb.GetCertificateRequest, context: Any
    ) -> pb.Certificate:
        number = parse_certificate_number(request.certificate_number)
        row = self.store.certificate(number)
        if row is None:
            raise NotFound(f"no certificate {number}")
        RequestContext.current().check_subject(row["iin"], "certificate_number")
        return _certificate(row, self.store.certificate_convictions(number))

    async def IssueCertificate(
        self, request: pb.IssueCertificateRequest, context: Any
    ) -> pb.Certificate:
        iin = iin_field(request.iin)
        purpose = text_field(request.purpose, "purpose", max_length=40)
        if purpose not in PURPOSES:
            raise InvalidRequest(
                f"purpose {purpose!r} is not one of: {', '.join(sorted(PURPOSES))}"
            )
        today = self.today()
        day = today.isoformat()
        if iin.birth_date > today:
            raise InvalidRequest("the IIN gives a birth date in the future")
        if _age(iin.birth_date, today) < _MIN_AGE:
            raise FailedPrecondition(
                f"the person is under {_MIN_AGE}, the lowest age of criminal responsibility: "
                "no certificate is issued"
            )
        existing = self.store.issued_on(iin.value, day, purpose)
        if existing is None:
            wanted = self.store.wanted(iin.value)
            if wanted is not None:
                raise FailedPrecondition(
                    "the person is on the wanted list: the certificate is not issued "
                    "electronically, apply to КПСиСУ in person"
                )
            full_history = PURPOSES[purpose]
            convictions = self.store.convictions(iin.value)
            unspent = [c for c in convictions if not _spent(c, day)]
            shown = convictions if full_history else unspent
            number = self.store.issue(
                today.year,
                iin.value,
                day,
                purpose,
                bool(unspent),
                full_history,
                [c["case_number"] for c in shown],
            )
            existing = self.store.certificate(number)
            assert existing is not None
        number = existing["certificate_number"]
        return _certificate(existing, self.store.certificate_convictions(number))
