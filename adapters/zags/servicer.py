"""ЗАГС as a gRPC service: `kz.gov.zags.v1.CivilRegistry`.

Reads of birth, marriage and death acts; writes for the life events. A birth is
registered on an IIN that ГБД ФЛ assigned beforehand (the service centre composes
the two calls): the IIN's date and sex digits must agree with the act.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.sdk.fields import (
    date_field,
    enum_field,
    iin_field,
    optional_date_field,
    optional_iin_field,
    text_field,
)
from adapters.zags.store import CivilStore
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Sex
from govbus.pb.agencies.zags.v1 import zags_pb2 as pb
from govbus.pb.agencies.zags.v1 import zags_pb2_grpc as pb_grpc

__all__ = ["CivilRegistryServicer"]

_SEX: dict[int, Sex] = {pb.SEX_MALE: Sex.MALE, pb.SEX_FEMALE: Sex.FEMALE}
_ADULT_YEARS = 18


def _birth(row: sqlite3.Row) -> pb.BirthRecord:
    return pb.BirthRecord(
        record_id=row["record_id"],
        child_iin=row["child_iin"],
        last_name=row["last_name"],
        first_name=row["first_name"],
        patronymic=row["patronymic"],
        birth_date=row["birth_date"],
        sex=row["sex"],
        birth_place=row["birth_place"],
        mother_iin=row["mother_iin"] or "",
        father_iin=row["father_iin"] or "",
        registered_date=row["registered_date"],
        registry_office=row["registry_office"],
    )


def _marriage(row: sqlite3.Row) -> pb.MarriageRecord:
    dissolved = row["dissolved_date"]
    return pb.MarriageRecord(
        record_id=row["record_id"],
        husband_iin=row["husband_iin"],
        wife_iin=row["wife_iin"],
        marriage_date=row["marriage_date"],
        wife_surname_before=row["wife_surname_before"],
        wife_surname_after=row["wife_surname_after"],
        status=pb.MARRIAGE_STATUS_DISSOLVED if dissolved else pb.MARRIAGE_STATUS_REGISTERED,
        dissolved_date=dissolved or "",
        registry_office=row["registry_office"],
    )


def _death(row: sqlite3.Row) -> pb.DeathRecord:
    return pb.DeathRecord(
        record_id=row["record_id"],
        iin=row["iin"],
        death_date=row["death_date"],
        death_place=row["death_place"],
        registered_date=row["registered_date"],
        registry_office=row["registry_office"],
    )


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class CivilRegistryServicer(pb_grpc.CivilRegistryServicer):
    def __init__(self, store: CivilStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def GetBirthRecord(
        self, request: pb.GetBirthRecordRequest, context: Any
    ) -> pb.BirthRecord:
        iin = iin_field(request.iin)
        row = self.store.birth(iin.value)
        if row is None:
            raise NotFound(f"no birth act for IIN {iin.masked()}")
        return _birth(row)

    async def ListBirthsByParent(
        self, request: pb.ListBirthsByParentRequest, context: Any
    ) -> AsyncIterator[pb.BirthRecord]:
        parent = iin_field(request.parent_iin, "parent_iin")
        for row in self.store.births_by_parent(parent.value):
            yield _birth(row)

    async def ListMarriages(
        self, request: pb.ListMarriagesRequest, context: Any
    ) -> AsyncIterator[pb.MarriageRecord]:
        iin = iin_field(request.iin)
        for row in self.store.marriages(iin.value):
            yield _marriage(row)

    async def GetDeathRecord(
        self, request: pb.GetDeathRecordRequest, context: Any
    ) -> pb.DeathRecord:
        iin = iin_field(request.iin)
        row = self.store.death(iin.value)
        if row is None:
            raise NotFound(f"no death act for IIN {iin.masked()}")
        return _death(row)

    async def RegisterBirth(self, request: pb.RegisterBirthRequest, context: Any) -> pb.BirthRecord:
        child = iin_field(request.child_iin, "child_iin")
        mother = iin_field(request.mother_iin, "mother_iin")
        father = optional_iin_field(request.father_iin, "father_iin")
        last_name = text_field(request.last_name, "last_name", max_length=100)
        first_name = text_field(request.first_name, "first_name", max_length=100)
        patronymic = text_field(request.patronymic, "patronymic", required=False, max_length=100)
        born = date_field(request.birth_date, "birth_date")
        sex = _SEX[enum_field(request.sex, "sex", _SEX, name="sex")]
        place = text_field(request.birth_place, "birth_place")
        registry_office = text_field(request.registry_office, "registry_office")
        today = self.today()
        if born > today:
            raise InvalidRequest(f"birth_date {born} is in the future")
        if child.birth_date != born or child.sex is not sex:
            raise InvalidRequest(
                "child_iin does not match the act: its digits give birth date "
                f"{child.birth_date} and sex {child.sex.value}"
            )
        if mother.sex is not Sex.FEMALE:
            raise InvalidRequest("mother_iin is the IIN of a man")
        if father is not None and father.sex is not Sex.MALE:
            raise InvalidRequest("father_iin is the IIN of a woman")
        existing = self.store.birth(child.value)
        if existing is not None:
            raise AlreadyExists(f"the birth is already registered as {existing['record_id']}")
        mother_death = self.store.death(mother.value)
        if mother_death is not None and mother_death["death_date"] < born.isoformat():
            raise FailedPrecondition("the mother's death is registered before this birth")
        if _age(mother.birth_date, born) < 12:
            raise FailedPrecondition("the mother would be under 12 at the birth")
        record_id = self.store.add_birth(
            (
                child.value,
                last_name,
                first_name,
                patronymic,
                born.isoformat(),
                request.sex,
                place,
                mother.value,
                None if father is None else father.value,
                today.isoformat(),
                registry_office,
            )
        )
        row = self.store.birth(child.value)
        assert row is not None and row["record_id"] == record_id
        return _birth(row)

    def _current_marriage(self, iin: str) -> sqlite3.Row | None:
        """The undissolved marriage whose other spouse is alive, if any."""
        for row in self.store.marriages(iin):
            if row["dissolved_date"]:
                continue
            other = row["wife_iin"] if row["husband_iin"] == iin else row["husband_iin"]
            if self.store.death(other) is None:
                return row
        return None

    def _current_surname(self, wife: str) -> str:
        marriages = self.store.marriages(wife)
        if marriages:
            return str(marriages[-1]["wife_surname_after"])
        birth = self.store.birth(wife)
        return "" if birth is None else str(birth["last_name"])

    async def RegisterMarriage(
        self, request: pb.RegisterMarriageRequest, context: Any
    ) -> pb.MarriageRecord:
        husband = iin_field(request.husband_iin, "husband_iin")
        wife = iin_field(request.wife_iin, "wife_iin")
        married = optional_date_field(request.marriage_date, "marriage_date") or self.today()
        surname_after = text_field(
            request.wife_surname_after, "wife_surname_after", required=False, max_length=100
        )
        registry_office = text_field(request.registry_office, "registry_office")
        if married > self.today():
            raise InvalidRequest(f"marriage_date {married} is in the future")
        if husband.sex is not Sex.MALE or wife.sex is not Sex.FEMALE:
            raise InvalidRequest("husband_iin must be a man's IIN and wife_iin a woman's")
        for role, iin in (("husband", husband), ("wife", wife)):
            if _age(iin.birth_date, married) < _ADULT_YEARS:
                raise FailedPrecondition(f"the {role} is under {_ADULT_YEARS}")
            if self.store.death(iin.value) is not None:
                raise FailedPrecondition(f"the {role}'s death is registered")
            current = self._current_marriage(iin.value)
            if current is not None:
                raise FailedPrecondition(
                    f"the {role} is already married (act {current['record_id']})"
                )
        before = self._current_surname(wife.value)
        record_id = self.store.add_marriage(
            (
                husband.value,
                wife.value,
                married.isoformat(),
                before,
                surname_after or before,
                None,
                registry_office,
            )
        )
        row = self.store.marriage(record_id)
        assert row is not None
        return _marriage(row)

    async def RegisterDeath(self, request: pb.RegisterDeathRequest, context: Any) -> pb.DeathRecord:
        iin = iin_field(request.iin)
        died = date_field(request.death_date, "death_date")
        place = text_field(request.death_place, "death_place")
        registry_office = text_field(request.registry_office, "registry_office")
        if died > self.today():
            raise InvalidRequest(f"death_date {died} is in the future")
        if died < iin.birth_date:
            raise InvalidRequest("death_date is before the birth date the IIN gives")
        existing = self.store.death(iin.value)
        if existing is not None:
            raise AlreadyExists(f"the death is already registered as {existing['record_id']}")
        self.store.add_death(
            (iin.value, died.isoformat(), place, self.today().isoformat(), registry_office)
        )
        row = self.store.death(iin.value)
        assert row is not None
        return _death(row)
