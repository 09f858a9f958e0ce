"""Fill the ЕНПФ store from the synthetic world, and the contract samples.

Who has an account: every living adult with an employer; three in four other adults
of working age (they worked before); nine in ten pensioners (men from 63, women
from 61), whose savings are being paid out. Children and the dead have none (the
accounts of the dead are closed once their savings pass to the heirs).

Contributions: the store keeps the last 24 months in detail (older ones are in the
balance). An employee's employer (the world's `person.employer`) withholds ОПВ,
10 % of the salary capped at 50 minimum wages, every month since the person was
hired, and pays it between the 5th and the 25th of the next month; for persons born
in 1975 or later it also pays ОПВР from 2024 (1.5 %, 2.5 % in 2025). Working
pensioners pay nothing. One in eight adults without an employer pays voluntary
contributions themselves. Amounts are in tiyn; salaries follow a skewed
distribution around the national median.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from adapters.pension.store import (
    ACCOUNT_INSERT,
    AGENT_INSERT,
    CONTRIBUTION_INSERT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
)
from adapters.population import Person, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Sex
from govbus.pb.agencies.pension.v1 import pension_pb2 as pb

__all__ = [
    "FIRST_ACCOUNT_NUMBER",
    "WINDOW_MONTHS",
    "account_number",
    "contract_samples",
    "populate",
    "retirement_age",
    "window",
]

WINDOW_MONTHS = 24
FIRST_ACCOUNT_NUMBER = 1_000_000_000
_MINIMUM_WAGE = {2022: 60_000, 2023: 70_000, 2024: 85_000, 2025: 85_000, 2026: 85_000}
_OPV_CAP_WAGES = 50
#: ОПВР, in tenths of a percent of the salary, by year (none before 2024).
_OPVR_TENTHS = {2024: 15, 2025: 25, 2026: 35}
_OPVR_BORN_FROM = dt.date(1975, 1, 1)
#: Salaries in earlier years, in percent of the current one.
_SALARY_INDEX = {2022: 75, 2023: 82, 2024: 90, 2025: 100, 2026: 100}
_FUNDED_SINCE = dt.date(1998, 1, 1)
# Monthly salary bands in tenge and their cumulative weights (per mille).
_SALARY_BANDS = (
    (85_000, 150_000),
    (150_000, 300_000),
    (300_000, 500_000),
    (500_000, 900_000),
    (900_000, 2_500_000),
)
_SALARY_WEIGHTS = (180, 540, 800, 940, 1000)
_YEAR = 365.2425


def retirement_age(sex: Sex) -> int:
    return 63 if sex is Sex.MALE else 61


def account_number(person: Person) -> str:
    return f"{FIRST_ACCOUNT_NUMBER + person.index:010d}"


def window(today: dt.date) -> list[tuple[int, int]]:
    """(year, month) of the detailed periods: the last one is paid before `today`."""
    last = today.year * 12 + today.month - 1 - 2  # months since year 0, minus two
    return [divmod(m, 12) for m in range(last - WINDOW_MONTHS + 1, last + 1)]


def _anniversary(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return dt.date(day.year + years, 3, 1)


class _Fill:
    """One pass over the world: accounts and agents collected, contributions streamed."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.today = world.today
        periods = window(self.today)
        self.periods = [(y, m + 1, f"{y:04d}-{m + 1:02d}") for y, m in periods]
        self.window_start = dt.date(self.periods[0][0], self.periods[0][1], 1)
        self.years = sorted({y for y, _m, _p in self.periods})
        # Paid dates by day of the month (5…25): in the month after each period.
        self.paid_on = [
            [f"{y + (m == 12):04d}-{m % 12 + 1:02d}-{day:02d}" for y, m, _p in self.periods]
            for day in range(26)
        ]
        self.accounts: list[tuple[Any, ...]] = []
        self.agents: dict[int, tuple[int, str, dt.date]] = {}

    def _agent(self, company: int) -> tuple[int, str, dt.date]:
        agent = self.agents.get(company)
        if agent is None:
            c = self.world.company(company)
            agent = self.agents[company] = (company + 1, c.bin, c.registered)
        return agent

    def contributions(self) -> Iterator[tuple[Any, ...]]:
        for person in self.world.persons():
            if person.alive and person.age(self.today) >= 18:
                yield from self._person(person)

    def _person(self, person: Person) -> Iterator[tuple[Any, ...]]:
        today, draw = self.today, self.world.draw("pension", person.index)
        retired = person.age(today) >= retirement_age(person.sex)
        employed = person.employer is not None and not retired
        if not employed and not draw.chance(900 if retired else 750):
            return
        low, high = _SALARY_BANDS[draw.weighted(_SALARY_WEIGHTS)]
        salary = draw.between(low // 1000, high // 1000) * 1000
        adult = _anniversary(person.birth_date, 18)
        opened = max(_FUNDED_SINCE, adult + dt.timedelta(days=draw.between(0, 4 * 365)))
        opened = min(opened, today - dt.timedelta(days=1))
        account_id = len(self.accounts) + 1
        total, last_paid = 0, ""
        if employed:
            assert person.employer is not None
            hire = self._hired(person, person.employer, adult, draw)
            opened = min(opened, hire)
            total, last_paid = yield from self._employed(account_id, person, hire, salary, draw)
        elif not retired and draw.chance(125):
            total, last_paid = yield from self._voluntary(account_id, draw)
        # Savings from before the window.
        years_before = max(0.0, (self.window_start - opened).days / _YEAR)
        if retired:
            retired_on = _anniversary(person.birth_date, retirement_age(person.sex))
            years_before = max(0.0, (min(retired_on, self.window_start) - opened).days / _YEAR)
        # Gaps in employment and lower past wages (35 %), investment income (+15 %).
        before = int(salary * 10 * 12 * years_before * 35 // 100 * 115 // 100)
        if retired:
            before = before * draw.between(5, 60) // 100  # being paid out
        if not last_paid:
            last = self.window_start - dt.timedelta(days=draw.between(30, 3650))
            last_paid = max(last, opened).isoformat() if years_before > 0 else ""
        self.accounts.append(
            (
                account_id,
                person.iin,
                account_number(person),
                opened.isoformat(),
                before + total,
                last_paid,
            )
        )

    def _hired(self, person: Person, employer: int, adult: dt.date, draw: Any) -> dt.date:
        _agent_id, _bin, registered = self._agent(employer)
        worked = (self.today - adult).days
        hire = self.today - dt.timedelta(days=draw.between(30, max(30, min(15 * 365, worked))))
        return max(hire, registered + dt.timedelta(days=30))

    def _employed(
        self, account_id: int, person: Person, hire: dt.date, salary: int, draw: Any
    ) -> Generator[tuple[Any, ...], None, tuple[int, str]]:
        """ОПВ (and ОПВР) withheld by the employer every month since hiring."""
        assert person.employer is not None
        agent_id = self._agent(person.employer)[0]
        hired = (hire.year, hire.month)
        paid = self.paid_on[draw.between(5, 25)]
        opvr = person.birth_date >= _OPVR_BORN_FROM
        by_year = {}
        for year in self.years:
            base = min(salary * _SALARY_INDEX[year] // 100, _OPV_CAP_WAGES * _MINIMUM_WAGE[year])
            # 10 % of the base in tenge is base × 10 tiyn; ОПВР likewise in tenths.
            by_year[year] = (base * 10, base * _OPVR_TENTHS.get(year, 0) // 10 if opvr else 0)
        total = 0
        for i, (year, month, period) in enumerate(self.periods):
            if (year, month) < hired:
                continue
            mandatory, employer = by_year[year]
            total += mandatory + employer
            yield (account_id, period, agent_id, paid[i], mandatory, employer, 0)
        # The periods since hiring run to the window's end.
        return total, paid[-1] if total else ""

    def _voluntary(
        self, account_id: int, draw: Any
    ) -> Generator[tuple[Any, ...], None, tuple[int, str]]:
        """Voluntary contributions a person pays themselves, in most months."""
        wages = draw.between(1, 3)
        paid = self.paid_on[draw.between(5, 25)]
        total, last_paid = 0, ""
        for i, (year, _month, period) in enumerate(self.periods):
            if draw.chance(200):
                continue  # a month skipped: voluntary payers are irregular
            amount = _MINIMUM_WAGE[year] * wages * 10
            total += amount
            yield (account_id, period, 0, paid[i], 0, 0, amount)
            last_paid = paid[i]
        return total, last_paid


def populate(db_path: Path, world: World) -> None:
    fill = _Fill(world)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(CONTRIBUTION_INSERT, fill.contributions())
        conn.executemany(ACCOUNT_INSERT, fill.accounts)
        conn.execute(AGENT_INSERT, (0, ""))
        conn.executemany(AGENT_INSERT, ((a, b) for a, b, _ in fill.agents.values()))


def contract_samples(world: World) -> ContractSamples:
    today = world.today
    employee = next(
        p
        for p in world.persons()
        if p.alive and p.employer is not None and p.age(today) < retirement_age(p.sex)
    )
    child = next(p for p in world.persons() if p.alive and p.age(today) < 16)
    periods = window(today)
    first = f"{periods[0][0]:04d}-{periods[0][1] + 1:02d}"
    return ContractSamples(
        valid={
            "GetAccount": [pb.GetAccountRequest(iin=employee.iin)],
            "ListContributions": [
                pb.ListContributionsRequest(iin=employee.iin),
                pb.ListContributionsRequest(iin=employee.iin, from_period=first, to_period=first),
            ],
            # A child has no account until their first contribution.
            "OpenAccount": [pb.OpenAccountRequest(iin=child.iin)],
        },
        unknown={"GetAccount": [pb.GetAccountRequest(iin=world.unknown_iin())]},
    )
