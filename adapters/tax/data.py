"""Fill the КГД store from the synthetic world, and the contract samples.

Taxpayers: every person of the world under their IIN (an individual, or an
individual entrepreneur — ИП — for about one in nine adults of working age, by this
registry's own draws), and every company under its BIN, with the tax office of the
city they live in or are registered in; the dead and liquidated are deregistered
on that day.

Debts (most taxpayers have none): property, land and vehicle taxes of individuals,
only for what the world says they own (their dwelling, the plot under their house,
their vehicles); income and social tax of some entrepreneurs; corporate income tax,
VAT and social tax of some active companies. Principal only; the penalty (1.25 ×
the base rate a year) is computed on the day it is asked.

Declarations: the simplified declaration (910.00) of entrepreneurs by half-year, the
corporate income tax declaration (100.00) of companies by year, and the individual
declaration of income and property (270.00) as the universal declaration phases
require it (entrepreneurs and company directors from tax year 2023, a third of the
remaining adults for 2024).

`person_debts` / `company_debts` / `restricted_since` are pure: the real-estate
register uses them to place the tax authority's restrictions on debtors' property.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.population import CAPACITY, Company, Draw, Household, Person, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from adapters.tax.store import (
    DEBT_INSERT,
    DECLARATION_INSERT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    TAXPAYER_INSERT,
)
from govbus.pb.agencies.tax.v1 import tax_pb2 as pb

__all__ = [
    "BUDGET_CODES",
    "FORMS",
    "IIN_ERA",
    "PENALTY_RATE_PER_MILLE",
    "RESTRICTION_THRESHOLD_TIYN",
    "DeclarationForm",
    "SyntheticDebt",
    "company_debts",
    "contract_samples",
    "declaration_id",
    "entrepreneur_since",
    "penalty_tiyn",
    "person_debts",
    "populate",
    "restricted_since",
    "tax_office",
]

#: Taxpayers are registered under their IIN from the day IINs were introduced.
IIN_ERA = dt.date(2007, 1, 1)
#: The penalty a year, in per mille of the principal: 1.25 × a base rate of 16.5 %.
PENALTY_RATE_PER_MILLE = 206
#: The tax authority restricts the disposal of property of a taxpayer who owes at
#: least this much for more than half a year (see `restricted_since`).
RESTRICTION_THRESHOLD_TIYN = 400_000_00
_RESTRICTION_AFTER_DAYS = 180

BUDGET_CODES = {
    "101101": "Корпоративный подоходный налог с юридических лиц",
    "101202": "Индивидуальный подоходный налог с доходов, не облагаемых у источника выплаты",
    "103101": "Социальный налог",
    "104102": "Налог на имущество физических лиц",
    "104302": "Земельный налог с физических лиц на земли населённых пунктов",
    "104401": "Налог на транспортные средства с физических лиц",
    "105101": "Налог на добавленную стоимость на произведённые товары, оказанные услуги",
}

_INDIVIDUAL = pb.TAXPAYER_KIND_INDIVIDUAL
_ENTREPRENEUR = pb.TAXPAYER_KIND_ENTREPRENEUR
_ENTITY = pb.TAXPAYER_KIND_LEGAL_ENTITY


@dataclass(frozen=True, slots=True)
class DeclarationForm:
    code: str
    title: str
    periods: tuple[int, ...]  # (0,) a whole year; (1, 2) half-years
    kinds: frozenset[int]


FORMS: dict[str, DeclarationForm] = {
    f.code: f
    for f in (
        DeclarationForm(
            "270.00",
            "Декларация о доходах и имуществе физического лица",
            (0,),
            frozenset({_INDIVIDUAL, _ENTREPRENEUR}),
        ),
        DeclarationForm(
            "220.00",
            "Декларация по индивидуальному подоходному налогу (ИП, общеустановленный режим)",
            (0,),
            frozenset({_ENTREPRENEUR}),
        ),
        DeclarationForm(
            "910.00",
            "Упрощённая декларация для субъектов малого бизнеса",
            (1, 2),
            frozenset({_ENTREPRENEUR}),
        ),
        DeclarationForm(
            "100.00",
            "Декларация по корпоративному подоходному налогу",
            (0,),
            frozenset({_ENTITY}),
        ),
    )
}
_HISTORY_YEARS = 3  # declarations and debts of the last three tax years


@dataclass(frozen=True, slots=True)
class SyntheticDebt:
    budget_code: str
    principal_tiyn: int
    since: dt.date


def tax_office(city_name: str) -> str:
    return f"УГД по г. {city_name}"


def penalty_tiyn(principal_tiyn: int, since: dt.date, on: dt.date) -> int:
    """The penalty on a principal overdue since `since`, as of `on` (simple interest)."""
    days = max(0, (on - since).days)
    return principal_tiyn * PENALTY_RATE_PER_MILLE * days // (1000 * 365)


def declaration_id(form: str, tax_year: int, period: int, serial: int) -> str:
    return f"{form.replace('.', '')}{tax_year:04d}{period}{serial:010d}"


def _birthday(born: dt.date, years: int) -> dt.date:
    try:
        return born.replace(year=born.year + years)
    except ValueError:  # 29 February
        return dt.date(born.year + years, 3, 1)


def entrepreneur_since(world: World, person: Person) -> dt.date | None:
    """The day a living adult of working age registered as an entrepreneur, if they did."""
    if not person.alive or not 20 <= person.age() < 63:
        return None
    draw = world.draw("tax-entrepreneur", person.index)
    if not draw.chance(110):
        return None
    first = max(_birthday(person.birth_date, 18), dt.date(2000, 1, 1)).toordinal()
    return dt.date.fromordinal(draw.between(first, world.today.toordinal() - 30))


def _due_day(world: World, draw: Draw) -> dt.date:
    """Individuals' property taxes fall due on 1 October after the tax year."""
    year = world.today.year - 1 - draw.below(_HISTORY_YEARS)
    return dt.date(year, 10, 1)


def person_debts(world: World, person: Person, household: Household) -> list[SyntheticDebt]:
    """The unpaid taxes of a person (pure: the same in every process)."""
    if not person.alive or person.age() < 18:
        return []
    draw = world.draw("tax-debt", person.index)
    debts: list[SyntheticDebt] = []
    if person.vehicles and draw.chance(60):
        tenge = draw.between(5_000, 60_000) * person.vehicles
        debts.append(SyntheticDebt("104401", tenge * 100, _due_day(world, draw)))
    # Only the couple at the head of a household can own its dwelling.
    owns_home = person.index in (m.index for m in household.members[:2])
    if owns_home and person.index in world.property_of(household).owners and draw.chance(30):
        debts.append(
            SyntheticDebt("104102", draw.between(2_000, 25_000) * 100, _due_day(world, draw))
        )
    plot = world.land_plot_of(household) if person.index == household.id else None
    if plot is not None and plot.holder == person.index and draw.chance(30):
        debts.append(SyntheticDebt("104302", draw.between(300, 5_000) * 100, _due_day(world, draw)))
    since = entrepreneur_since(world, person)
    if since is not None and draw.chance(150):
        first = max(since.toordinal() + 180, world.today.toordinal() - 3 * 365)
        last = world.today.toordinal() - 30
        if first <= last:
            day = dt.date.fromordinal(draw.between(first, last))
            debts.append(SyntheticDebt("101202", draw.between(20_000, 3_000_000) * 100, day))
            if draw.chance(500):
                debts.append(SyntheticDebt("103101", draw.between(10_000, 800_000) * 100, day))
    return _merged(debts)


def _merged(debts: list[SyntheticDebt]) -> list[SyntheticDebt]:
    """One debt per (budget code, day): the same tax due the same day is one debt."""
    merged: dict[tuple[str, dt.date], int] = {}
    for d in debts:
        merged[(d.budget_code, d.since)] = merged.get((d.budget_code, d.since), 0) + (
            d.principal_tiyn
        )
    return [SyntheticDebt(code, amount, since) for (code, since), amount in merged.items()]


def company_debts(world: World, company: Company) -> list[SyntheticDebt]:
    """The unpaid taxes of an active company (a liquidated one settled them)."""
    if company.liquidated is not None:
        return []
    draw = world.draw("tax-debt-company", company.index)
    if not draw.chance(100):
        return []
    first = max(company.registered.toordinal() + 365, world.today.toordinal() - 3 * 365)
    last = world.today.toordinal() - 30
    if first > last:
        return []
    day = dt.date.fromordinal(draw.between(first, last))
    codes = ("101101", "105101", "103101")
    chosen = [draw.pick(codes)]
    if draw.chance(400):
        chosen.append(draw.pick(codes))
    return _merged(
        [SyntheticDebt(code, draw.between(100_000, 40_000_000) * 100, day) for code in chosen]
    )


def restricted_since(debts: list[SyntheticDebt], today: dt.date) -> dt.date | None:
    """The day the tax authority restricted the debtor's property, if it did: a debt of
    at least the threshold, overdue for more than half a year."""
    overdue = [d for d in debts if (today - d.since).days > _RESTRICTION_AFTER_DAYS]
    if sum(d.principal_tiyn for d in overdue) < RESTRICTION_THRESHOLD_TIYN:
        return None
    return min(d.since for d in overdue) + dt.timedelta(days=_RESTRICTION_AFTER_DAYS)


def _status(draw: Draw, latest: bool) -> int:
    roll = draw.below(1000)
    if latest and roll < 40:
        return pb.DECLARATION_STATUS_UNDER_REVIEW
    if roll >= 990:
        return pb.DECLARATION_STATUS_REJECTED
    return pb.DECLARATION_STATUS_ACCEPTED


def _on(draw: Draw, first: dt.date, last: dt.date) -> dt.date:
    return dt.date.fromordinal(draw.between(first.toordinal(), last.toordinal()))


def _person_declarations(
    world: World, person: Person, since: dt.date | None, director: bool
) -> Iterator[tuple[Any, ...]]:
    if since is None and not director and person.age() < 18:
        return  # children file nothing: no draw needed
    draw = world.draw("tax-declaration", person.index)
    last_year = world.today.year - 1
    alive_until = person.death_date or world.today
    if since is not None:
        for year in range(max(since.year, last_year - _HISTORY_YEARS + 1), last_year + 1):
            for period, period_end, due_first, due_last in (
                (1, dt.date(year, 6, 30), dt.date(year, 8, 1), dt.date(year, 8, 15)),
                (2, dt.date(year, 12, 31), dt.date(year + 1, 2, 1), dt.date(year + 1, 2, 15)),
            ):
                if period_end < since or due_first >= world.today:
                    continue
                income = draw.between(2_000_000, 60_000_000) * 100
                yield (
                    declaration_id("910.00", year, period, person.index),
                    person.iin,
                    "910.00",
                    year,
                    period,
                    _on(draw, due_first, due_last).isoformat(),
                    _status(draw, year == last_year),
                    income,
                    income * 3 // 100,
                )
    years: list[int] = []
    if since is not None or director:
        years = [2023, 2024]
    elif person.age() >= 18 and draw.chance(350):
        years = [2024]
    for year in years:
        submitted = _on(draw, dt.date(year + 1, 1, 15), dt.date(year + 1, 10, 15))
        if submitted >= alive_until or _birthday(person.birth_date, 18) > dt.date(year, 12, 31):
            continue
        employed = person.employer is not None
        income = draw.between(2_000_000, 15_000_000) if employed else draw.between(0, 2_000_000)
        other = draw.between(100_000, 2_000_000) if draw.chance(150) else 0
        yield (
            declaration_id("270.00", year, 0, person.index),
            person.iin,
            "270.00",
            year,
            0,
            submitted.isoformat(),
            _status(draw, year == 2024),
            (income + other) * 100,
            other * 10,  # 10 % of the income not taxed at source, in tiyn
        )


def _company_declarations(world: World, company: Company) -> Iterator[tuple[Any, ...]]:
    draw = world.draw("tax-declaration-company", company.index)
    last_year = world.today.year - 2  # 100.00 for a year is due by 31 March after it
    for year in range(max(company.registered.year, last_year - _HISTORY_YEARS + 1), last_year + 1):
        submitted = _on(draw, dt.date(year + 1, 1, 15), dt.date(year + 1, 3, 31))
        if company.liquidated is not None and company.liquidated <= submitted:
            break
        # Most companies are small; one in ten turns over ten times more.
        income = draw.between(10_000_000, 300_000_000) * (10 if draw.chance(100) else 1) * 100
        yield (
            declaration_id("100.00", year, 0, CAPACITY + company.index),
            company.bin,
            "100.00",
            year,
            0,
            submitted.isoformat(),
            _status(draw, year == last_year),
            income,
            income * draw.between(5, 30) // 1000,
        )


def _rows(world: World) -> Iterator[tuple[str, tuple[Any, ...]]]:
    companies = list(world.companies())
    directors = {c.director for c in companies if c.liquidated is None}
    for household in world.households():
        for person in household.members:
            since = entrepreneur_since(world, person)
            kind = _INDIVIDUAL if since is None else _ENTREPRENEUR
            yield (
                "taxpayer",
                (
                    person.iin,
                    "iin",
                    kind,
                    person.full_name if since is None else f"ИП {person.full_name}",
                    (since or max(person.birth_date, IIN_ERA)).isoformat(),
                    None if person.death_date is None else person.death_date.isoformat(),
                    tax_office(person.address.city.name),
                ),
            )
            for debt in person_debts(world, person, household):
                yield "debt", _debt_row(person.iin, debt)
            for row in _person_declarations(world, person, since, person.index in directors):
                yield "declaration", row
    for company in companies:
        yield (
            "taxpayer",
            (
                company.bin,
                "bin",
                _ENTITY,
                company.name,
                company.registered.isoformat(),
                None if company.liquidated is None else company.liquidated.isoformat(),
                tax_office(company.address.city.name),
            ),
        )
        for debt in company_debts(world, company):
            yield "debt", _debt_row(company.bin, debt)
        for row in _company_declarations(world, company):
            yield "declaration", row


def _debt_row(taxpayer_id: str, debt: SyntheticDebt) -> tuple[Any, ...]:
    return (
        taxpayer_id,
        debt.budget_code,
        BUDGET_CODES[debt.budget_code],
        debt.principal_tiyn,
        debt.since.isoformat(),
    )


_INSERTS = {"taxpayer": TAXPAYER_INSERT, "debt": DEBT_INSERT, "declaration": DECLARATION_INSERT}


def populate(db_path: Path, world: World) -> None:
    batches: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERTS}
    for table, row in _rows(world):
        batches[table].append(row)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        for table, sql in _INSERTS.items():
            conn.executemany(sql, batches[table])


def contract_samples(world: World) -> ContractSamples:
    entrepreneur = next(
        (p for p in world.persons() if entrepreneur_since(world, p) is not None), None
    )
    if entrepreneur is None:
        raise LookupError("the world has no entrepreneur: make it bigger")
    company = next(c for c in world.companies() if c.liquidated is None)
    adult = next(p for p in world.persons() if p.alive and p.age() >= 30)
    last_year = world.today.year - 1
    return ContractSamples(
        valid={
            "GetTaxpayer": [
                pb.GetTaxpayerRequest(id=pb.TaxpayerId(iin=entrepreneur.iin)),
                pb.GetTaxpayerRequest(id=pb.TaxpayerId(bin=company.bin)),
            ],
            "GetDebtStatus": [
                pb.GetDebtStatusRequest(id=pb.TaxpayerId(iin=adult.iin)),
                pb.GetDebtStatusRequest(id=pb.TaxpayerId(bin=company.bin)),
            ],
            "ListDeclarations": [
                pb.ListDeclarationsRequest(id=pb.TaxpayerId(iin=entrepreneur.iin)),
                pb.ListDeclarationsRequest(id=pb.TaxpayerId(bin=company.bin), tax_year=2023),
            ],
            "SubmitDeclaration": [
                pb.SubmitDeclarationRequest(
                    id=pb.TaxpayerId(iin=adult.iin),
                    form="270.00",
                    tax_year=last_year,
                    income_tiyn=6_000_000_00,
                    tax_tiyn=0,
                )
            ],
        },
    )
