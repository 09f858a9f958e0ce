"""Fill the ГБД ФЛ store from the synthetic world, and the contract samples.

Every person of the world is in the IIN registry, with parents and spouse as the
world links them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.gbdfl.store import INDEXES, INSERT, SCHEMA_VERSION, TABLES
from adapters.population import MaritalStatus, Person, Role, World
from adapters.population.names import patronymic
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Sex
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb

__all__ = ["ISSUED_BY", "contract_samples", "populate", "sex_code"]

ISSUED_BY = "МВД РК"
MARITAL = {
    MaritalStatus.SINGLE: pb.MARITAL_STATUS_SINGLE,
    MaritalStatus.MARRIED: pb.MARITAL_STATUS_MARRIED,
    MaritalStatus.DIVORCED: pb.MARITAL_STATUS_DIVORCED,
    MaritalStatus.WIDOWED: pb.MARITAL_STATUS_WIDOWED,
}


def sex_code(sex: Sex) -> int:
    return pb.SEX_MALE if sex is Sex.MALE else pb.SEX_FEMALE


def _rows(world: World) -> Iterator[tuple[Any, ...]]:
    for household in world.households():
        iins = {p.index: p.iin for p in household.members}
        for p in household.members:
            doc = p.document
            yield (
                p.iin,
                p.last_name,
                p.first_name,
                p.patronymic,
                p.birth_date.isoformat(),
                sex_code(p.sex),
                p.birth_place.name,
                p.nationality,
                "KZ",
                None if p.death_date is None else p.death_date.isoformat(),
                MARITAL[p.marital_status],
                None if doc is None else doc.number,
                None if doc is None else doc.issued.isoformat(),
                None if doc is None else doc.expires.isoformat(),
                p.birth_record_id,
                p.death_record_id,
                None if p.father is None else iins[p.father],
                None if p.mother is None else iins[p.mother],
                None if p.spouse is None else iins[p.spouse],
                None,
            )


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(INSERT, _rows(world))


def _family(world: World) -> tuple[Person, Person, Person]:
    """A living married couple with a child, for samples."""
    for household in world.households():
        members = household.members
        marriage = household.marriage
        if (
            len(members) >= 3
            and all(p.alive for p in members[:3])
            and marriage is not None
            and marriage.divorced is None
        ):
            return members[0], members[1], members[2]
    raise LookupError("the world has no living family with a child: make it bigger")


def _living_single(world: World) -> Person:
    for person in world.persons():
        if person.role is Role.SINGLE and person.alive:
            return person
    raise LookupError("the world has no living single adult: make it bigger")


def contract_samples(world: World) -> ContractSamples:
    father, mother, child = _family(world)
    single = _living_single(world)
    newborn = pb.AssignIinRequest(
        last_name=father.last_name,
        first_name="Алихан",
        patronymic=patronymic(father.first_name, male=True),
        birth_date=world.today.isoformat(),
        sex=pb.SEX_MALE,
        birth_place=father.address.city.name,
        nationality=father.nationality,
        mother_iin=mother.iin,
        father_iin=father.iin,
        application_id=f"contract-{world.seed}-{mother.index}",
    )
    return ContractSamples(
        valid={
            "GetPerson": [pb.GetPersonRequest(iin=father.iin)],
            "SearchPersons": [
                pb.SearchPersonsRequest(
                    last_name=child.last_name,
                    first_name=child.first_name,
                    birth_date=child.birth_date.isoformat(),
                )
            ],
            "ListRelatives": [pb.ListRelativesRequest(iin=mother.iin)],
            "AssignIin": [newborn],
            "ChangeLastName": [
                pb.ChangeLastNameRequest(
                    iin=single.iin,
                    new_last_name=single.last_name + "-Ким",
                    basis_record_id="M9000000001",
                )
            ],
            "RegisterDeath": [
                pb.RegisterDeathRequest(
                    iin=single.iin,
                    death_date=world.today.isoformat(),
                    death_record_id="D9000000001",
                )
            ],
        },
        unknown={"SearchPersons": [pb.SearchPersonsRequest(last_name="Несуществующий")]},
    )
