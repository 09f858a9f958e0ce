"""Fill the education store from the synthetic world, and the contract samples.

Every city has its kindergartens and schools (the world's institutions, whose
addresses are in the address register). Living children under 6 are in the
kindergarten queue of the kindergarten serving their street (waiting, or enrolled
from age 2); children of 6 to 17 are enrolled in the school serving their street.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.education.store import (
    ENROLMENT_INSERT,
    INDEXES,
    INSTITUTION_INSERT,
    QUEUE_INSERT,
    SCHEMA_VERSION,
    TABLES,
)
from adapters.population import InstitutionKind, Person, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Iin, Sex
from govbus.pb.agencies.education.v1 import education_pb2 as pb

__all__ = ["KINDERGARTEN", "SCHOOL", "contract_samples", "populate", "queue_rank"]

KINDERGARTEN = InstitutionKind.KINDERGARTEN.value
SCHOOL = InstitutionKind.SCHOOL.value
_QUEUE_AGE = 6
_SCHOOL_END_AGE = 18
_LARGE_FAMILY_CHILDREN = 4


def queue_rank(priority: int) -> int:
    return 1 if priority in (pb.PRIORITY_CATEGORY_UNSPECIFIED, pb.PRIORITY_CATEGORY_NONE) else 0


def _institutions(world: World) -> Iterator[tuple[Any, ...]]:
    for kind in (InstitutionKind.KINDERGARTEN, InstitutionKind.SCHOOL):
        for i in world.institutions(kind):
            yield i.id, kind.value, i.name, i.city.name, i.address.rca, i.capacity


def _queue(world: World) -> Iterator[tuple[Any, ...]]:
    today = world.today
    for household in world.households():
        children = [p for p in household.members if p.mother is not None]
        large = len(children) >= _LARGE_FAMILY_CHILDREN
        for child in children:
            if not child.alive or child.age(today) >= _QUEUE_AGE:
                continue
            draw = world.draw("kindergarten", child.index)
            applied = child.birth_date + dt.timedelta(days=draw.between(10, 200))
            applied = min(applied, today)
            enrolled = child.age(today) >= 2 and draw.chance(300)
            priority = pb.PRIORITY_CATEGORY_LARGE_FAMILY if large else pb.PRIORITY_CATEGORY_NONE
            kindergarten = world.institution_for(InstitutionKind.KINDERGARTEN, child.address)
            mother = household.members[1]
            yield (
                child.iin,
                mother.iin,
                kindergarten.id,
                kindergarten.city.name,
                applied.isoformat(),
                _years_after(child.birth_date, 3).isoformat(),
                pb.QUEUE_STATUS_ENROLLED if enrolled else pb.QUEUE_STATUS_WAITING,
                priority,
                queue_rank(priority),
            )


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _enrolments(world: World) -> Iterator[tuple[Any, ...]]:
    today = world.today
    for p in world.persons():
        if p.mother is None or not p.alive:
            continue
        age = p.age(today)
        if not _QUEUE_AGE <= age < _SCHOOL_END_AGE:
            continue
        school = world.institution_for(InstitutionKind.SCHOOL, p.address)
        grade = min(11, age - _QUEUE_AGE + 1)
        school_year = today.year if today.month >= 9 else today.year - 1
        since = dt.date(school_year - grade + 1, 9, 1)
        yield p.iin, school.id, grade, since.isoformat()


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(INSTITUTION_INSERT, _institutions(world))
        conn.executemany(QUEUE_INSERT, _queue(world))
        conn.executemany(ENROLMENT_INSERT, _enrolments(world))


def _first(world: World, test: Any) -> Person:
    for person in world.persons():
        if test(person):
            return person
    raise LookupError("the world has no such person: make it bigger")


def contract_samples(world: World) -> ContractSamples:
    today = world.today
    toddler = _first(world, lambda p: p.mother is not None and p.alive and p.age(today) < 5)
    pupil = _first(world, lambda p: p.mother is not None and p.alive and 7 <= p.age(today) < 17)
    mother = world.person(toddler.mother) if toddler.mother is not None else toddler
    kindergarten = world.institution_for(InstitutionKind.KINDERGARTEN, toddler.address)
    # A child born on the world's reference date: not in the queue yet.
    newborn = Iin.build(today, Sex.MALE, 9100 + world.seed % 400 * 2) or Iin.build(
        today, Sex.MALE, 9101 + world.seed % 400 * 2
    )
    assert newborn is not None
    return ContractSamples(
        valid={
            "GetQueueEntry": [pb.GetQueueEntryRequest(child_iin=toddler.iin)],
            "ListKindergartens": [pb.ListKindergartensRequest(city=toddler.address.city.name)],
            "GetSchoolEnrolment": [pb.GetSchoolEnrolmentRequest(iin=pupil.iin)],
            "EnqueueKindergarten": [
                pb.EnqueueKindergartenRequest(
                    child_iin=newborn.value,
                    applicant_iin=mother.iin,
                    kindergarten_id=kindergarten.id,
                    priority=pb.PRIORITY_CATEGORY_NONE,
                )
            ],
            "WithdrawFromQueue": [
                pb.WithdrawFromQueueRequest(child_iin=newborn.value, reason="переезд")
            ],
        },
        unknown={"ListKindergartens": [pb.ListKindergartensRequest(city="Атлантида")]},
    )
