"""Fill the ГБД ЮЛ store from the synthetic world, and the contract samples.

Every company of the world is a legal entity with the world's BIN, name, legal form,
registration date, legal address (a commercial address of the address register) and
main activity; liquidated when the world liquidated it. Its director is the world's
director, in office since registration or since turning 18 if that came later.

Founders are this registry's own choice (`world.draw("gbdul", company)`), among
persons who were adults when the company was registered: mostly the director, often
with the spouse or a neighbour of the same superblock; sometimes an earlier company
of the same district (a subsidiary); a joint-stock company mostly has corporate
founders. Shares add up to 100 %.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.gbdul.store import (
    DIRECTOR_INSERT,
    ENTITY_INSERT,
    FOUNDER_INSERT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    name_key,
)
from adapters.population import Company, Draw, Household, Person, World
from adapters.population.world import SUPERBLOCK
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Bin
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2 as pb

__all__ = [
    "LEGAL_FORMS",
    "OKED",
    "FounderRow",
    "adult_on",
    "contract_samples",
    "founders_of",
    "populate",
]

#: The world's legal form abbreviations and the contract's enum.
LEGAL_FORMS = {"ТОО": pb.LEGAL_FORM_TOO, "АО": pb.LEGAL_FORM_AO, "ГУ": pb.LEGAL_FORM_GU}
#: The part of the activity classifier (ОКЭД) this registry accepts for new entities;
#: it includes every activity of the world's companies, under the same names.
OKED = {
    "01110": "Выращивание зерновых культур",
    "01410": "Разведение молочного крупного рогатого скота",
    "10711": "Производство хлеба и хлебобулочных изделий",
    "41201": "Строительство жилых зданий",
    "43390": "Прочие отделочные работы",
    "45200": "Техническое обслуживание и ремонт автомобилей",
    "46900": "Неспециализированная оптовая торговля",
    "47111": "Розничная торговля продуктами питания",
    "47191": "Прочая розничная торговля в неспециализированных магазинах",
    "49320": "Деятельность такси",
    "49410": "Грузовые перевозки автомобильным транспортом",
    "55101": "Предоставление услуг гостиницами",
    "56101": "Деятельность ресторанов",
    "62010": "Разработка программного обеспечения",
    "68201": "Аренда собственной недвижимости",
    "69201": "Деятельность в области бухгалтерского учёта",
    "70220": "Консультирование по вопросам коммерческой деятельности и управления",
    "73110": "Деятельность рекламных агентств",
    "84110": "Деятельность органов государственного управления общего характера",
    "85100": "Дошкольное образование",
    "85310": "Общее среднее образование",
    "86210": "Общая врачебная практика",
    "96020": "Предоставление услуг парикмахерскими и салонами красоты",
}
_ADULT = 18
_FULL_SHARE = 10_000
# How far back (in company indexes) a corporate founder is looked for: the same district.
_PARENT_WINDOW = 40


def adult_on(person: Person, day: dt.date) -> bool:
    return person.age(day) >= _ADULT


@dataclass(frozen=True, slots=True)
class FounderRow:
    iin: str | None
    bin: str | None
    name: str
    share: int


def _shares(count: int, draw: Draw) -> list[int]:
    """Shares in basis points adding up to 100 %; the first founder holds the most."""
    if count == 1:
        return [_FULL_SHARE]
    weights = sorted((draw.between(1, 9) for _ in range(count)), reverse=True)
    total = sum(weights)
    shares = [w * _FULL_SHARE // total for w in weights]
    shares[0] += _FULL_SHARE - sum(shares)
    return shares


def _parents(company: Company, earlier: Sequence[Company]) -> list[Company]:
    """Earlier companies that existed (registered, not liquidated) on the registration day."""
    day = company.registered
    return [
        c for c in earlier if c.registered < day and (c.liquidated is None or c.liquidated > day)
    ]


def founders_of(
    world: World, company: Company, neighbours: Sequence[Household], earlier: Sequence[Company]
) -> list[FounderRow]:
    """The founders of a company: persons of its superblock, earlier companies near it."""
    draw = world.draw("gbdul", company.index)
    day = company.registered
    director = world.person(company.director)
    adults = [p for h in neighbours for p in h.members[:2] if adult_on(p, day)]
    parents = _parents(company, earlier)
    persons: list[Person] = []
    corporate: list[Company] = []
    if company.legal_form == "АО":
        if parents:
            corporate.append(draw.pick(parents))
            if len(parents) > 1 and draw.chance(400):
                second = draw.pick(parents)
                if second is not corporate[0]:
                    corporate.append(second)
        if adult_on(director, day) and (draw.chance(300) or not corporate):
            persons.append(director)
    else:
        if adult_on(director, day) and draw.chance(850):
            persons.append(director)
        spouse = None if director.spouse is None else world.person(director.spouse)
        if spouse is not None and adult_on(spouse, day) and draw.chance(250):
            persons.append(spouse)
        others = [p for p in adults if p not in persons]
        if others and (not persons or draw.chance(150)):
            persons.append(draw.pick(others))
        if parents and draw.chance(100):
            corporate.append(draw.pick(parents))
    if not persons and not corporate:
        # Nobody of the superblock was an adult then: the director founded it anyway
        # (the world only says who directs it now).
        persons.append(director)
    shares = _shares(len(persons) + len(corporate), draw)
    rows = [FounderRow(p.iin, None, p.full_name, 0) for p in persons]
    rows += [FounderRow(None, c.bin, c.name, 0) for c in corporate]
    return [FounderRow(r.iin, r.bin, r.name, share) for r, share in zip(rows, shares, strict=True)]


def _director_since(director: Person, company: Company) -> dt.date:
    """In office from registration, or from the director's 18th birthday if later."""
    born = director.birth_date
    try:
        adult = born.replace(year=born.year + _ADULT)
    except ValueError:  # 29 February
        adult = dt.date(born.year + _ADULT, 3, 1)
    return max(company.registered, adult)


def _superblocks(world: World) -> Iterator[tuple[int, list[Household]]]:
    current: list[Household] = []
    block = 0
    for household in world.households():
        if household.id // SUPERBLOCK != block:
            yield block, current
            block, current = household.id // SUPERBLOCK, []
        current.append(household)
    if current:
        yield block, current


def _rows(world: World) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """("entity" | "founder" | "director", row) for every company, in index order."""
    companies = list(world.companies())
    per_block = world.company_count // world.superblocks
    for block, households in _superblocks(world):
        for company in companies[block * per_block : (block + 1) * per_block]:
            director = world.person(company.director)
            since = _director_since(director, company)
            liquidated = None if company.liquidated is None else company.liquidated.isoformat()
            yield (
                "entity",
                (
                    company.bin,
                    company.name,
                    name_key(company.name),
                    LEGAL_FORMS[company.legal_form],
                    company.registered.isoformat(),
                    liquidated,
                    director.iin,
                    director.full_name,
                    since.isoformat(),
                    company.address.rca,
                    company.address.line(),
                    company.oked_code,
                    company.oked_name,
                ),
            )
            yield "director", (company.bin, director.iin, since.isoformat(), liquidated)
            earlier = companies[max(0, company.index - _PARENT_WINDOW) : company.index]
            for position, f in enumerate(founders_of(world, company, households, earlier)):
                yield "founder", (company.bin, position, f.iin, f.bin, f.name, f.share)


def populate(db_path: Path, world: World) -> None:
    batches: dict[str, list[tuple[Any, ...]]] = {"entity": [], "founder": [], "director": []}
    for table, row in _rows(world):
        batches[table].append(row)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(ENTITY_INSERT, batches["entity"])
        conn.executemany(FOUNDER_INSERT, batches["founder"])
        conn.executemany(DIRECTOR_INSERT, batches["director"])


def _unknown_bin() -> str:
    """A valid BIN no entity has: registered in December 1999, before the world's first."""
    built = Bin.build(1999, 12, 99_998) or Bin.build(1999, 12, 99_999)
    assert built is not None
    return built.value


def contract_samples(world: World) -> ContractSamples:
    active = [c for c in world.companies() if c.liquidated is None]
    if len(active) < 2:
        raise LookupError("the world has fewer than two active companies: make it bigger")
    first, second = active[0], active[1]
    director = world.person(first.director)
    # Someone of another superblock than `second`, adult and alive, to take it over.
    successor = next(
        p
        for p in world.persons()
        if p.alive and p.age() >= 30 and p.index // SUPERBLOCK != second.index // 2
    )
    founder = world.person(second.director)
    return ContractSamples(
        valid={
            "GetEntity": [pb.GetEntityRequest(bin=first.bin)],
            "ListFounders": [pb.ListFoundersRequest(bin=first.bin)],
            "ListEntitiesByPerson": [pb.ListEntitiesByPersonRequest(iin=director.iin)],
            "RegisterEntity": [
                pb.RegisterEntityRequest(
                    name=f"ТОО «Проверка контракта {world.seed}»",
                    legal_form=pb.LEGAL_FORM_TOO,
                    director_iin=successor.iin,
                    founders=[
                        pb.Founder(
                            iin=successor.iin, name=successor.full_name, share_basis_points=6000
                        ),
                        pb.Founder(bin=first.bin, name=first.name, share_basis_points=4000),
                    ],
                    rca=first.address.rca,
                    oked_code="62010",
                )
            ],
            "ChangeDirector": [
                pb.ChangeDirectorRequest(
                    bin=second.bin,
                    director_iin=successor.iin,
                    since_date=world.today.isoformat(),
                )
            ],
        },
        unknown={
            "GetEntity": [pb.GetEntityRequest(bin=_unknown_bin())],
            "ListFounders": [pb.ListFoundersRequest(bin=_unknown_bin())],
        },
        invalid={"RegisterEntity": [_with_bad_rca(founder)]},
    )


def _with_bad_rca(director: Person) -> pb.RegisterEntityRequest:
    return pb.RegisterEntityRequest(
        name="ТОО «Без адреса»",
        legal_form=pb.LEGAL_FORM_TOO,
        director_iin=director.iin,
        founders=[pb.Founder(iin=director.iin, name=director.full_name, share_basis_points=10000)],
        rca="99" + "0" * 13,
        oked_code="62010",
    )
