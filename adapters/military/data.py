"""Fill the military registration store from the synthetic world, and the contract samples.

Every man is registered in the first months of the year he turns 17 (приписка),
with the defence office of the city he lives in. The medical board finds most fit
(А, Б), some fit with limits (В: exempt in peacetime, straight to the reserve),
a few temporarily unfit (Г) and one in twenty unfit (Д: removed from the
register). About a third of the fit serve twelve months from a spring or autumn
call-up between 18 and 21 — some stay on contract — and go to the reserve; fathers
of two children before 27 are exempt; the others pass to the reserve at 27
without serving, a few as reserve lieutenants from a university military
department. At 50 (the reserve age limit for soldiers and sergeants) or at death a
man is deregistered. Some women with a military-relevant profession are in the
reserve too.

`military_record(world, person)` is the pure function all of this comes from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.military.store import (
    INDEXES,
    PERIOD_INSERT,
    RECORD_INSERT,
    SCHEMA_VERSION,
    TABLES,
    ticket_number,
)
from adapters.population import Draw, Person, World
from adapters.population.geography import City
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Sex
from govbus.pb.agencies.military.v1 import military_pb2 as pb

__all__ = [
    "CONSCRIPT_UNTIL",
    "REGISTRATION_AGE",
    "RESERVE_UNTIL",
    "MilitaryRecord",
    "ServicePeriod",
    "anniversary",
    "contract_samples",
    "military_record",
    "office_of",
    "populate",
]

#: A conscript who has not served by this age passes to the reserve.
CONSCRIPT_UNTIL = 27
#: The reserve age limit of soldiers and sergeants: then a man is deregistered.
RESERVE_UNTIL = 50
REGISTRATION_AGE = 17
_FITNESS = ("А", "Б", "В", "Г", "Д")
_FITNESS_CUMULATIVE = (550, 800, 920, 950, 1000)
_UNITS = tuple(
    f"войсковая часть {n}"
    for n in (
        "03656", "10859", "28237", "31628", "35748", "44200", "47166", "52859", "55652",
        "61411", "68301", "69807", "73462", "75376", "86241", "93876",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServicePeriod:
    unit: str
    start: dt.date
    end: dt.date
    kind: str  # "conscript", "contract"


@dataclass(frozen=True, slots=True)
class MilitaryRecord:
    iin: str
    status: int  # as last set: the in-service state comes from the periods
    office: str
    fitness: str
    rank: str
    registered: dt.date
    ticket: str
    deregistered: dt.date | None
    deregistered_reason: str | None
    status_before: int | None
    periods: tuple[ServicePeriod, ...]


def anniversary(day: dt.date, years: int) -> dt.date:
    """The calendar date `years` after `day` (29 February → 1 March)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def office_of(city: City) -> str:
    """The defence office (управление по делам обороны) of a city."""
    return f"Управление по делам обороны г. {city.name}"


def _call_up(after: dt.date, draw: Draw) -> dt.date:
    """The first day of a spring (April) or autumn (October) call-up after a date."""
    year = after.year + draw.below(3)
    day = dt.date(year, 4 if draw.chance(500) else 10, draw.between(1, 28))
    return day if day > after else dt.date(year + 1, day.month, day.day)


def _woman(world: World, person: Person, end: dt.date) -> MilitaryRecord | None:
    draw = world.draw("military", person.index)
    if not (20 <= person.age(end) < RESERVE_UNTIL and draw.chance(15)):
        return None
    registered = anniversary(person.birth_date, 20) + dt.timedelta(days=draw.between(0, 3650))
    if registered >= end:
        return None
    return MilitaryRecord(
        iin=person.iin,
        status=pb.MILITARY_STATUS_RESERVE,
        office=office_of(person.address.city),
        fitness=draw.pick(("А", "Б")),
        rank="рядовой",
        registered=registered,
        ticket=ticket_number(True, person.index),
        deregistered=None,
        deregistered_reason=None,
        status_before=None,
        periods=(),
    )


def _service(draw: Draw, person: Person, end: dt.date) -> tuple[tuple[ServicePeriod, ...], str]:
    start = _call_up(anniversary(person.birth_date, 18), draw)
    if start >= end:
        return (), ""
    unit = draw.pick(_UNITS)
    periods = [ServicePeriod(unit, start, anniversary(start, 1), "conscript")]
    rank = draw.pick(("рядовой",) * 7 + ("ефрейтор",) * 2 + ("младший сержант",))
    if draw.chance(100):
        begin = periods[0].end + dt.timedelta(days=draw.between(30, 400))
        if begin < end:
            periods.append(
                ServicePeriod(unit, begin, anniversary(begin, draw.between(2, 5)), "contract")
            )
            rank = draw.pick(("сержант", "старший сержант"))
    return tuple(periods), rank


def military_record(world: World, person: Person) -> MilitaryRecord | None:
    """What the defence offices hold about one person (None: never registered)."""
    end = person.death_date or world.today
    if person.sex is Sex.FEMALE:
        return _woman(world, person, end)
    if person.age(end) < REGISTRATION_AGE:
        return None
    draw = world.draw("military", person.index)
    registered = dt.date(person.birth_date.year + REGISTRATION_AGE, 1, 15) + dt.timedelta(
        days=draw.between(0, 75)
    )
    if registered >= end:
        return None
    fitness = _FITNESS[draw.weighted(_FITNESS_CUMULATIVE)]
    age = person.age(end)
    periods: tuple[ServicePeriod, ...] = ()
    rank = ""
    military_id = True
    children_young = sum(
        1
        for child in person.children
        if world.person(child).birth_date < anniversary(person.birth_date, CONSCRIPT_UNTIL)
    )
    if fitness == "Д":
        status = pb.MILITARY_STATUS_NOT_LIABLE
    elif fitness == "В":
        status, rank = pb.MILITARY_STATUS_RESERVE, "рядовой"
    elif fitness in ("А", "Б") and draw.chance(350):
        periods, rank = _service(draw, person, end)
        status = pb.MILITARY_STATUS_RESERVE if periods else pb.MILITARY_STATUS_CONSCRIPT
        military_id = bool(periods)
    elif children_young >= 2:
        status, rank = pb.MILITARY_STATUS_EXEMPT, "рядовой"
    elif age >= CONSCRIPT_UNTIL:
        officer = draw.chance(40)
        status = pb.MILITARY_STATUS_RESERVE
        rank = "лейтенант запаса" if officer else "рядовой"
    else:
        status, military_id = pb.MILITARY_STATUS_CONSCRIPT, False
    deregistered, reason, before = None, None, None
    if person.death_date is not None:
        deregistered, reason = person.death_date, "death"
    elif age >= RESERVE_UNTIL:
        deregistered, reason = anniversary(person.birth_date, RESERVE_UNTIL), "age"
    if deregistered is not None and status != pb.MILITARY_STATUS_NOT_LIABLE:
        before, status = status, pb.MILITARY_STATUS_DEREGISTERED
    return MilitaryRecord(
        iin=person.iin,
        status=status,
        office=office_of(person.address.city),
        fitness=fitness,
        rank=rank,
        registered=registered,
        ticket=ticket_number(military_id, person.index),
        deregistered=deregistered,
        deregistered_reason=reason,
        status_before=before,
        periods=periods,
    )


def _rows(world: World, periods: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    for person in world.persons():
        record = military_record(world, person)
        if record is None:
            continue
        yield (
            record.iin,
            record.status,
            record.office,
            record.fitness,
            record.rank,
            record.registered.isoformat(),
            record.ticket,
            None if record.deregistered is None else record.deregistered.isoformat(),
            record.deregistered_reason,
            record.status_before,
        )
        periods.extend(
            (record.iin, p.start.isoformat(), p.end.isoformat(), p.unit, p.kind)
            for p in record.periods
        )


def populate(db_path: Path, world: World) -> None:
    periods: list[tuple[Any, ...]] = []
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(RECORD_INSERT, _rows(world, periods))
        conn.executemany(PERIOD_INSERT, periods)


def contract_samples(world: World) -> ContractSamples:
    veteran: Person | None = None
    reservist: Person | None = None
    boy: Person | None = None
    for person in world.persons():
        record = military_record(world, person)
        if veteran is None and record is not None and record.periods and person.alive:
            veteran = person
        if (
            reservist is None
            and record is not None
            and record.status == pb.MILITARY_STATUS_RESERVE
            and not record.periods
            and person.alive
        ):
            reservist = person
        turning_17 = person.birth_date.year == world.today.year - REGISTRATION_AGE
        if boy is None and record is None and person.sex is Sex.MALE and turning_17:
            boy = person
        if veteran and reservist and boy:
            break
    if not (veteran and reservist and boy):
        raise LookupError("the world lacks a veteran, a reservist or a boy: make it bigger")
    return ContractSamples(
        valid={
            "GetRecord": [pb.GetRecordRequest(iin=veteran.iin)],
            "ListServiceHistory": [pb.ListServiceHistoryRequest(iin=veteran.iin)],
            "Register": [
                pb.RegisterRequest(
                    iin=boy.iin,
                    office=office_of(boy.address.city),
                    registered_date=world.today.isoformat(),
                )
            ],
            "Deregister": [
                pb.DeregisterRequest(
                    iin=reservist.iin,
                    reason="moved abroad",
                    deregistered_date=world.today.isoformat(),
                )
            ],
        },
    )
