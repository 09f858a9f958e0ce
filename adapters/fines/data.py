"""Fill the administrative fines store from the synthetic world, and the contract samples.

Fines of the last three years before the world's date, by this registry's own draws
(`world.draw("fines", person)`):

- traffic offences, for owners of a vehicle only, on the plate of a vehicle they
  owned on that day (the plates are the world's, as the vehicle registry has them):
  about 45 % of drivers have at least one;
- public-order offences for about 4 % of men and 1.5 % of women of 16 and over.

Amounts are whole monthly calculation indices (МРП) of the year of the offence, in
tiyn, as the Code of Administrative Offences sets them (one amount per part of an
article). A fine is due 40 days after it is issued (10 days to take effect, 30 to
pay); most are paid, a few are cancelled on appeal, the rest are unpaid.

Fine numbers are 15 digits: region of the address, two digits of the year, and a
sequence derived from the person's index (so they are unique and stable).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.fines.store import FINE_INSERT, INDEXES, SCHEMA_VERSION, TABLES
from adapters.population import Draw, Person, Vehicle, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Sex
from govbus.pb.agencies.fines.v1 import fines_pb2 as pb

__all__ = [
    "DUE_DAYS",
    "MRP_TENGE",
    "OFFENCES",
    "Offence",
    "contract_samples",
    "fine_id",
    "fines_of",
    "populate",
]

#: The monthly calculation index (МРП) in tenge, by year.
MRP_TENGE = {2022: 3063, 2023: 3450, 2024: 3692, 2025: 3932, 2026: 4325}
DUE_DAYS = 40
_HISTORY_DAYS = 3 * 365
_RESPONSIBILITY_AGE = 16
_PER_PERSON = 8  # fine numbers reserved per person index


@dataclass(frozen=True, slots=True)
class Offence:
    article: str
    description: str
    mrp: int
    traffic: bool
    weight: int


OFFENCES: tuple[Offence, ...] = (
    Offence("592 ч.1", "Превышение скорости на 10–20 км/ч", 5, True, 40),
    Offence("592 ч.2", "Превышение скорости на 20–40 км/ч", 10, True, 16),
    Offence("592 ч.3", "Превышение скорости на 40 км/ч и более", 20, True, 4),
    Offence("591 ч.1", "Пользование телефоном при управлении транспортным средством", 5, True, 10),
    Offence("599 ч.1", "Проезд на запрещающий сигнал светофора", 10, True, 8),
    Offence("597 ч.1", "Нарушение правил остановки и стоянки", 5, True, 22),
    Offence("434 ч.1", "Мелкое хулиганство", 5, False, 1),
    Offence("440 ч.1", "Распитие алкогольных напитков в запрещённых местах", 3, False, 1),
)
_TRAFFIC = tuple(o for o in OFFENCES if o.traffic)
_TRAFFIC_WEIGHTS = tuple(sum(o.weight for o in _TRAFFIC[: k + 1]) for k in range(len(_TRAFFIC)))
_PUBLIC = tuple(o for o in OFFENCES if not o.traffic)
_PAYERS = ("KASPI", "HALYK", "EGOV", "FORTE")


@dataclass(frozen=True, slots=True)
class SyntheticFine:
    fine_id: str
    offence: Offence
    amount_tiyn: int
    issued: dt.date
    due: dt.date
    status: int
    paid: dt.date | None
    payment_reference: str | None
    plate: str


def fine_id(region: int, issued: dt.date, person_index: int, k: int) -> str:
    return f"{region:02d}{issued.year % 100:02d}{person_index * _PER_PERSON + k:011d}"


def _amount(offence: Offence, day: dt.date) -> int:
    year = min(max(day.year, min(MRP_TENGE)), max(MRP_TENGE))
    return offence.mrp * MRP_TENGE[year] * 100


def _outcome(
    draw: Draw, issued: dt.date, today: dt.date, fid: str
) -> tuple[int, dt.date | None, str | None]:
    due = issued + dt.timedelta(days=DUE_DAYS)
    roll = draw.below(1000)
    if due < today:
        paid, cancelled = roll < 860, roll >= 970
    else:
        paid, cancelled = roll < 500, False
    if cancelled:
        return pb.FINE_STATUS_CANCELLED, None, None
    if not paid:
        return pb.FINE_STATUS_UNPAID, None, None
    latest = (today - issued).days - 1
    paid_on = issued + dt.timedelta(days=draw.between(0, min(latest, DUE_DAYS + 60)))
    return pb.FINE_STATUS_PAID, paid_on, f"{draw.pick(_PAYERS)}-{fid}"


def fines_of(world: World, person: Person) -> list[SyntheticFine]:
    """The fines of one person (pure: the same in every process)."""
    today = world.today
    draw = world.draw("fines", person.index)
    end = today if person.death_date is None else person.death_date
    start = max(
        today - dt.timedelta(days=_HISTORY_DAYS),
        _birthday(person.birth_date, _RESPONSIBILITY_AGE),
    )
    if end <= start:
        return []
    events: list[tuple[Offence, dt.date, str]] = []
    vehicles = world.vehicles_of(person) if person.vehicles else ()
    if vehicles and draw.chance(450):
        count = 1 + draw.weighted((500, 750, 900, 1000))
        for _ in range(count):
            vehicle: Vehicle = draw.pick(vehicles)
            first = max(start, vehicle.registered)
            if first >= end:
                continue
            day = first + dt.timedelta(days=draw.below((end - first).days))
            events.append((_TRAFFIC[draw.weighted(_TRAFFIC_WEIGHTS)], day, vehicle.plate))
    if draw.chance(40 if person.sex is Sex.MALE else 15):
        day = start + dt.timedelta(days=draw.below((end - start).days))
        events.append((draw.pick(_PUBLIC), day, ""))
    events.sort(key=lambda e: e[1])
    region = person.address.region.code
    fines = []
    for k, (offence, issued, plate) in enumerate(events[:_PER_PERSON]):
        fid = fine_id(region, issued, person.index, k)
        status, paid, reference = _outcome(draw, issued, today, fid)
        if status == pb.FINE_STATUS_UNPAID and person.death_date is not None:
            # Liability ends with death: the proceedings are closed.
            status = pb.FINE_STATUS_CANCELLED
        fines.append(
            SyntheticFine(
                fine_id=fid,
                offence=offence,
                amount_tiyn=_amount(offence, issued),
                issued=issued,
                due=issued + dt.timedelta(days=DUE_DAYS),
                status=status,
                paid=paid,
                payment_reference=reference,
                plate=plate,
            )
        )
    return fines


def _birthday(born: dt.date, years: int) -> dt.date:
    try:
        return born.replace(year=born.year + years)
    except ValueError:  # 29 February
        return dt.date(born.year + years, 3, 1)


def _rows(world: World) -> Iterator[tuple[Any, ...]]:
    for person in world.persons():
        for f in fines_of(world, person):
            yield (
                f.fine_id,
                person.iin,
                f.offence.article,
                f.offence.description,
                f.amount_tiyn,
                f.issued.isoformat(),
                f.due.isoformat(),
                f.status,
                None if f.paid is None else f.paid.isoformat(),
                f.payment_reference,
                f.plate,
            )


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(FINE_INSERT, _rows(world))


def contract_samples(world: World) -> ContractSamples:
    fined: list[tuple[Person, SyntheticFine]] = [
        (p, f) for p in world.persons() for f in fines_of(world, p)
    ]
    if not fined:
        raise LookupError("the world has nobody with a fine: make it bigger")
    person, first = fined[0]
    unpaid = next(((p, f) for p, f in fined if f.status == pb.FINE_STATUS_UNPAID), fined[-1])
    payer, to_pay = unpaid
    return ContractSamples(
        valid={
            "ListFines": [pb.ListFinesRequest(iin=person.iin)],
            "GetFine": [pb.GetFineRequest(fine_id=first.fine_id)],
            "GetFineSummary": [pb.GetFineSummaryRequest(iin=payer.iin)],
            "PayFine": [
                pb.PayFineRequest(
                    fine_id=to_pay.fine_id,
                    payment_reference=f"CONTRACT-{world.seed}-{to_pay.fine_id}",
                    amount_tiyn=to_pay.amount_tiyn,
                )
            ],
        },
        unknown={"GetFine": [pb.GetFineRequest(fine_id="012599999999999")]},
        unknown_answered={"GetFineSummary"},
        invalid={
            "GetFine": [
                pb.GetFineRequest(fine_id="F-1"),
                pb.GetFineRequest(fine_id="992500000000001"),
            ],
            "PayFine": [pb.PayFineRequest(fine_id="12345", payment_reference="X", amount_tiyn=100)],
        },
    )
