"""Military registration as a gRPC service: `kz.gov.military.v1.MilitaryRegistration`.

Reads of a person's record and periods of service; writes for the life events
"turning 17" (a first registration), "moving house" (registration at the new
office, or deregistration for a move abroad) and the end of liability. The status
is computed on the day it is read: in service while a period of service covers the
day, a conscript of 27 or more is in the reserve, else the status last set.

The registry's rules: men are registered from the year they turn 17 until the
reserve age limit (50); a woman is registered by the defence office in person,
with a military-relevant profession, not through the bus; a man removed as unfit
or deceased is not registered again; no one is deregistered while serving (except
at death); deregistration "age" only from 50; "health" removes a man as unfit.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.military.data import (
    CONSCRIPT_UNTIL,
    REGISTRATION_AGE,
    RESERVE_UNTIL,
)
from adapters.military.store import MilitaryStore
from adapters.sdk.fields import iin_field, optional_date_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Iin, Sex
from govbus.pb.agencies.military.v1 import military_pb2 as pb
from govbus.pb.agencies.military.v1 import military_pb2_grpc as pb_grpc

__all__ = ["DEREGISTER_REASONS", "MilitaryRegistrationServicer"]

DEREGISTER_REASONS = ("moved abroad", "moving", "age", "death", "health")
_CONSCRIPT = pb.MILITARY_STATUS_CONSCRIPT
_RESERVE = pb.MILITARY_STATUS_RESERVE
_DEREGISTERED = pb.MILITARY_STATUS_DEREGISTERED
_NOT_LIABLE = pb.MILITARY_STATUS_NOT_LIABLE


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class MilitaryRegistrationServicer(pb_grpc.MilitaryRegistrationServicer):
    def __init__(self, store: MilitaryStore, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _status(self, row: sqlite3.Row, today: dt.date) -> pb.MilitaryStatus:
        status: pb.MilitaryStatus = row["status"]
        if status in (_DEREGISTERED, _NOT_LIABLE):
            return status
        if self.store.in_service(row["iin"], today.isoformat()):
            return pb.MILITARY_STATUS_IN_SERVICE
        if status == _CONSCRIPT and _age(Iin(row["iin"]).birth_date, today) >= CONSCRIPT_UNTIL:
            return _RESERVE
        return status

    def _record(self, row: sqlite3.Row, today: dt.date) -> pb.MilitaryRecord:
        return pb.MilitaryRecord(
            iin=row["iin"],
            status=self._status(row, today),
            office=row["office"],
            fitness_category=row["fitness_category"],
            rank=row["rank"],
            registered_date=row["registered_date"],
            ticket_number=row["ticket_number"],
        )

    def _existing(self, iin: Iin) -> sqlite3.Row:
        row = self.store.record(iin.value)
        if row is None:
            raise NotFound(f"IIN {iin.masked()} is not on the military register")
        return row

    async def GetRecord(self, request: pb.GetRecordRequest, context: Any) -> pb.MilitaryRecord:
        iin = iin_field(request.iin)
        return self._record(self._existing(iin), self.today())

    async def ListServiceHistory(
        self, request: pb.ListServiceHistoryRequest, context: Any
    ) -> AsyncIterator[pb.ServicePeriod]:
        iin = iin_field(request.iin)
        self._existing(iin)
        for row in self.store.periods(iin.value):
            yield pb.ServicePeriod(
                iin=row["iin"],
                unit=row["unit"],
                from_date=row["from_date"],
                to_date=row["to_date"],
                kind=row["kind"],
            )

    async def Register(self, request: pb.RegisterRequest, context: Any) -> pb.MilitaryRecord:
        iin = iin_field(request.iin)
        office = text_field(request.office, "office")
        today = self.today()
        registered = optional_date_field(request.registered_date, "registered_date") or today
        if registered > today:
            raise InvalidRequest(f"registered_date {registered} is in the future")
        if iin.sex is Sex.FEMALE:
            raise FailedPrecondition(
                "a woman is registered in person by the defence office, with a "
                "military-relevant profession"
            )
        if registered.year < iin.birth_date.year + REGISTRATION_AGE:
            raise FailedPrecondition(
                f"registration starts in the year of the {REGISTRATION_AGE}th birthday "
                f"({iin.birth_date.year + REGISTRATION_AGE})"
            )
        age = _age(iin.birth_date, registered)
        if age >= RESERVE_UNTIL:
            raise FailedPrecondition(f"at {age} a man is past the reserve age limit")
        initial = _CONSCRIPT if age < CONSCRIPT_UNTIL else _RESERVE
        row = self.store.record(iin.value)
        if row is None:
            self.store.register_new(
                (iin.value, initial, office, "", "", registered.isoformat()),
                military_id=initial != _CONSCRIPT,
            )
        else:
            self._check_may_register(row, office, today)
            if row["status"] == _DEREGISTERED:
                status = int(row["status_before"] or initial)
            else:
                status = int(row["status"])  # moving house: the same status, a new office
            if registered.isoformat() < row["registered_date"]:
                raise FailedPrecondition(
                    f"registered_date is before the current registration ({row['registered_date']})"
                )
            self.store.reregister(iin.value, status, office, registered.isoformat())
        return self._record(self._existing(iin), today)

    def _check_may_register(self, row: sqlite3.Row, office: str, today: dt.date) -> None:
        if row["status"] == _NOT_LIABLE:
            raise FailedPrecondition("removed from the register as unfit for service")
        if row["status"] == _DEREGISTERED:
            if row["deregistered_reason"] in ("death", "age"):
                raise FailedPrecondition(
                    f"deregistered on {row['deregistered_date']} ({row['deregistered_reason']})"
                )
            return
        if self.store.in_service(row["iin"], today.isoformat()):
            raise FailedPrecondition("in service: the unit's office keeps the record")
        if row["office"] == office:
            raise AlreadyExists(f"already registered with {office} since {row['registered_date']}")

    async def Deregister(self, request: pb.DeregisterRequest, context: Any) -> pb.MilitaryRecord:
        iin = iin_field(request.iin)
        reason = text_field(request.reason, "reason", max_length=40).lower()
        if reason not in DEREGISTER_REASONS:
            raise InvalidRequest(f"reason must be one of: {', '.join(DEREGISTER_REASONS)}")
        today = self.today()
        day = optional_date_field(request.deregistered_date, "deregistered_date") or today
        if day > today:
            raise InvalidRequest(f"deregistered_date {day} is in the future")
        row = self._existing(iin)
        if row["status"] in (_DEREGISTERED, _NOT_LIABLE):
            raise FailedPrecondition(
                f"not on the register since {row['deregistered_date'] or row['registered_date']}"
            )
        if day.isoformat() < row["registered_date"]:
            raise FailedPrecondition(
                f"deregistered_date is before the registration ({row['registered_date']})"
            )
        if reason != "death" and self.store.in_service(iin.value, day.isoformat()):
            raise FailedPrecondition("in service: a serviceman is discharged before deregistration")
        if reason == "age" and _age(iin.birth_date, day) < RESERVE_UNTIL:
            raise FailedPrecondition(f"deregistration for age starts at {RESERVE_UNTIL}")
        if reason == "health":
            self.store.deregister(iin.value, _NOT_LIABLE, day.isoformat(), reason, "Д")
        else:
            self.store.deregister(
                iin.value, _DEREGISTERED, day.isoformat(), reason, row["fitness_category"]
            )
        return self._record(self._existing(iin), today)
