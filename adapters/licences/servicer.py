"""Driving licences as a gRPC service: `kz.gov.licences.v1.DrivingLicences`.

Reads of a holder's current licence and of the whole chain; writes for a new
licence after the exam (or new categories on the current one) and for a
replacement (renewal, loss, new surname). A licence's status is computed on the
day it is read: replaced, annulled (the holder died: shown as expired, the
contract has no other word for it), suspended while a deprivation is in force,
expired after its expiry date, else valid.

The registry's rules: no licence under the category's minimum age (16/18/21), a
trailer category only with its base, no licence or replacement while deprived of
the right to drive, no replacement of an annulled licence, renewal for expiry from
90 days before it, exam results count for twelve months. The servicer never calls
another registry.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.licences.data import (
    CATEGORIES,
    MIN_AGE,
    NEEDS,
    REPLACE_REASONS,
    VALID_YEARS,
    anniversary,
)
from adapters.licences.store import LicenceStore
from adapters.sdk.fields import date_field, iin_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Iin
from govbus.pb.agencies.licences.v1 import licences_pb2 as pb
from govbus.pb.agencies.licences.v1 import licences_pb2_grpc as pb_grpc

__all__ = ["DrivingLicencesServicer"]

_RENEW_BEFORE_DAYS = 90
_EXAM_VALID_DAYS = 365


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class DrivingLicencesServicer(pb_grpc.DrivingLicencesServicer):
    def __init__(self, store: LicenceStore, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _licence(self, row: sqlite3.Row, today: dt.date) -> pb.DrivingLicence:
        licence = pb.DrivingLicence(
            number=row["number"],
            iin=row["iin"],
            categories=row["categories"].split(),
            issued_date=row["issued_date"],
            expiry_date=row["expiry_date"],
        )
        day = today.isoformat()
        if row["replaced_by"]:
            licence.status = pb.LICENCE_STATUS_REPLACED
        elif row["annulled_date"] or row["expiry_date"] < day:
            licence.status = pb.LICENCE_STATUS_EXPIRED
        else:
            until = self.store.deprived_until(row["iin"], day)
            if until is not None:
                licence.status = pb.LICENCE_STATUS_SUSPENDED
                licence.suspended_until = until
            else:
                licence.status = pb.LICENCE_STATUS_VALID
        return licence

    def _current(self, iin: Iin) -> sqlite3.Row:
        row = self.store.current(iin.value)
        if row is None:
            raise NotFound(f"no driving licence was issued to IIN {iin.masked()}")
        return row

    def _check_may_drive(self, iin: Iin, current: sqlite3.Row | None, today: dt.date) -> None:
        if current is not None and current["annulled_date"]:
            raise FailedPrecondition(
                f"the licence {current['number']} was annulled on {current['annulled_date']}: "
                "the holder is deceased"
            )
        until = self.store.deprived_until(iin.value, today.isoformat())
        if until is not None:
            raise FailedPrecondition(f"the holder is deprived of the right to drive until {until}")

    async def GetLicence(self, request: pb.GetLicenceRequest, context: Any) -> pb.DrivingLicence:
        iin = iin_field(request.iin)
        return self._licence(self._current(iin), self.today())

    async def ListLicenceHistory(
        self, request: pb.ListLicenceHistoryRequest, context: Any
    ) -> AsyncIterator[pb.DrivingLicence]:
        iin = iin_field(request.iin)
        rows = self.store.history(iin.value)
        if not rows:
            raise NotFound(f"no driving licence was issued to IIN {iin.masked()}")
        today = self.today()
        for row in rows:
            yield self._licence(row, today)

    async def IssueLicence(
        self, request: pb.IssueLicenceRequest, context: Any
    ) -> pb.DrivingLicence:
        iin = iin_field(request.iin)
        wanted = _categories(request.categories)
        exam = date_field(request.exam_date, "exam_date")
        today = self.today()
        if exam > today:
            raise InvalidRequest(f"exam_date {exam} is in the future")
        if exam < iin.birth_date:
            raise InvalidRequest("exam_date is before the applicant's birth")
        if (today - exam).days > _EXAM_VALID_DAYS:
            raise FailedPrecondition(
                f"the exam of {exam} is older than {_EXAM_VALID_DAYS} days: it must be passed again"
            )
        age = _age(iin.birth_date, today)
        for category in wanted:
            if age < MIN_AGE[category]:
                raise FailedPrecondition(
                    f"the applicant is {age}: category {category} needs {MIN_AGE[category]}"
                )
        current = self.store.current(iin.value)
        self._check_may_drive(iin, current, today)
        held: set[str] = set()
        if current is not None:
            held = set(current["categories"].split())
            if set(wanted) <= held and current["expiry_date"] >= today.isoformat():
                raise AlreadyExists(
                    f"the current licence {current['number']} already has {', '.join(wanted)}"
                )
        union = held | set(wanted)
        for category, base in NEEDS.items():
            if category in union and base not in union:
                raise FailedPrecondition(f"category {category} needs category {base}")
        categories = " ".join(c for c in CATEGORIES if c in union)
        number = self.store.issue(
            (
                iin.value,
                categories,
                today.isoformat(),
                anniversary(today, VALID_YEARS).isoformat(),
            ),
            None if current is None else current["number"],
            "expired"
            if current is not None and current["expiry_date"] < today.isoformat()
            else "categories added",
        )
        row = self.store.licence(number)
        assert row is not None
        return self._licence(row, today)

    async def ReplaceLicence(
        self, request: pb.ReplaceLicenceRequest, context: Any
    ) -> pb.DrivingLicence:
        iin = iin_field(request.iin)
        reason = text_field(request.reason, "reason", max_length=40).lower()
        if reason not in REPLACE_REASONS:
            raise InvalidRequest(f"reason must be one of: {', '.join(REPLACE_REASONS)}")
        today = self.today()
        current = self._current(iin)
        self._check_may_drive(iin, current, today)
        renew_from = dt.date.fromisoformat(current["expiry_date"]) - dt.timedelta(
            days=_RENEW_BEFORE_DAYS
        )
        if reason == "expired" and today < renew_from:
            raise FailedPrecondition(
                f"the licence expires on {current['expiry_date']}: it can be renewed from "
                f"{renew_from}"
            )
        number = self.store.issue(
            (
                iin.value,
                current["categories"],
                today.isoformat(),
                anniversary(today, VALID_YEARS).isoformat(),
            ),
            current["number"],
            reason,
        )
        row = self.store.licence(number)
        assert row is not None
        return self._licence(row, today)


def _categories(values: Any) -> list[str]:
    if not values:
        raise InvalidRequest("categories: at least one category is required")
    wanted: list[str] = []
    for value in values:
        category = text_field(value, "categories", max_length=4).upper()
        if category not in MIN_AGE:
            raise InvalidRequest(
                f"categories: {value[:8]!r} is not a category ({', '.join(CATEGORIES)})"
            )
        if category not in wanted:
            wanted.append(category)
    return wanted
