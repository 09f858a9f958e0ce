"""Fill the notary store from the synthetic world, and the contract samples.

- **Powers of attorney** of the last six years, for what Kazakh families use them
  for: about one car owner in eight lets a spouse, a grown child or a neighbour
  drive or sell their car (the scope names the car's VIN and plate from
  `world.vehicles_of`); a pensioner in twelve lets a grown child collect the pension;
  a home owner in fifty lets the spouse or a child sell the home (the scope names
  its cadastral number from `world.property_of`). Valid one to three years (the
  Civil Code's limit); some revoked by the principal; all ended by the principal's
  or agent's death.
- **Inheritance cases.** Most persons who died with a living spouse, child or parent
  (first-order heirs) have a case, opened by an adult heir within six months of the
  death and closed (certificate issued) after the six months, a few still open.

Notaries are a dozen per city, by name. Numbers: "PA" + ten digits for a power of
attorney (four per person), "IC" + ten digits for a case (the deceased's index).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.notary.store import (
    CASE_INSERT,
    HEIR_INSERT,
    INDEXES,
    POA_INSERT,
    SCHEMA_VERSION,
    TABLES,
    case_number,
    poa_number,
)
from adapters.population import Draw, Household, Person, PropertyKind, World
from adapters.population.geography import City
from adapters.population.names import FEMALE_FIRST, MALE_FIRST, SURNAMES, NameStyle
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.pb.agencies.notary.v1 import notary_pb2 as pb

__all__ = [
    "MAX_VALIDITY_YEARS",
    "SCOPE_PENSION",
    "SCOPE_SERVICE_CENTRE",
    "Inheritance",
    "Poa",
    "anniversary",
    "contract_samples",
    "household_records",
    "notary",
    "populate",
]

#: A power of attorney is valid at most three years (Civil Code art. 170).
MAX_VALIDITY_YEARS = 3
SCOPE_PENSION = (
    "получение пенсионных и социальных выплат, представление интересов в НАО "
    "«Государственная корпорация «Правительство для граждан»"
)
SCOPE_SERVICE_CENTRE = "представление интересов в центрах обслуживания населения"
_NOTARIES_PER_CITY = 12
_POA_WINDOW_DAYS = 6 * 365
_HEIRS_WINDOW_DAYS = 183  # heirs accept within six months of the death


@dataclass(frozen=True, slots=True)
class Poa:
    number: str
    principal: str
    agent: str
    notary: str
    issued: dt.date
    valid_until: dt.date
    scope: str
    revoked: dt.date | None
    revoke_reason: str | None


@dataclass(frozen=True, slots=True)
class Inheritance:
    number: str
    deceased: str
    notary: str
    opened: dt.date
    applicant: str
    heirs: tuple[str, ...]
    closed: dt.date | None


def anniversary(day: dt.date, years: int) -> dt.date:
    """The calendar date `years` after `day` (29 February → 1 March)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def notary(world: World, city: City, n: int) -> str:
    """The n-th private notary of a city, by name."""
    names = world.draw("notary-name", city.code, n % _NOTARIES_PER_CITY)
    style = NameStyle.KAZAKH if names.chance(650) else NameStyle.RUSSIAN
    male = names.chance(350)
    surname = names.pick(SURNAMES[style]) + ("" if male else "а")
    first = names.pick((MALE_FIRST if male else FEMALE_FIRST)[style])
    father = names.pick(MALE_FIRST[style])
    return f"Частный нотариус г. {city.name} {surname} {first[0]}.{father[0]}."


def _adult_on(person: Person, day: dt.date) -> bool:
    return person.age(day) >= 18 and (person.death_date is None or person.death_date > day)


def _end(person: Person, world: World) -> dt.date:
    return person.death_date or world.today


def _poa(
    world: World,
    draw: Draw,
    serial: int,
    principal: Person,
    agent: Person,
    scope: str,
    not_before: dt.date,
) -> Poa | None:
    """A power of attorney issued in the last six years, when both could sign it."""
    end = min(_end(principal, world), _end(agent, world))
    low = max(not_before, world.today - dt.timedelta(days=_POA_WINDOW_DAYS))
    if low >= end:
        return None
    issued = low + dt.timedelta(days=draw.between(0, (end - low).days - 1))
    if not (_adult_on(principal, issued) and _adult_on(agent, issued)):
        return None
    valid_until = anniversary(issued, draw.between(1, MAX_VALIDITY_YEARS))
    revoked, reason = None, None
    if draw.chance(60) and (valid_until - issued).days > 30:
        revoked = issued + dt.timedelta(days=draw.between(10, (valid_until - issued).days - 1))
        reason = "revoked by the principal"
        if revoked >= world.today:
            revoked, reason = None, None
    for person, why in ((principal, "death of the principal"), (agent, "death of the agent")):
        death = person.death_date
        if death is not None and death <= valid_until and (revoked is None or death < revoked):
            revoked, reason = death, why
    return Poa(
        number=poa_number(serial),
        principal=principal.iin,
        agent=agent.iin,
        notary=notary(world, principal.address.city, draw.below(_NOTARIES_PER_CITY)),
        issued=issued,
        valid_until=valid_until,
        scope=scope,
        revoked=revoked,
        revoke_reason=reason,
    )


def _agent(world: World, household: Household, principal: Person, draw: Draw) -> Person:
    """The spouse, a grown child, or a neighbour of the same building."""
    family = [
        p for p in household.members if p.index != principal.index and p.age(_end(p, world)) >= 18
    ]
    if family and draw.chance(700):
        return draw.pick(family)
    base = household.id - household.id % 40
    neighbour = world.person(base + draw.below(40))
    return neighbour if neighbour.index != principal.index else family[0] if family else neighbour


def _powers(world: World, household: Household) -> Iterator[Poa]:
    owners = world.property_of(household).owners
    for principal in household.members:
        if principal.age(_end(principal, world)) < 18:
            continue
        draw = world.draw("notary", principal.index)
        serial = principal.index * 4
        wishes: list[tuple[str, dt.date]] = []
        if principal.vehicles and draw.chance(120):
            car = world.vehicles_of(principal)[0]
            what = "управление и распоряжение" if draw.chance(600) else "продажа"
            wishes.append(
                (
                    f"{what} транспортным средством {car.make} {car.model} {car.year} г.в., "
                    f"VIN {car.vin}, г/н {car.plate}",
                    car.registered,
                )
            )
        if principal.age(_end(principal, world)) >= 65 and draw.chance(80):
            wishes.append((SCOPE_PENSION, anniversary(principal.birth_date, 63)))
        if principal.index in owners and draw.chance(20):
            home = world.property_of(household)
            kind = "квартиры" if home.kind is PropertyKind.FLAT else "жилого дома"
            wishes.append(
                (
                    f"продажа {kind} по адресу {home.address.line()}, "
                    f"кадастровый номер {home.cadastral_number}",
                    home.registered,
                )
            )
        for k, (scope, not_before) in enumerate(wishes):
            agent = _agent(world, household, principal, draw)
            if agent.index == principal.index:
                continue
            poa = _poa(world, draw, serial + k, principal, agent, scope, not_before)
            if poa is not None:
                yield poa


def _heirs(world: World, household: Household, deceased: Person) -> list[Person]:
    """First-order heirs alive at the death: spouse (not divorced), children, parents."""
    death = deceased.death_date
    assert death is not None
    found: list[Person] = []
    marriage = household.marriage
    if deceased.spouse is not None and marriage is not None and marriage.divorced is None:
        found.append(world.person(deceased.spouse))
    found.extend(world.person(child) for child in deceased.children)
    found.extend(
        world.person(parent) for parent in (deceased.father, deceased.mother) if parent is not None
    )
    return [
        p for p in found if p.birth_date < death and (p.death_date is None or p.death_date > death)
    ]


def _inheritance(world: World, household: Household, deceased: Person) -> Inheritance | None:
    death = deceased.death_date
    if death is None:
        return None
    heirs = _heirs(world, household, deceased)
    draw = world.draw("notary-inheritance", deceased.index)
    owner = deceased.index in world.property_of(household).owners
    if not heirs or not draw.chance(950 if owner or deceased.vehicles else 650):
        return None
    opened = death + dt.timedelta(days=draw.between(7, _HEIRS_WINDOW_DAYS - 10))
    applicants = [p for p in heirs if _adult_on(p, opened)]
    if opened >= world.today or not applicants:
        return None
    closed = None
    certificate = death + dt.timedelta(days=_HEIRS_WINDOW_DAYS + draw.between(0, 90))
    if certificate < world.today and draw.chance(930):
        closed = certificate
    applicant = applicants[0]
    return Inheritance(
        number=case_number(deceased.index),
        deceased=deceased.iin,
        notary=notary(world, deceased.address.city, draw.below(_NOTARIES_PER_CITY)),
        opened=opened,
        applicant=applicant.iin,
        heirs=(applicant.iin, *(p.iin for p in heirs if p.index != applicant.index)),
        closed=closed,
    )


def household_records(world: World, household: Household) -> tuple[list[Poa], list[Inheritance]]:
    powers = list(_powers(world, household))
    cases = [
        case
        for person in household.members
        if (case := _inheritance(world, household, person)) is not None
    ]
    return powers, cases


def populate(db_path: Path, world: World) -> None:
    powers: list[tuple[Any, ...]] = []
    cases: list[tuple[Any, ...]] = []
    heirs: list[tuple[Any, ...]] = []
    for household in world.households():
        found_powers, found_cases = household_records(world, household)
        for p in found_powers:
            powers.append(
                (
                    p.number,
                    p.principal,
                    p.agent,
                    p.notary,
                    p.issued.isoformat(),
                    p.valid_until.isoformat(),
                    p.scope,
                    None if p.revoked is None else p.revoked.isoformat(),
                    p.revoke_reason,
                )
            )
        for c in found_cases:
            cases.append(
                (
                    c.number,
                    c.deceased,
                    c.notary,
                    c.opened.isoformat(),
                    c.applicant,
                    None if c.closed is None else c.closed.isoformat(),
                )
            )
            heirs.extend((c.number, heir, n) for n, heir in enumerate(c.heirs))
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(POA_INSERT, powers)
        conn.executemany(CASE_INSERT, cases)
        conn.executemany(HEIR_INSERT, heirs)


def contract_samples(world: World) -> ContractSamples:
    power: Poa | None = None
    case: Inheritance | None = None
    couple: tuple[Person, Person] | None = None
    undeclared: Person | None = None
    for household in world.households():
        powers, cases = household_records(world, household)
        if power is None:
            power = next((p for p in powers if p.revoked is None), None)
        if case is None and cases:
            case = cases[0]
        husband = household.members[0]
        if couple is None and household.marriage and all(p.alive for p in household.members[:2]):
            couple = (husband, household.members[1])
        if undeclared is None:
            declared = {c.deceased for c in cases}
            undeclared = next(
                (p for p in household.members if not p.alive and p.iin not in declared), None
            )
        if power and case and couple and undeclared:
            break
    if not (power and case and couple and undeclared):
        raise LookupError("the world lacks a power of attorney or an inheritance: make it bigger")
    principal, agent = couple
    return ContractSamples(
        valid={
            "ListPowersOfAttorney": [pb.ListPowersOfAttorneyRequest(iin=power.principal)],
            "GetPowerOfAttorney": [pb.GetPowerOfAttorneyRequest(number=power.number)],
            "ListInheritanceCases": [pb.ListInheritanceCasesRequest(deceased_iin=case.deceased)],
            "RegisterPowerOfAttorney": [
                pb.RegisterPowerOfAttorneyRequest(
                    principal_iin=principal.iin, agent_iin=agent.iin, scope=SCOPE_SERVICE_CENTRE
                )
            ],
            "RevokePowerOfAttorney": [
                pb.RevokePowerOfAttorneyRequest(number=power.number, principal_iin=power.principal)
            ],
            "OpenInheritanceCase": [
                pb.OpenInheritanceCaseRequest(
                    deceased_iin=undeclared.iin,
                    applicant_iin=principal.iin,
                    opened_date=world.today.isoformat(),
                )
            ],
        },
        unknown={"GetPowerOfAttorney": [pb.GetPowerOfAttorneyRequest(number="PA8999999999")]},
        invalid={
            "GetPowerOfAttorney": [pb.GetPowerOfAttorneyRequest(number="ДОВ-1")],
            "RevokePowerOfAttorney": [
                pb.RevokePowerOfAttorneyRequest(number="PA12", principal_iin=power.principal)
            ],
        },
    )
