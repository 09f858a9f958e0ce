"""Fill the ЗАГС store from the synthetic world, and the contract samples.

Every person has a birth act (registered in the city of birth, parents as the world
links them); every household couple a marriage act, dissolved if they divorced;
every deceased person a death act.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.population import Person, Role, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from adapters.zags.store import (
    BIRTH_INSERT,
    DEATH_INSERT,
    INDEXES,
    MARRIAGE_INSERT,
    SCHEMA_VERSION,
    TABLES,
)
from govbus.ids import Iin, Sex
from govbus.pb.agencies.zags.v1 import zags_pb2 as pb

__all__ = ["contract_samples", "office", "populate"]


def office(city_name: str) -> str:
    return f"Отдел ЗАГС г. {city_name}"


def _births(world: World) -> Iterator[tuple[Any, ...]]:
    for household in world.households():
        iins = {p.index: p.iin for p in household.members}
        for p in household.members:
            delay = world.draw("zags-registered", p.index).between(1, 30)
            yield (
                p.birth_record_id,
                p.iin,
                p.last_name if p.role is not Role.SPOUSE else _maiden(household.marriage, p),
                p.first_name,
                p.patronymic,
                p.birth_date.isoformat(),
                pb.SEX_MALE if p.sex is Sex.MALE else pb.SEX_FEMALE,
                p.birth_place.name,
                None if p.mother is None else iins[p.mother],
                None if p.father is None else iins[p.father],
                (p.birth_date + dt.timedelta(days=delay)).isoformat(),
                office(p.birth_place.name),
            )


def _maiden(marriage: Any, person: Person) -> str:
    return str(marriage.wife_surname_before) if marriage is not None else person.last_name


def _marriages(world: World) -> Iterator[tuple[Any, ...]]:
    for household in world.households():
        m = household.marriage
        if m is None:
            continue
        husband, wife = household.members[0], household.members[1]
        yield (
            m.record_id,
            husband.iin,
            wife.iin,
            m.date.isoformat(),
            m.wife_surname_before,
            m.wife_surname_after,
            None if m.divorced is None else m.divorced.isoformat(),
            office(m.city.name),
        )


def _deaths(world: World) -> Iterator[tuple[Any, ...]]:
    for p in world.persons():
        if p.death_date is None:
            continue
        delay = world.draw("zags-death", p.index).between(1, 10)
        yield (
            p.death_record_id,
            p.iin,
            p.death_date.isoformat(),
            p.address.city.name,
            (p.death_date + dt.timedelta(days=delay)).isoformat(),
            office(p.address.city.name),
        )


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(BIRTH_INSERT, _births(world))
        conn.executemany(MARRIAGE_INSERT, _marriages(world))
        conn.executemany(DEATH_INSERT, _deaths(world))


def contract_samples(world: World) -> ContractSamples:
    family = next(
        h
        for h in world.households()
        if len(h.members) >= 3 and all(p.alive for p in h.members[:2]) and h.marriage
    )
    father, mother, child = family.members[:3]
    dead = next(p for p in world.persons() if p.death_date is not None)
    # Two living singles of opposite sex, adults, to marry; and a newborn to register.
    singles = [p for p in world.persons() if p.role is Role.SINGLE and p.alive]
    groom = next(p for p in singles if p.sex is Sex.MALE)
    bride = next(p for p in singles if p.sex is Sex.FEMALE)
    newborn = Iin.build(world.today, Sex.FEMALE, 9000 + world.seed % 500 * 2)
    if newborn is None:
        newborn = Iin.build(world.today, Sex.FEMALE, 9001 + world.seed % 500 * 2)
    assert newborn is not None
    return ContractSamples(
        valid={
            "GetBirthRecord": [pb.GetBirthRecordRequest(iin=child.iin)],
            "ListBirthsByParent": [pb.ListBirthsByParentRequest(parent_iin=mother.iin)],
            "ListMarriages": [pb.ListMarriagesRequest(iin=father.iin)],
            "GetDeathRecord": [pb.GetDeathRecordRequest(iin=dead.iin)],
            "RegisterBirth": [
                pb.RegisterBirthRequest(
                    child_iin=newborn.value,
                    last_name=father.last_name + "а",
                    first_name="Аяла",
                    patronymic=father.first_name + "овна",
                    birth_date=world.today.isoformat(),
                    sex=pb.SEX_FEMALE,
                    birth_place=mother.address.city.name,
                    mother_iin=mother.iin,
                    father_iin=father.iin,
                    registry_office=office(mother.address.city.name),
                )
            ],
            "RegisterMarriage": [
                pb.RegisterMarriageRequest(
                    husband_iin=groom.iin,
                    wife_iin=bride.iin,
                    marriage_date=world.today.isoformat(),
                    wife_surname_after=groom.last_name + "а",
                    registry_office=office(groom.address.city.name),
                )
            ],
            "RegisterDeath": [
                pb.RegisterDeathRequest(
                    iin=groom.iin,
                    death_date=world.today.isoformat(),
                    death_place=groom.address.city.name,
                    registry_office=office(groom.address.city.name),
                )
            ],
        },
    )
