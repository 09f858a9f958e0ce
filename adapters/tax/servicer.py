"""КГД as a gRPC service: `kz.gov.tax.v1.TaxService`.

Reads of a taxpayer (by IIN or BIN), their debt status — the certificate of no tax
debt, with the penalty computed for the day asked — and their declarations; one
write: submitting a declaration. A taxpayer identified by IIN inside `id` is the
person the data is about: a call under someone else's consent is refused
(CONSENT_SCOPE), as the SDK does for top-level `iin` fields.

Declaration rules: the form must exist and suit the taxpayer (270.00 for
individuals and entrepreneurs, 910.00 and 220.00 for entrepreneurs, 100.00 for legal
entities); the tax year (or half-year, for 910.00) must be over, and the taxpayer
registered then and not yet deregistered; tax cannot exceed income; and a period
already declared (not rejected) is not declared twice. A new declaration is under
desk review until the authority accepts it. The servicer never calls another registry.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.sdk.context import RequestContext
from adapters.sdk.fields import bin_field, iin_field, text_field
from adapters.tax.data import FORMS, declaration_id, penalty_tiyn
from adapters.tax.store import TaxStore
from govbus.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
)
from govbus.pb.agencies.tax.v1 import tax_pb2 as pb
from govbus.pb.agencies.tax.v1 import tax_pb2_grpc as pb_grpc

__all__ = ["TaxServiceServicer", "taxpayer_id"]

_FIRST_TAX_YEAR = 1999


def taxpayer_id(message: pb.TaxpayerId, field: str = "id") -> tuple[str, str]:
    """The validated IIN or BIN of a `TaxpayerId`, and how to name it in a message."""
    which = message.WhichOneof("id")
    if which == "iin":
        iin = iin_field(message.iin, f"{field}.iin")
        RequestContext.current().check_subject(iin, f"{field}.iin")
        return iin.value, f"IIN {iin.masked()}"
    if which == "bin":
        bin_ = bin_field(message.bin, f"{field}.bin")
        return bin_.value, f"BIN {bin_.value}"
    raise InvalidIdentifier(f"{field}: a taxpayer IIN or BIN is required")


def _id_of(row: sqlite3.Row) -> pb.TaxpayerId:
    if row["id_kind"] == "iin":
        return pb.TaxpayerId(iin=row["taxpayer_id"])
    return pb.TaxpayerId(bin=row["taxpayer_id"])


def _declaration(row: sqlite3.Row, taxpayer: pb.TaxpayerId) -> pb.Declaration:
    return pb.Declaration(
        declaration_id=row["declaration_id"],
        id=taxpayer,
        form=row["form"],
        tax_year=row["tax_year"],
        submitted_date=row["submitted_date"],
        status=row["status"],
        income_tiyn=row["income_tiyn"],
        tax_tiyn=row["tax_tiyn"],
    )


def _period_end(tax_year: int, period: int) -> dt.date:
    return dt.date(tax_year, 6, 30) if period == 1 else dt.date(tax_year, 12, 31)


class TaxServiceServicer(pb_grpc.TaxServiceServicer):
    def __init__(self, store: TaxStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _taxpayer(self, message: pb.TaxpayerId) -> sqlite3.Row:
        key, shown = taxpayer_id(message)
        row = self.store.taxpayer(key)
        if row is None:
            raise NotFound(f"no taxpayer with {shown} is registered with the КГД")
        return row

    async def GetTaxpayer(self, request: pb.GetTaxpayerRequest, context: Any) -> pb.Taxpayer:
        row = self._taxpayer(request.id)
        return pb.Taxpayer(
            id=_id_of(row),
            name=row["name"],
            kind=row["kind"],
            registered_date=row["registered_date"],
            tax_office=row["tax_office"],
        )

    async def GetDebtStatus(self, request: pb.GetDebtStatusRequest, context: Any) -> pb.DebtStatus:
        row = self._taxpayer(request.id)
        today = self.today()
        debts = []
        for debt in self.store.debts(row["taxpayer_id"]):
            since = dt.date.fromisoformat(debt["since_date"])
            debts.append(
                pb.Debt(
                    budget_code=debt["budget_code"],
                    description=debt["description"],
                    principal_tiyn=debt["principal_tiyn"],
                    penalty_tiyn=penalty_tiyn(debt["principal_tiyn"], since, today),
                    since_date=debt["since_date"],
                )
            )
        total = sum(d.principal_tiyn + d.penalty_tiyn for d in debts)
        return pb.DebtStatus(
            id=_id_of(row),
            has_debt=total > 0,
            total_tiyn=total,
            debts=debts,
            as_of_date=today.isoformat(),
        )

    async def ListDeclarations(
        self, request: pb.ListDeclarationsRequest, context: Any
    ) -> AsyncIterator[pb.Declaration]:
        row = self._taxpayer(request.id)
        if request.tax_year and not _FIRST_TAX_YEAR <= request.tax_year <= self.today().year:
            raise InvalidRequest(f"tax_year {request.tax_year} is outside {_FIRST_TAX_YEAR}…now")
        answer_id = _id_of(row)
        for declaration in self.store.declarations(row["taxpayer_id"], request.tax_year):
            yield _declaration(declaration, answer_id)

    async def SubmitDeclaration(
        self, request: pb.SubmitDeclarationRequest, context: Any
    ) -> pb.Declaration:
        key, _shown = taxpayer_id(request.id)
        code = text_field(request.form, "form", max_length=10)
        form = FORMS.get(code)
        if form is None:
            raise InvalidRequest(f"form {code!r} is not one of: {', '.join(sorted(FORMS))}")
        today = self.today()
        year = request.tax_year
        if not _FIRST_TAX_YEAR <= year <= today.year:
            raise InvalidRequest(f"tax_year {year} is outside {_FIRST_TAX_YEAR}…{today.year}")
        if request.income_tiyn < 0 or request.tax_tiyn < 0:
            raise InvalidRequest("income_tiyn and tax_tiyn cannot be negative")
        if request.tax_tiyn > request.income_tiyn:
            raise InvalidRequest("tax_tiyn is larger than income_tiyn")

        row = self._taxpayer(request.id)
        if row["kind"] not in form.kinds:
            raise FailedPrecondition(
                f"form {form.code} ({form.title}) is not for this kind of taxpayer"
            )
        if row["registered_date"] > _period_end(year, form.periods[-1]).isoformat():
            raise FailedPrecondition(
                f"the taxpayer was registered on {row['registered_date']}, after tax year {year}"
            )
        gone = row["deregistered_date"]
        if gone and gone < dt.date(year, 1, 1).isoformat():
            raise FailedPrecondition(
                f"the taxpayer was deregistered on {gone}, before tax year {year}"
            )
        filed = self.store.filed_periods(key, form.code, year, pb.DECLARATION_STATUS_REJECTED)
        open_periods = [p for p in form.periods if p not in filed]
        if not open_periods:
            raise AlreadyExists(
                f"form {form.code} for {year} is already declared: submit an additional "
                "declaration to the tax office instead"
            )
        period = open_periods[0]
        if _period_end(year, period) >= today:
            raise FailedPrecondition(
                f"the tax period of form {form.code} for {year} is not over yet"
                + (f" (half-year {period})" if period else "")
            )
        declaration = self.store.submit(
            lambda serial: declaration_id(form.code, year, period, serial),
            (
                key,
                form.code,
                year,
                period,
                today.isoformat(),
                pb.DECLARATION_STATUS_UNDER_REVIEW,
                request.income_tiyn,
                request.tax_tiyn,
            ),
        )
        stored = self.store.declaration(declaration)
        assert stored is not None
        return _declaration(stored, _id_of(row))
