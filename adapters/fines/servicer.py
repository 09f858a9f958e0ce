"""Administrative fines as a gRPC service: `kz.gov.fines.v1.AdministrativeFines`.

Reads of a person's fines (the whole history, or the unpaid ones), one fine by its
number, and a person's summary ("no fines" is an answer, not NOT_FOUND); a write
to record a payment. A fine number is an identifier: a malformed one is
INVALID_IDENTIFIER. A fine read or paid by its number is about its offender, so a
call made under someone else's consent is refused (CONSENT_SCOPE).

Payment rules: only an unpaid fine can be paid, with exactly its amount, on a day
between its issue and today, and one payment reference pays one fine. Paying again
with the same reference answers the paid fine (a retried payment is not an error).
The servicer never calls another registry.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.fines.store import FineStore
from adapters.population.geography import REGIONS
from adapters.sdk.context import RequestContext
from adapters.sdk.fields import iin_field, optional_date_field, text_field
from govbus.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
)
from govbus.pb.agencies.fines.v1 import fines_pb2 as pb
from govbus.pb.agencies.fines.v1 import fines_pb2_grpc as pb_grpc

__all__ = ["AdministrativeFinesServicer", "parse_fine_id"]

_FINE_ID_DIGITS = 15
_REGION_CODES = frozenset(r.code for r in REGIONS)


def parse_fine_id(value: str, field: str = "fine_id") -> str:
    """A fine number: 15 digits, the first two a region code."""
    text = value.strip()
    if not text:
        raise InvalidIdentifier(f"{field}: a fine number of {_FINE_ID_DIGITS} digits is required")
    if len(text) != _FINE_ID_DIGITS or not text.isascii() or not text.isdigit():
        shown = text if len(text) <= 24 else text[:24] + "…"
        raise InvalidIdentifier(
            f"{field}: a fine number is exactly {_FINE_ID_DIGITS} digits, got {shown!r}"
        )
    if int(text[:2]) not in _REGION_CODES:
        raise InvalidIdentifier(f"{field}: {text} starts with an unknown region {text[:2]}")
    return text


def _fine(row: sqlite3.Row) -> pb.Fine:
    return pb.Fine(
        fine_id=row["fine_id"],
        iin=row["iin"],
        article=row["article"],
        description=row["description"],
        amount_tiyn=row["amount_tiyn"],
        issued_date=row["issued_date"],
        due_date=row["due_date"],
        status=row["status"],
        paid_date=row["paid_date"] or "",
        vehicle_plate=row["vehicle_plate"],
    )


class AdministrativeFinesServicer(pb_grpc.AdministrativeFinesServicer):
    def __init__(self, store: FineStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _existing(self, fine_id: str) -> sqlite3.Row:
        row = self.store.fine(fine_id)
        if row is None:
            raise NotFound(f"no fine {fine_id}")
        # The fine is about its offender: the consent (if any) must be theirs.
        RequestContext.current().check_subject(row["iin"], "fine_id")
        return row

    async def ListFines(self, request: pb.ListFinesRequest, context: Any) -> AsyncIterator[pb.Fine]:
        iin = iin_field(request.iin)
        status = pb.FINE_STATUS_UNPAID if request.unpaid_only else None
        for row in self.store.fines(iin.value, status):
            yield _fine(row)

    async def GetFine(self, request: pb.GetFineRequest, context: Any) -> pb.Fine:
        return _fine(self._existing(parse_fine_id(request.fine_id)))

    async def GetFineSummary(
        self, request: pb.GetFineSummaryRequest, context: Any
    ) -> pb.FineSummary:
        iin = iin_field(request.iin)
        unpaid, total, count = self.store.summary(
            iin.value, pb.FINE_STATUS_UNPAID, pb.FINE_STATUS_CANCELLED
        )
        return pb.FineSummary(
            iin=iin.value, unpaid_count=unpaid, unpaid_total_tiyn=total, total_count=count
        )

    async def PayFine(self, request: pb.PayFineRequest, context: Any) -> pb.Fine:
        fine_id = parse_fine_id(request.fine_id)
        reference = text_field(request.payment_reference, "payment_reference", max_length=64)
        paid_date = optional_date_field(request.paid_date, "paid_date")
        if request.amount_tiyn <= 0:
            raise InvalidRequest("amount_tiyn must be a positive amount in tiyn")
        today = self.today()
        paid_on = paid_date or today
        if paid_on > today:
            raise InvalidRequest(f"paid_date {paid_on} is in the future")
        row = self._existing(fine_id)
        if row["status"] == pb.FINE_STATUS_PAID:
            if row["payment_reference"] == reference:
                return _fine(row)  # the same payment again: already recorded
            raise AlreadyExists(
                f"fine {fine_id} was already paid on {row['paid_date']} by another payment"
            )
        if row["status"] == pb.FINE_STATUS_CANCELLED:
            raise FailedPrecondition(f"fine {fine_id} was cancelled: nothing to pay")
        if request.amount_tiyn != row["amount_tiyn"]:
            raise InvalidRequest(
                f"amount_tiyn {request.amount_tiyn} does not equal the fine's amount "
                f"{row['amount_tiyn']}"
            )
        if paid_on.isoformat() < row["issued_date"]:
            raise InvalidRequest(f"paid_date {paid_on} is before the fine was issued")
        other = self.store.by_payment(reference)
        if other is not None:
            raise AlreadyExists(f"payment {reference} already paid fine {other['fine_id']}")
        try:
            changed = self.store.pay(
                fine_id,
                pb.FINE_STATUS_UNPAID,
                pb.FINE_STATUS_PAID,
                paid_on.isoformat(),
                reference,
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"payment {reference} already paid another fine") from None
        if not changed:
            raise FailedPrecondition(
                f"fine {fine_id} changed while it was being paid: read it again"
            )
        return _fine(self._existing(fine_id))
