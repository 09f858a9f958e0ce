"""Courts and enforcement as a gRPC service: `kz.gov.courts.v1.EnforcementRegister`.

The register of debtors answers about anyone: a person or company it has never
seen is simply not a debtor. A debtor is a party with an active (open or
suspended) enforcement proceeding; the travel ban is in force while an open one
carries it (for a company it binds its head). Closing a proceeding lifts its
restrictions; a closed one cannot be closed again, nor before it was opened.

A party is a person (IIN) or a company (BIN); a request about a person whose
consent the exchange carries may not ask about another person.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.courts.data import RESTRICTION_TRAVEL, parse_proceeding_number
from adapters.courts.store import EnforcementStore
from adapters.sdk.context import RequestContext
from adapters.sdk.fields import bin_field, iin_field, optional_date_field, text_field
from govbus.errors import FailedPrecondition, InvalidIdentifier, InvalidRequest, NotFound
from govbus.pb.agencies.courts.v1 import courts_pb2 as pb
from govbus.pb.agencies.courts.v1 import courts_pb2_grpc as pb_grpc

__all__ = ["CLOSE_REASONS", "EnforcementRegisterServicer"]

CLOSE_REASONS = (
    "paid",
    "withdrawn",
    "court cancelled",
    "impossible",
    "debtor deceased",
    "debtor liquidated",
)
_CLOSED = pb.PROCEEDING_STATUS_CLOSED


def _party(party: pb.Party) -> tuple[str, bool]:
    """(IIN or BIN, is a company) of a request's party, identifiers checked first."""
    which = party.WhichOneof("id")
    if which == "iin":
        iin = iin_field(party.iin, "party.iin")
        RequestContext.current().check_subject(iin, "party.iin")
        return iin.value, False
    if which == "bin":
        return bin_field(party.bin, "party.bin").value, True
    raise InvalidIdentifier("party: an IIN or a BIN is required")


def _proceeding(row: sqlite3.Row) -> pb.Proceeding:
    debtor = (
        pb.Party(bin=row["debtor"]) if row["debtor_is_company"] else pb.Party(iin=row["debtor"])
    )
    return pb.Proceeding(
        number=row["number"],
        debtor=debtor,
        creditor=row["creditor"],
        officer=row["officer"],
        amount_tiyn=row["amount_tiyn"],
        opened_date=row["opened_date"],
        status=row["status"],
        closed_date=row["closed_date"] or "",
        restrictions=row["restrictions"].split("\n") if row["restrictions"] else [],
    )


class EnforcementRegisterServicer(pb_grpc.EnforcementRegisterServicer):
    def __init__(
        self, store: EnforcementStore, today: Callable[[], dt.date] = dt.date.today
    ) -> None:
        self.store = store
        self.today = today

    async def GetDebtorStatus(
        self, request: pb.GetDebtorStatusRequest, context: Any
    ) -> pb.DebtorStatus:
        party, company = _party(request.party)
        active = self.store.proceedings(party, open_only=True)
        return pb.DebtorStatus(
            party=pb.Party(bin=party) if company else pb.Party(iin=party),
            is_debtor=bool(active),
            open_proceedings=len(active),
            total_tiyn=sum(int(row["amount_tiyn"]) for row in active),
            travel_ban=any(
                row["status"] == pb.PROCEEDING_STATUS_OPEN
                and RESTRICTION_TRAVEL in row["restrictions"]
                for row in active
            ),
        )

    async def ListProceedings(
        self, request: pb.ListProceedingsRequest, context: Any
    ) -> AsyncIterator[pb.Proceeding]:
        party, _company = _party(request.party)
        for row in self.store.proceedings(party, open_only=request.open_only):
            yield _proceeding(row)

    async def ListCourtCases(
        self, request: pb.ListCourtCasesRequest, context: Any
    ) -> AsyncIterator[pb.CourtCase]:
        party, _company = _party(request.party)
        for row in self.store.cases(party):
            yield pb.CourtCase(
                case_number=row["case_number"],
                court=row["court"],
                kind=row["kind"],
                role=row["role"],
                filed_date=row["filed_date"],
                status=row["status"],
                decision_date=row["decision_date"] or "",
            )

    async def CloseProceeding(
        self, request: pb.CloseProceedingRequest, context: Any
    ) -> pb.Proceeding:
        number = parse_proceeding_number(request.number)
        reason = text_field(request.reason, "reason", max_length=40).lower()
        if reason not in CLOSE_REASONS:
            raise InvalidRequest(f"reason must be one of: {', '.join(CLOSE_REASONS)}")
        today = self.today()
        closed = optional_date_field(request.closed_date, "closed_date") or today
        if closed > today:
            raise InvalidRequest(f"closed_date {closed} is in the future")
        row = self.store.proceeding(number)
        if row is None:
            raise NotFound(f"no enforcement proceeding {number}")
        if row["status"] == _CLOSED:
            raise FailedPrecondition(
                f"proceeding {number} was already closed on {row['closed_date']}"
            )
        if closed.isoformat() < row["opened_date"]:
            raise FailedPrecondition(
                f"closed_date {closed} is before the proceeding was opened ({row['opened_date']})"
            )
        if reason == "debtor deceased" and row["debtor_is_company"]:
            raise FailedPrecondition("the debtor is a company: it is liquidated, not deceased")
        if reason == "debtor liquidated" and not row["debtor_is_company"]:
            raise FailedPrecondition("the debtor is a person: only a company is liquidated")
        if not self.store.close_proceeding(number, closed.isoformat(), reason):
            raise FailedPrecondition(f"proceeding {number} was closed meanwhile")
        closed_row = self.store.proceeding(number)
        assert closed_row is not None
        return _proceeding(closed_row)
