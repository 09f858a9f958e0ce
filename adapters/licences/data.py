"""Fill the driving licence store from the synthetic world, and the contract samples.

Who drives: nine vehicle owners in ten (the world's `vehicles_of`), and among the
other adults about three men in ten and one woman in eleven. A holder's first licence
comes some years after 18 (and by the registration of their first car); it is
valid ten years and renewed around its expiry — a few let it lapse — or replaced
earlier when lost, or when a wife takes her husband's surname at marriage (the
ЗАГС act's date). About 1.5 % of holders are deprived of the right to drive at
the world's date, 3 % were in the past (the courts register holds those cases:
`adapters.courts.data` reads `deprivations_of`). A deceased holder's licence is
annulled on the day of death.

`driving_record(world, person)` is the pure function all of this comes from; the
courts and Kazpost adapters derive their own records from it, so a court's
deprivation case or a delivered licence matches this register.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.licences.store import (
    DEPRIVATION_INSERT,
    INDEXES,
    LICENCE_INSERT,
    SCHEMA_VERSION,
    TABLES,
    format_number,
)
from adapters.population import Draw, Person, Role, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Sex
from govbus.pb.agencies.licences.v1 import licences_pb2 as pb

__all__ = [
    "CATEGORIES",
    "MIN_AGE",
    "NEEDS",
    "REPLACE_REASONS",
    "VALID_YEARS",
    "Deprivation",
    "DrivingRecord",
    "IssuedLicence",
    "anniversary",
    "contract_samples",
    "deprivations_of",
    "driving_record",
    "populate",
]

#: Categories in the order they are printed on the licence.
CATEGORIES = ("A", "A1", "B", "B1", "BE", "C", "C1", "CE", "D", "D1", "DE")
#: Minimum age for each category (Kazakhstan: motorcycles and light vehicles from 16,
#: cars and lorries from 18, buses from 21).
MIN_AGE = {
    "A": 18,
    "A1": 16,
    "B": 18,
    "B1": 16,
    "BE": 18,
    "C": 18,
    "C1": 18,
    "CE": 18,
    "D": 21,
    "D1": 21,
    "DE": 21,
}
#: A trailer category needs its base category.
NEEDS = {"BE": "B", "CE": "C", "DE": "D"}
REPLACE_REASONS = ("expired", "lost", "stolen", "damaged", "name changed")
VALID_YEARS = 10
_MAX_CHAIN = 8  # licence serials of the world: 8 per person
_DEPRIVATION_DAYS = ((350, 183), (250, 365), (150, 730), (250, 2557))  # (weight ‰, length)
_DEPRIVATION_CUMULATIVE = (350, 600, 750, 1000)


@dataclass(frozen=True, slots=True)
class IssuedLicence:
    number: str
    categories: tuple[str, ...]
    issued: dt.date
    expires: dt.date
    replaced_by: str | None
    replace_reason: str | None


@dataclass(frozen=True, slots=True)
class Deprivation:
    start: dt.date
    until: dt.date


@dataclass(frozen=True, slots=True)
class DrivingRecord:
    iin: str
    licences: tuple[IssuedLicence, ...]
    deprivations: tuple[Deprivation, ...]
    annulled: dt.date | None  # the holder's death


def anniversary(day: dt.date, years: int) -> dt.date:
    """The calendar date `years` after `day` (29 February → 1 March)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def _categories(draw: Draw, male: bool, age_at_issue: int) -> tuple[str, ...]:
    chosen = {"B"}
    if draw.chance(60 if male else 10):
        chosen.add("A")
    if male and draw.chance(150):
        chosen.add("C")
        if draw.chance(300):
            chosen.add("CE")
    if male and age_at_issue >= MIN_AGE["D"] and draw.chance(40):
        chosen.add("D")
    if draw.chance(30 if male else 5):
        chosen.add("BE")
    return tuple(c for c in CATEGORIES if c in chosen)


def _name_change(world: World, person: Person) -> dt.date | None:
    """The day a wife who took her husband's surname changed her licence, if she did."""
    if person.role is not Role.SPOUSE:
        return None
    marriage = world.household_of(person.index).marriage
    if marriage is None or marriage.wife_surname_before == marriage.wife_surname_after:
        return None
    return marriage.date + dt.timedelta(
        days=world.draw("licences-name", person.index).between(10, 90)
    )


def _first_licence(world: World, person: Person) -> tuple[dt.date, Draw] | None:
    """The day of a person's first licence (None: never licensed), and the draw to go on with."""
    end = person.death_date or world.today
    if person.age(end) < 18:
        return None
    draw = world.draw("licences", person.index)
    owns = person.vehicles > 0
    if not draw.chance(900 if owns else 280 if person.sex is Sex.MALE else 90):
        return None
    adult = anniversary(person.birth_date, 18)
    span = max(0, (end - adult).days - 1)
    first = adult + dt.timedelta(days=draw.between(0, min(span, 15 * 365)))
    if owns:
        first = min(first, world.vehicles_of(person)[0].registered)
    return first, draw


def _deprivations(world: World, person: Person, first: dt.date) -> tuple[Deprivation, ...]:
    draw = world.draw("licences-deprivation", person.index)
    end = person.death_date or world.today
    roll = draw.below(1000)
    length = _DEPRIVATION_DAYS[draw.weighted(_DEPRIVATION_CUMULATIVE)][1]
    earliest = first + dt.timedelta(days=60)
    if roll < 15:
        # In force at the world's date.
        start = world.today - dt.timedelta(days=draw.between(30, min(length - 30, 1500)))
        if earliest <= start < end:
            return (Deprivation(start, start + dt.timedelta(days=length)),)
    elif roll < 45:
        latest = end - dt.timedelta(days=length + 30)
        if earliest < latest:
            start = earliest + dt.timedelta(days=draw.between(0, (latest - earliest).days))
            return (Deprivation(start, start + dt.timedelta(days=length)),)
    return ()


def deprivations_of(world: World, person: Person) -> tuple[Deprivation, ...]:
    """The deprivations of the right to drive of a person (cheaper than `driving_record`)."""
    found = _first_licence(world, person)
    return () if found is None else _deprivations(world, person, found[0])


def driving_record(world: World, person: Person) -> DrivingRecord | None:
    """Everything the licence register holds about one person (None: never licensed)."""
    found = _first_licence(world, person)
    if found is None:
        return None
    first, draw = found
    end = person.death_date or world.today
    name_change = _name_change(world, person)
    categories = _categories(draw, person.sex is Sex.MALE, person.age(first))
    licences: list[IssuedLicence] = []
    serial = person.index * _MAX_CHAIN
    issued = first
    while True:
        expires = anniversary(issued, VALID_YEARS)
        following: dt.date | None = None
        reason = ""
        if name_change is not None and issued < name_change < expires:
            following, reason, name_change = name_change, "name changed", None
        elif draw.chance(40):
            following, reason = issued + dt.timedelta(days=draw.between(200, 3400)), "lost"
        elif draw.chance(920):
            following = expires + dt.timedelta(days=draw.between(-60, 120))
            reason = "expired"
        last = following is None or following >= end or len(licences) == _MAX_CHAIN - 1
        number = format_number(serial + len(licences))
        if last:
            licences.append(IssuedLicence(number, categories, issued, expires, None, None))
            break
        assert following is not None
        next_number = format_number(serial + len(licences) + 1)
        licences.append(IssuedLicence(number, categories, issued, expires, next_number, reason))
        issued = following
    return DrivingRecord(
        person.iin, tuple(licences), _deprivations(world, person, first), person.death_date
    )


def _licences(world: World, deprivations: list[tuple[str, str, str]]) -> Iterator[tuple[Any, ...]]:
    """Licence rows, person by person; the (few) deprivations are collected on the side."""
    for person in world.persons():
        record = driving_record(world, person)
        if record is None:
            continue
        annulled = None if record.annulled is None else record.annulled.isoformat()
        for licence in record.licences:
            yield (
                licence.number,
                person.iin,
                " ".join(licence.categories),
                licence.issued.isoformat(),
                licence.expires.isoformat(),
                licence.replaced_by,
                licence.replace_reason,
                annulled if licence.replaced_by is None else None,
            )
        for deprivation in record.deprivations:
            deprivations.append(
                (person.iin, deprivation.start.isoformat(), deprivation.until.isoformat())
            )


def populate(db_path: Path, world: World) -> None:
    deprivations: list[tuple[str, str, str]] = []
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(LICENCE_INSERT, _licences(world, deprivations))
        conn.executemany(DEPRIVATION_INSERT, deprivations)


def _first(world: World, test: Any) -> tuple[Person, DrivingRecord | None]:
    for person in world.persons():
        record = driving_record(world, person)
        if test(person, record):
            return person, record
    raise LookupError("the world has no such person: make it bigger")


def contract_samples(world: World) -> ContractSamples:
    holder, _ = _first(
        world,
        lambda p, r: (
            r is not None
            and p.alive
            and not r.deprivations
            and r.licences[-1].expires > world.today + dt.timedelta(days=800)
        ),
    )
    learner, _ = _first(world, lambda p, r: r is None and p.alive and 20 <= p.age() < 60)
    return ContractSamples(
        valid={
            "GetLicence": [pb.GetLicenceRequest(iin=holder.iin)],
            "ListLicenceHistory": [pb.ListLicenceHistoryRequest(iin=holder.iin)],
            "IssueLicence": [
                pb.IssueLicenceRequest(
                    iin=learner.iin, categories=["B"], exam_date=world.today.isoformat()
                )
            ],
            "ReplaceLicence": [pb.ReplaceLicenceRequest(iin=holder.iin, reason="lost")],
        },
    )
