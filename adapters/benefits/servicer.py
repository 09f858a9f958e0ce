"""ГЦВП as a gRPC service: `kz.gov.benefits.v1.StateBenefits`.

A recipient's benefits and payments (streams; payments may be limited to periods
"YYYY-MM"), and applications. An application is recorded as PENDING with the
amount the law sets where it is set in МРП (the ГЦВП decides within eight days);
the ones the law forbids are refused at once and change nothing:

- child benefits (birth grant, childcare, survivor) need the child's IIN; others
  must not carry one;
- the birth grant is applied for within 12 months of the birth, once per child;
  the childcare allowance before the child is 1.5; the applicant must be old
  enough to be the child's parent;
- the survivor benefit is for a child under 18; the large-family allowance needs
  four children under 18 known to the ГЦВП (from their birth grants);
- the age pension needs the retirement age (men 63, women 61 today);
- a benefit of a kind that is pending or running for the same person (or child)
  is ALREADY_EXISTS;
- the funeral grant names the deceased, which an application cannot carry: it is
  assigned from the death registration.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.benefits.rates import (
    anniversary,
    birth_grant_tiyn,
    childcare_end,
    childcare_tiyn,
    large_family_tiyn,
    retirement_age_halves,
)
from adapters.benefits.store import BenefitStore, benefit_id
from adapters.sdk.fields import enum_field, iin_field, optional_date_field, optional_iin_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest
from govbus.ids import Iin
from govbus.pb.agencies.benefits.v1 import benefits_pb2 as pb
from govbus.pb.agencies.benefits.v1 import benefits_pb2_grpc as pb_grpc

__all__ = ["StateBenefitsServicer"]

_KINDS = (
    pb.BENEFIT_KIND_BIRTH_GRANT,
    pb.BENEFIT_KIND_CHILDCARE,
    pb.BENEFIT_KIND_LARGE_FAMILY,
    pb.BENEFIT_KIND_DISABILITY,
    pb.BENEFIT_KIND_SURVIVOR,
    pb.BENEFIT_KIND_AGE_PENSION,
    pb.BENEFIT_KIND_FUNERAL_GRANT,
)
_FOR_A_CHILD = (pb.BENEFIT_KIND_BIRTH_GRANT, pb.BENEFIT_KIND_CHILDCARE, pb.BENEFIT_KIND_SURVIVOR)
_OPEN = (pb.BENEFIT_STATUS_PENDING, pb.BENEFIT_STATUS_ACTIVE)
_CHILDREN_OF = (pb.BENEFIT_KIND_BIRTH_GRANT, pb.BENEFIT_KIND_CHILDCARE)
_MIN_PARENT_GAP_YEARS = 14
_LARGE_FAMILY = 4
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


def _period(value: str, field: str) -> str | None:
    """An optional period "YYYY-MM" (None when empty)."""
    if not value:
        return None
    match = _PERIOD.fullmatch(value) if value.isascii() else None
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise InvalidRequest(f"{field}: {value[:20]!r} is not a period YYYY-MM")
    return value


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _benefit(row: sqlite3.Row) -> pb.Benefit:
    return pb.Benefit(
        benefit_id=benefit_id(row["id"]),
        iin=row["iin"],
        kind=row["kind"],
        status=row["status"],
        monthly_tiyn=row["monthly_tiyn"],
        one_off_tiyn=row["one_off_tiyn"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        child_iin=row["child_iin"],
    )


class StateBenefitsServicer(pb_grpc.StateBenefitsServicer):
    def __init__(self, store: BenefitStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def ListBenefits(
        self, request: pb.ListBenefitsRequest, context: Any
    ) -> AsyncIterator[pb.Benefit]:
        iin = iin_field(request.iin)
        for row in self.store.benefits(iin.value):
            yield _benefit(row)

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Any
    ) -> AsyncIterator[pb.Payment]:
        iin = iin_field(request.iin)
        first = _period(request.from_period, "from_period") or "0000-00"
        last = _period(request.to_period, "to_period") or "9999-99"
        if first > last:
            raise InvalidRequest("from_period is after to_period")
        for row in self.store.payments(iin.value, first, last):
            yield pb.Payment(
                benefit_id=benefit_id(row["benefit_id"]),
                iin=row["iin"],
                period=row["period"],
                paid_date=row["paid_date"],
                amount_tiyn=row["amount_tiyn"],
            )

    async def ApplyForBenefit(self, request: pb.ApplyForBenefitRequest, context: Any) -> pb.Benefit:
        iin = iin_field(request.iin)
        child = optional_iin_field(request.child_iin, "child_iin")
        kind = enum_field(request.kind, "kind", _KINDS, name="benefit kind")
        today = self.today()
        applied = optional_date_field(request.application_date, "application_date") or today
        if applied > today:
            raise InvalidRequest(f"application_date {applied} is in the future")
        if kind == pb.BENEFIT_KIND_FUNERAL_GRANT:
            raise InvalidRequest(
                "the funeral grant is assigned from the registered death: an application "
                "cannot name the deceased"
            )
        if kind in _FOR_A_CHILD:
            if child is None:
                raise InvalidRequest("child_iin is required for this benefit")
            if child == iin:
                raise InvalidRequest("child_iin is the applicant's own IIN")
        elif child is not None:
            raise InvalidRequest("child_iin is only for child-related benefits")
        if iin.birth_date > applied:
            raise FailedPrecondition("the applicant's IIN gives a birth date after the application")
        monthly, one_off, end = self._rules(iin, kind, child, applied)
        row_id = self.store.add(
            (
                iin.value,
                kind,
                pb.BENEFIT_STATUS_PENDING,
                monthly,
                one_off,
                applied.isoformat(),
                applied.isoformat(),
                "" if end is None else end.isoformat(),
                "" if child is None else child.value,
            )
        )
        return _benefit(self.store.by_id(row_id))

    def _open_for_child(self, child: Iin, kind: int) -> sqlite3.Row | None:
        rows = self.store.benefits_for_child(child.value, kind)
        return next((r for r in rows if r["status"] in _OPEN), None)

    def _children(self, iin: Iin, on: dt.date) -> set[str]:
        """Children under 18 the ГЦВП knows the person for (from child benefits)."""
        return {
            r["child_iin"]
            for r in self.store.benefits(iin.value)
            if r["kind"] in _CHILDREN_OF
            and r["status"] != pb.BENEFIT_STATUS_REFUSED
            and _age(Iin(r["child_iin"]).birth_date, on) < 18
        }

    def _rules(
        self, iin: Iin, kind: int, child: Iin | None, applied: dt.date
    ) -> tuple[int, int, dt.date | None]:
        """Refuse what the law forbids; (monthly, one-off, planned end) otherwise."""
        if child is not None:
            return self._child_rules(iin, kind, child, applied)
        open_ = (r for r in self.store.benefits(iin.value) if r["kind"] == kind)
        self._refuse_open(next((r for r in open_ if r["status"] in _OPEN), None))
        if kind == pb.BENEFIT_KIND_LARGE_FAMILY:
            children = len(self._children(iin, applied))
            if children < _LARGE_FAMILY:
                raise FailedPrecondition(
                    f"the large-family allowance needs {_LARGE_FAMILY} children under 18; "
                    f"the ГЦВП knows of {children}"
                )
            return large_family_tiyn(applied.year, children), 0, None
        if kind == pb.BENEFIT_KIND_AGE_PENSION:
            halves = retirement_age_halves(iin.sex, applied.year)
            if anniversary(iin.birth_date, halves // 2, 6 * (halves % 2)) > applied:
                raise FailedPrecondition(
                    f"the retirement age is {halves / 2:g}: the applicant has not reached it"
                )
        # The amount of a pension or disability benefit is assessed on assignment.
        return 0, 0, None

    def _child_rules(
        self, iin: Iin, kind: int, child: Iin, applied: dt.date
    ) -> tuple[int, int, dt.date | None]:
        if child.birth_date > applied:
            raise FailedPrecondition("the child is not born by the application date")
        parent = kind != pb.BENEFIT_KIND_SURVIVOR
        if parent and _age(iin.birth_date, child.birth_date) < _MIN_PARENT_GAP_YEARS:
            raise FailedPrecondition("the applicant is too young to be the child's parent")
        number = len(self._children(iin, applied) - {child.value}) + 1
        if kind == pb.BENEFIT_KIND_BIRTH_GRANT:
            if applied > anniversary(child.birth_date, 1):
                raise FailedPrecondition("the birth grant is applied for within 12 months")
            granted = [
                r
                for r in self.store.benefits_for_child(child.value, kind)
                if r["status"] != pb.BENEFIT_STATUS_REFUSED
            ]
            if granted:
                raise AlreadyExists(
                    f"the birth grant for this child is {benefit_id(granted[0]['id'])}"
                )
            return 0, birth_grant_tiyn(applied.year, number), None
        if kind == pb.BENEFIT_KIND_CHILDCARE:
            end = childcare_end(child.birth_date)
            if applied >= end:
                raise FailedPrecondition("the childcare allowance is paid until the child is 1.5")
            self._refuse_open(self._open_for_child(child, kind))
            return childcare_tiyn(applied.year, number), 0, end
        end = anniversary(child.birth_date, 18)  # the survivor benefit
        if applied >= end:
            raise FailedPrecondition("the survivor benefit is for a child under 18")
        self._refuse_open(self._open_for_child(child, kind))
        return 0, 0, end

    @staticmethod
    def _refuse_open(row: sqlite3.Row | None) -> None:
        if row is not None:
            state = "pending" if row["status"] == pb.BENEFIT_STATUS_PENDING else "assigned"
            raise AlreadyExists(
                f"benefit {benefit_id(row['id'])} of this kind is already {state} "
                f"(since {row['start_date']})"
            )
