"""The health registry as a gRPC service: `kz.gov.health.v1.HealthRegistry`.

Polyclinic attachment (read; attach, e.g. a newborn or after moving house) and
vaccinations (list; record a dose), and the list of clinics. Rules:

- a person is attached to one clinic at a time; a new attachment ends the current
  one. The free choice of a clinic is once a year: a change within a year of the
  last one is refused unless the new clinic is in another city (moving house);
- nothing is dated before the person's birth (the IIN gives it) or in the future;
- vaccine codes come from the national calendar (`vaccines.VACCINES`); a dose is
  recorded once, after the previous dose of the same vaccine and at least four
  weeks after it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.health.data import district_of
from adapters.health.store import HealthStore
from adapters.health.vaccines import MIN_INTERVAL_DAYS, VACCINES
from adapters.sdk.fields import iin_field, optional_date_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Iin
from govbus.pb.agencies.health.v1 import health_pb2 as pb
from govbus.pb.agencies.health.v1 import health_pb2_grpc as pb_grpc

__all__ = ["HealthRegistryServicer"]

_ADULT = 18


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _year_after(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return dt.date(day.year + 1, 3, 1)


def _vaccination(row: sqlite3.Row) -> pb.Vaccination:
    return pb.Vaccination(
        iin=row["iin"],
        vaccine_code=row["vaccine_code"],
        vaccine_name=VACCINES[row["vaccine_code"]].name,
        dose=row["dose"],
        given_date=row["given_date"],
        clinic_id=row["clinic_id"],
    )


class HealthRegistryServicer(pb_grpc.HealthRegistryServicer):
    def __init__(self, store: HealthStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _attachment(self, iin: Iin) -> sqlite3.Row | None:
        return self.store.attachment(iin.value, _age(iin.birth_date, self.today()) < _ADULT)

    def _reply(self, iin: Iin, row: sqlite3.Row) -> pb.Attachment:
        paediatric = _age(iin.birth_date, self.today()) < _ADULT
        role = "педиатр" if paediatric else "врач общей практики"
        doctor = f"{row['doctor']}, {role}, участок №{row['district']}" if row["doctor"] else ""
        return pb.Attachment(
            iin=row["iin"],
            clinic_id=row["clinic_id"],
            clinic_name=row["clinic_name"],
            attached_date=row["attached_date"],
            district_doctor=doctor,
        )

    async def GetAttachment(self, request: pb.GetAttachmentRequest, context: Any) -> pb.Attachment:
        iin = iin_field(request.iin)
        row = self._attachment(iin)
        if row is None:
            raise NotFound(f"IIN {iin.masked()} is not attached to a clinic")
        return self._reply(iin, row)

    async def ListVaccinations(
        self, request: pb.ListVaccinationsRequest, context: Any
    ) -> AsyncIterator[pb.Vaccination]:
        iin = iin_field(request.iin)
        for row in self.store.vaccinations(iin.value):
            yield _vaccination(row)

    async def ListClinics(
        self, request: pb.ListClinicsRequest, context: Any
    ) -> AsyncIterator[pb.Clinic]:
        city = text_field(request.city, "city", required=False, max_length=100) or None
        rows = self.store.clinics(city)
        if not rows:
            raise NotFound(f"no clinics are registered in {city!r}")
        for row in rows:
            yield pb.Clinic(clinic_id=row["id"], name=row["name"], city=row["city"], rca=row["rca"])

    def _clinic(self, clinic_id: str) -> sqlite3.Row:
        row = self.store.clinic(clinic_id)
        if row is None:
            raise NotFound(f"no clinic {clinic_id}")
        return row

    def _date(self, value: str, field: str, iin: Iin) -> dt.date:
        today = self.today()
        day = optional_date_field(value, field) or today
        if day > today:
            raise InvalidRequest(f"{field} {day} is in the future")
        if day < iin.birth_date:
            raise FailedPrecondition(f"{field} is before the person's birth date")
        return day

    async def AttachToClinic(
        self, request: pb.AttachToClinicRequest, context: Any
    ) -> pb.Attachment:
        iin = iin_field(request.iin)
        clinic_id = text_field(request.clinic_id, "clinic_id", max_length=32)
        attached = self._date(request.attached_date, "attached_date", iin)
        clinic = self._clinic(clinic_id)
        current = self._attachment(iin)
        if current is not None:
            if current["clinic_id"] == clinic_id:
                raise AlreadyExists(
                    f"already attached to {clinic_id} since {current['attached_date']}"
                )
            since = dt.date.fromisoformat(current["attached_date"])
            if attached < since:
                raise FailedPrecondition(
                    f"attached_date is before the current attachment's start {since}"
                )
            if attached < _year_after(since) and current["city"] == clinic["city"]:
                raise FailedPrecondition(
                    f"a clinic may be chosen once a year: the current attachment is from {since} "
                    "(moving to another city is the exception)"
                )
        self.store.attach(
            (iin.value, clinic_id, district_of(iin.value), attached.isoformat()),
            None if current is None else int(current["id"]),
        )
        row = self._attachment(iin)
        assert row is not None
        return self._reply(iin, row)

    async def RecordVaccination(
        self, request: pb.RecordVaccinationRequest, context: Any
    ) -> pb.Vaccination:
        iin = iin_field(request.iin)
        code = text_field(request.vaccine_code, "vaccine_code", max_length=16).upper()
        vaccine = VACCINES.get(code)
        if vaccine is None:
            raise InvalidRequest(
                f"vaccine_code {code!r} is not in the national calendar "
                f"({', '.join(sorted(VACCINES))})"
            )
        if not 1 <= request.dose <= vaccine.doses:
            raise InvalidRequest(f"dose of {code} must be 1…{vaccine.doses}")
        clinic_id = text_field(request.clinic_id, "clinic_id", max_length=32)
        given = self._date(request.given_date, "given_date", iin)
        self._clinic(clinic_id)
        if self.store.dose(iin.value, code, request.dose) is not None:
            raise AlreadyExists(f"dose {request.dose} of {code} is already recorded")
        if request.dose > 1:
            earlier = self.store.dose(iin.value, code, request.dose - 1)
            if earlier is None:
                raise FailedPrecondition(f"dose {request.dose - 1} of {code} is not recorded")
            due = dt.date.fromisoformat(earlier["given_date"]) + dt.timedelta(
                days=MIN_INTERVAL_DAYS
            )
            if given < due:
                raise FailedPrecondition(
                    f"dose {request.dose} of {code} is due from {due} "
                    f"({MIN_INTERVAL_DAYS} days after the previous one)"
                )
        self.store.record_dose((iin.value, code, request.dose, given.isoformat(), clinic_id))
        row = self.store.dose(iin.value, code, request.dose)
        assert row is not None
        return _vaccination(row)
