"""ГБД ФЛ as a gRPC service: `kz.gov.gbdfl.v1.PersonRegistry`.

Reads by IIN and name; writes for the life events: a new IIN for a newborn, a new
surname after marriage, death. Identifiers are checked first (INVALID_IDENTIFIER),
then the other fields (INVALID_REQUEST), then the registry's rules
(NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS). The servicer never calls another
registry: composite life events live in the service centre.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.gbdfl.data import ISSUED_BY
from adapters.gbdfl.store import PersonStore
from adapters.sdk.fields import (
    date_field,
    enum_field,
    iin_field,
    limit_field,
    optional_date_field,
    optional_iin_field,
    text_field,
)
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Iin, Sex
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2_grpc as pb_grpc

__all__ = ["PersonRegistryServicer"]

_SEX: dict[int, Sex] = {pb.SEX_MALE: Sex.MALE, pb.SEX_FEMALE: Sex.FEMALE}
_MIN_PARENT_AGE_YEARS = 12


def _person(row: sqlite3.Row) -> pb.Person:
    person = pb.Person(
        iin=row["iin"],
        last_name=row["last_name"],
        first_name=row["first_name"],
        patronymic=row["patronymic"],
        birth_date=row["birth_date"],
        sex=row["sex"],
        birth_place=row["birth_place"],
        nationality=row["nationality"],
        citizenship=row["citizenship"],
        life_status=pb.LIFE_STATUS_DECEASED if row["death_date"] else pb.LIFE_STATUS_ALIVE,
        death_date=row["death_date"] or "",
        marital_status=row["marital_status"],
        birth_record_id=row["birth_record_id"] or "",
    )
    if row["doc_number"]:
        person.document.CopyFrom(
            pb.IdentityDocument(
                number=row["doc_number"],
                issued_date=row["doc_issued"],
                expiry_date=row["doc_expires"],
                issued_by=ISSUED_BY,
            )
        )
    return person


def _relative(relation: pb.Relation, row: sqlite3.Row) -> pb.Relative:
    return pb.Relative(
        relation=relation,
        iin=row["iin"],
        last_name=row["last_name"],
        first_name=row["first_name"],
        patronymic=row["patronymic"],
        birth_date=row["birth_date"],
        life_status=pb.LIFE_STATUS_DECEASED if row["death_date"] else pb.LIFE_STATUS_ALIVE,
    )


class PersonRegistryServicer(pb_grpc.PersonRegistryServicer):
    def __init__(self, store: PersonStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _existing(self, iin: Iin, what: str = "person") -> sqlite3.Row:
        row = self.store.get(iin.value)
        if row is None:
            raise NotFound(f"no {what} with IIN {iin.masked()} in ГБД ФЛ")
        return row

    async def GetPerson(self, request: pb.GetPersonRequest, context: Any) -> pb.Person:
        return _person(self._existing(iin_field(request.iin)))

    async def SearchPersons(
        self, request: pb.SearchPersonsRequest, context: Any
    ) -> AsyncIterator[pb.Person]:
        last_name = text_field(request.last_name, "last_name")
        first_name = text_field(request.first_name, "first_name", required=False)
        born = optional_date_field(request.birth_date, "birth_date")
        limit = limit_field(request.limit)
        rows = self.store.search(last_name, first_name, born.isoformat() if born else "", limit)
        for row in rows:
            yield _person(row)

    async def ListRelatives(
        self, request: pb.ListRelativesRequest, context: Any
    ) -> AsyncIterator[pb.Relative]:
        row = self._existing(iin_field(request.iin))
        related: list[tuple[pb.Relation, str]] = []
        if row["father_iin"]:
            related.append((pb.RELATION_FATHER, row["father_iin"]))
        if row["mother_iin"]:
            related.append((pb.RELATION_MOTHER, row["mother_iin"]))
        if row["spouse_iin"]:
            former = row["marital_status"] == pb.MARITAL_STATUS_DIVORCED
            related.append(
                (pb.RELATION_FORMER_SPOUSE if former else pb.RELATION_SPOUSE, row["spouse_iin"])
            )
        found = (
            {r["iin"]: r for r in self.store.many([iin for _, iin in related])} if related else {}
        )
        for relation, iin in related:
            if iin in found:
                yield _relative(relation, found[iin])
        for child in self.store.children(row["iin"]):
            yield _relative(pb.RELATION_CHILD, child)

    async def AssignIin(self, request: pb.AssignIinRequest, context: Any) -> pb.Person:
        mother_iin = iin_field(request.mother_iin, "mother_iin")
        father_iin = optional_iin_field(request.father_iin, "father_iin")
        last_name = text_field(request.last_name, "last_name", max_length=100)
        first_name = text_field(request.first_name, "first_name", max_length=100)
        patronymic = text_field(request.patronymic, "patronymic", required=False, max_length=100)
        born = date_field(request.birth_date, "birth_date")
        sex_value = enum_field(request.sex, "sex", _SEX, name="sex")
        birth_place = text_field(request.birth_place, "birth_place")
        nationality = text_field(request.nationality, "nationality", required=False)
        application_id = text_field(request.application_id, "application_id", max_length=64)
        today = self.today()
        if born > today:
            raise InvalidRequest(f"birth_date {born} is in the future")
        if born.year < 1900:
            raise InvalidRequest("birth_date before 1900 cannot get an IIN here")

        existing = self.store.by_application(application_id)
        if existing is not None:
            same = (
                existing["birth_date"] == born.isoformat()
                and existing["sex"] == sex_value
                and existing["last_name"] == last_name
                and existing["first_name"] == first_name
                and existing["mother_iin"] == mother_iin.value
            )
            if not same:
                raise AlreadyExists(
                    f"application {application_id} already got an IIN for another person"
                )
            return _person(existing)

        mother = self._existing(mother_iin, "mother")
        if mother["sex"] != pb.SEX_FEMALE:
            raise FailedPrecondition("mother_iin names a man in ГБД ФЛ")
        _check_parent_age(mother, born, "mother")
        if father_iin is not None:
            father = self._existing(father_iin, "father")
            if father["sex"] != pb.SEX_MALE:
                raise FailedPrecondition("father_iin names a woman in ГБД ФЛ")
            _check_parent_age(father, born, "father")

        iin = self._allocate(born, _SEX[sex_value])
        self.store.insert(
            {
                "iin": iin,
                "last_name": last_name,
                "first_name": first_name,
                "patronymic": patronymic,
                "birth_date": born.isoformat(),
                "sex": sex_value,
                "birth_place": birth_place,
                "nationality": nationality or mother["nationality"],
                "citizenship": "KZ",
                "marital_status": pb.MARITAL_STATUS_SINGLE,
                "father_iin": None if father_iin is None else father_iin.value,
                "mother_iin": mother_iin.value,
                "application_id": application_id,
            }
        )
        return _person(self._existing(Iin(iin)))

    def _allocate(self, born: dt.date, sex: Sex) -> str:
        """A free IIN for the birth date and sex; serials are taken from 9999 downwards,
        away from the synthetic world's low serials."""
        century_and_sex = (born.year // 100 - 18) * 2 + (1 if sex is Sex.MALE else 2)
        prefix = f"{born:%y%m%d}{century_and_sex}"
        used = self.store.used_serials(prefix)
        for serial in range(9999, -1, -1):
            if f"{serial:04d}" in used:
                continue
            built = Iin.build(born, sex, serial)
            if built is not None:
                return built.value
        raise FailedPrecondition(f"no IIN serial is left for persons born on {born}")

    async def ChangeLastName(self, request: pb.ChangeLastNameRequest, context: Any) -> pb.Person:
        iin = iin_field(request.iin)
        new = text_field(request.new_last_name, "new_last_name", max_length=100)
        basis = text_field(request.basis_record_id, "basis_record_id", max_length=64)
        row = self._existing(iin)
        if row["death_date"]:
            raise FailedPrecondition("the person is deceased")
        if row["last_name"] == new:
            raise FailedPrecondition("the person already has this surname")
        self.store.change_last_name(
            iin.value, row["last_name"], new, basis, self.today().isoformat()
        )
        return _person(self._existing(iin))

    async def RegisterDeath(self, request: pb.RegisterDeathRequest, context: Any) -> pb.Person:
        iin = iin_field(request.iin)
        died = date_field(request.death_date, "death_date")
        record = text_field(request.death_record_id, "death_record_id", max_length=64)
        row = self._existing(iin)
        if row["death_date"]:
            raise AlreadyExists(f"the death is already registered ({row['death_record_id']})")
        if died > self.today():
            raise InvalidRequest(f"death_date {died} is in the future")
        if died.isoformat() < row["birth_date"]:
            raise FailedPrecondition("death_date is before the birth date")
        widowed = None
        if row["spouse_iin"] and row["marital_status"] == pb.MARITAL_STATUS_MARRIED:
            widowed = row["spouse_iin"]
        self.store.register_death(
            iin.value, died.isoformat(), record, widowed, pb.MARITAL_STATUS_WIDOWED
        )
        return _person(self._existing(iin))


def _check_parent_age(parent: sqlite3.Row, born: dt.date, role: str) -> None:
    parent_born = dt.date.fromisoformat(parent["birth_date"])
    if (born - parent_born).days < _MIN_PARENT_AGE_YEARS * 365:
        raise FailedPrecondition(f"the {role} would be under {_MIN_PARENT_AGE_YEARS} at the birth")
    if parent["death_date"] and parent["death_date"] < (born - dt.timedelta(days=300)).isoformat():
        raise FailedPrecondition(f"the {role} died before the child could be born")
