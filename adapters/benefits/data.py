"""Fill the ГЦВП store from the synthetic world, and the contract samples.

What the world's persons receive (amounts in tiyn; МРП-based ones from `rates`):

- age pension from the day they reached the retirement age, ended at death;
- disability benefit for about 3.5 % of adults of working age (a few ended after
  re-examination, a few refused);
- for every child born since 2008, the birth grant (one-off, by birth order) and the
  childcare allowance until the child is 1.5, both to the mother, applied for
  together a few days after the birth;
- the large-family allowance to a mother of four or more while four are under 18;
- the survivor benefit to the surviving parent of a child under 18 whose other
  parent died;
- the funeral grant to the spouse of a pensioner who died.

An application is decided eight days after it is made: those made in the world's
last eight days are still pending. Payments of the last 24 months are kept, made
on a fixed day of each month per recipient. Choices come from
`world.draw("benefits", …)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.benefits.rates import (
    anniversary,
    birth_grant_tiyn,
    childcare_end,
    childcare_tiyn,
    funeral_grant_tiyn,
    large_family_tiyn,
    retirement_date,
)
from adapters.benefits.store import (
    BENEFIT_INSERT,
    INDEXES,
    PAYMENT_INSERT,
    SCHEMA_VERSION,
    TABLES,
)
from adapters.population import Household, Person, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Iin, Sex
from govbus.pb.agencies.benefits.v1 import benefits_pb2 as pb

__all__ = ["DECISION_DAYS", "PAYMENT_MONTHS", "contract_samples", "newborn_iin", "populate"]

DECISION_DAYS = 8
PAYMENT_MONTHS = 24
_RECORDS_FROM = dt.date(2008, 1, 1)  # the electronic records of the ГЦВП start here
_DISABILITY_PER_MILLE = 35
_LARGE_FAMILY = 4

_ACTIVE, _ENDED = pb.BENEFIT_STATUS_ACTIVE, pb.BENEFIT_STATUS_ENDED
_PENDING, _REFUSED = pb.BENEFIT_STATUS_PENDING, pb.BENEFIT_STATUS_REFUSED


def _tenge(draw: Any, low: int, high: int) -> int:
    """A monthly amount in tiyn, a whole number of tenge in [low, high]."""
    return int(draw.between(low, high)) * 100


class _Fill:
    def __init__(self, world: World) -> None:
        self.world = world
        self.today = today = world.today
        last = today.year * 12 + today.month - 2  # the month before today's, from year 0
        self.periods: list[tuple[str, int, dt.date, dt.date]] = []
        for year, month0 in (divmod(m, 12) for m in range(last - PAYMENT_MONTHS + 1, last + 1)):
            first = dt.date(year, month0 + 1, 1)
            following = dt.date(year + (month0 == 11), (month0 + 1) % 12 + 1, 1)
            self.periods.append((f"{first:%Y-%m}", year, first, following))
        self.benefits: list[tuple[Any, ...]] = []
        self.payments: list[tuple[Any, ...]] = []

    def _indexed(self, monthly: int) -> Callable[[int], int]:
        """Fixed benefits are raised each January: earlier years paid less."""
        this_year = self.today.year
        return lambda year: monthly * max(50, 100 - 7 * (this_year - year)) // 100

    def add(
        self,
        iin: str,
        kind: int,
        status: int,
        applied: dt.date,
        start: dt.date,
        end: dt.date | None,
        *,
        monthly: int = 0,
        one_off: int = 0,
        child: str = "",
    ) -> int:
        row_id = len(self.benefits) + 1
        self.benefits.append(
            (
                row_id,
                iin,
                kind,
                status,
                monthly,
                one_off,
                applied.isoformat(),
                start.isoformat(),
                "" if end is None else end.isoformat(),
                child,
            )
        )
        return row_id

    def pay_monthly(
        self,
        row_id: int,
        start: dt.date,
        end: dt.date | None,
        amount: Callable[[int], int],
        day: int,
        not_before: dt.date,
    ) -> None:
        """A payment for each month of the window in which the benefit ran."""
        for label, year, first, following in self.periods:
            if start >= following or (end is not None and end <= first):
                continue
            paid = max(first.replace(day=day), not_before)
            if paid >= self.today:
                continue
            self.payments.append((row_id, label, paid.isoformat(), amount(year)))

    def pay_once(self, row_id: int, paid: dt.date, amount: int) -> None:
        if paid >= self.today:
            return
        self.payments.append((row_id, f"{paid:%Y-%m}", paid.isoformat(), amount))

    # --- the benefits -------------------------------------------------------------

    def household(self, household: Household) -> None:
        for person in household.members:
            self.pension(person)
            self.disability(person)
        if household.marriage is None:
            return
        father, mother = household.members[0], household.members[1]
        children = household.members[2:]
        for number, child in enumerate(children, start=1):
            self.birth(mother, child, number)
            self.survivor(father, mother, child)
        self.large_family(mother, children)
        self.funeral(father, mother)
        self.funeral(mother, father)

    def pension(self, person: Person) -> None:
        start = retirement_date(person.birth_date, person.sex)
        end = person.death_date
        if start >= self.today or (end is not None and (end <= start or end < _RECORDS_FROM)):
            return
        draw = self.world.draw("benefits", "pension", person.index)
        applied = start - dt.timedelta(days=draw.between(0, 30))
        monthly = _tenge(draw, 75_000, 260_000)
        decided = applied + dt.timedelta(days=DECISION_DAYS)
        if decided >= self.today:
            self.add(person.iin, pb.BENEFIT_KIND_AGE_PENSION, _PENDING, applied, start, None)
            return
        status = _ACTIVE if end is None else _ENDED
        row_id = self.add(
            person.iin, pb.BENEFIT_KIND_AGE_PENSION, status, applied, start, end, monthly=monthly
        )
        day = draw.between(5, 20)
        self.pay_monthly(row_id, start, end, self._indexed(monthly), day, decided)

    def disability(self, person: Person) -> None:
        if not person.alive or person.age(self.today) < 18:
            return
        retired = retirement_date(person.birth_date, person.sex)
        if retired <= self.today:
            return
        draw = self.world.draw("benefits", "disability", person.index)
        if not draw.chance(_DISABILITY_PER_MILLE):
            return
        adult = anniversary(person.birth_date, 18)
        applied = adult + dt.timedelta(days=draw.between(0, (self.today - adult).days - 1))
        decided = applied + dt.timedelta(days=DECISION_DAYS)
        kind = pb.BENEFIT_KIND_DISABILITY
        if decided >= self.today:
            self.add(person.iin, kind, _PENDING, applied, applied, None)
            return
        roll = draw.below(100)
        if roll < 3:
            self.add(person.iin, kind, _REFUSED, applied, applied, None)
            return
        monthly = _tenge(draw, 45_000, 130_000)
        end = None
        if roll < 10:  # found able to work at a re-examination
            end = decided + dt.timedelta(days=draw.between(365, 3 * 365))
            end = end if end < self.today else None
        status = _ACTIVE if end is None else _ENDED
        row_id = self.add(person.iin, kind, status, applied, decided, end, monthly=monthly)
        day = draw.between(5, 20)
        self.pay_monthly(row_id, decided, end, self._indexed(monthly), day, decided)

    def birth(self, mother: Person, child: Person, number: int) -> None:
        """The birth grant and the childcare allowance, applied for together."""
        if child.birth_date < _RECORDS_FROM:
            return
        draw = self.world.draw("benefits", "birth", child.index)
        applied = child.birth_date + dt.timedelta(days=draw.between(3, 40))
        if applied >= self.today:
            return  # not applied for yet
        decided = applied + dt.timedelta(days=DECISION_DAYS)
        end = childcare_end(child.birth_date)
        if child.death_date is not None and child.death_date < end:
            end = child.death_date
        year = child.birth_date.year
        grant, allowance = birth_grant_tiyn(year, number), childcare_tiyn(year, number)
        if decided >= self.today:
            for kind, monthly, one_off, planned_end in (
                (pb.BENEFIT_KIND_BIRTH_GRANT, 0, grant, None),
                (pb.BENEFIT_KIND_CHILDCARE, allowance, 0, end),
            ):
                self.add(
                    mother.iin,
                    kind,
                    _PENDING,
                    applied,
                    applied,
                    planned_end,
                    monthly=monthly,
                    one_off=one_off,
                    child=child.iin,
                )
            return
        row_id = self.add(
            mother.iin,
            pb.BENEFIT_KIND_BIRTH_GRANT,
            _ENDED,
            applied,
            decided,
            decided,
            one_off=grant,
            child=child.iin,
        )
        self.pay_once(row_id, decided, grant)
        status = _ACTIVE if end > self.today else _ENDED
        row_id = self.add(
            mother.iin,
            pb.BENEFIT_KIND_CHILDCARE,
            status,
            applied,
            child.birth_date,
            end,
            monthly=allowance,
            child=child.iin,
        )
        day = draw.between(5, 20)
        self.pay_monthly(row_id, child.birth_date, end, lambda _y: allowance, day, decided)

    def large_family(self, mother: Person, children: tuple[Person, ...]) -> None:
        count = len(children)
        if count < _LARGE_FAMILY or not mother.alive:
            return
        fourth = children[_LARGE_FAMILY - 1].birth_date
        end = anniversary(children[count - _LARGE_FAMILY].birth_date, 18)
        if end < _RECORDS_FROM:
            return
        draw = self.world.draw("benefits", "large-family", mother.index)
        applied = fourth + dt.timedelta(days=draw.between(30, 90))
        decided = applied + dt.timedelta(days=DECISION_DAYS)
        if decided >= self.today:
            return
        status = _ACTIVE if end > self.today else _ENDED
        year = min(end, self.today).year
        row_id = self.add(
            mother.iin,
            pb.BENEFIT_KIND_LARGE_FAMILY,
            status,
            applied,
            decided,
            end,
            monthly=large_family_tiyn(year, count),
        )
        day = draw.between(5, 20)
        amount = lambda y: large_family_tiyn(y, count)  # noqa: E731 - МРП of the year paid
        self.pay_monthly(row_id, decided, end, amount, day, decided)

    def survivor(self, father: Person, mother: Person, child: Person) -> None:
        if not child.alive or child.age(self.today) >= 18:
            return
        for died, survivor in ((father, mother), (mother, father)):
            death = died.death_date
            if death is None or death < max(_RECORDS_FROM, child.birth_date) or not survivor.alive:
                continue
            draw = self.world.draw("benefits", "survivor", child.index)
            applied = death + dt.timedelta(days=draw.between(15, 60))
            decided = applied + dt.timedelta(days=DECISION_DAYS)
            if decided >= self.today:
                return
            monthly = _tenge(draw, 40_000, 95_000)
            end = anniversary(child.birth_date, 18)
            row_id = self.add(
                survivor.iin,
                pb.BENEFIT_KIND_SURVIVOR,
                _ACTIVE,
                applied,
                decided,
                end,
                monthly=monthly,
                child=child.iin,
            )
            day = draw.between(5, 20)
            self.pay_monthly(row_id, decided, end, self._indexed(monthly), day, decided)
            return

    def funeral(self, died: Person, spouse: Person) -> None:
        death = died.death_date
        if death is None or death < _RECORDS_FROM:
            return
        if retirement_date(died.birth_date, died.sex) > death:
            return  # the grant is for the funeral of a pensioner
        if spouse.death_date is not None and spouse.death_date <= death:
            return
        draw = self.world.draw("benefits", "funeral", died.index)
        applied = death + dt.timedelta(days=draw.between(3, 20))
        decided = applied + dt.timedelta(days=DECISION_DAYS)
        if decided >= self.today:
            return
        grant = funeral_grant_tiyn(decided.year)
        kind = pb.BENEFIT_KIND_FUNERAL_GRANT
        row_id = self.add(spouse.iin, kind, _ENDED, applied, decided, decided, one_off=grant)
        self.pay_once(row_id, decided, grant)


def populate(db_path: Path, world: World) -> None:
    fill = _Fill(world)
    for household in world.households():
        fill.household(household)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(BENEFIT_INSERT, fill.benefits)
        fill.payments.sort()
        conn.executemany(PAYMENT_INSERT, fill.payments)


def newborn_iin(day: dt.date, serial: int, sex: Sex = Sex.FEMALE) -> str:
    built = Iin.build(day, sex, serial) or Iin.build(day, sex, serial + 1)
    assert built is not None
    return built.value


def contract_samples(world: World) -> ContractSamples:
    today = world.today
    mother = next(
        h.members[1]
        for h in world.households()
        if h.marriage is not None
        and len(h.members) > 2
        and h.members[1].alive
        and h.members[-1].birth_date >= _RECORDS_FROM
        and h.members[1].age(today) < 45
    )
    pensioner = next(
        p
        for p in world.persons()
        if p.alive and retirement_date(p.birth_date, p.sex) < today - dt.timedelta(days=400)
    )
    return ContractSamples(
        valid={
            "ListBenefits": [pb.ListBenefitsRequest(iin=mother.iin)],
            "ListPayments": [
                pb.ListPaymentsRequest(iin=pensioner.iin),
                pb.ListPaymentsRequest(
                    iin=pensioner.iin, from_period="2025-01", to_period="2025-06"
                ),
            ],
            "ApplyForBenefit": [
                pb.ApplyForBenefitRequest(
                    iin=mother.iin,
                    kind=pb.BENEFIT_KIND_BIRTH_GRANT,
                    child_iin=newborn_iin(today, 9200 + world.seed % 300 * 2),
                )
            ],
        },
    )
