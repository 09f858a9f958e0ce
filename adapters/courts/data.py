"""Fill the courts and enforcement store from the synthetic world, and the contract samples.

What the register holds, derived from the world and `world.draw("courts", …)`:

- **Divorces through court.** A couple of the world that divorced with children
  under 18 went through a district court (without children ЗАГС alone dissolves a
  marriage); the decision comes some days before the ЗАГС act's dissolution date,
  and alimony is awarded in the same case. A third of those fathers fell behind:
  an alimony enforcement proceeding, with a travel ban while it is open.
- **Debts.** About one adult in eleven has had an enforcement proceeding for a bank
  or microcredit loan (on a notary's executive inscription or a court decision),
  and as many for small utility or telecom debts (on a court order); roughly half
  of them are still open. Amounts in tiyn, skewed small.
- **Restrictions** follow the law on enforcement (art. 33): a travel ban for unpaid
  alimony or a debt above 40 МРП (2026: 4 325 ₸); accounts arrested; the debtor's
  home arrested if they own it (`world.property_of`), their cars barred from
  re-registration if they have any (`world.vehicles_of`).
- **Deprivations of the right to drive** decided by an administrative court: the
  licence register's own deprivations (`adapters.licences.data.deprivations_of`).
- **Labour disputes** of employees against their employer (the world's company),
  and victims' civil claims in criminal cases — rare.
- **Companies**: economic disputes between two of the world's companies, with an
  enforcement proceeding against the debtor company, closed when it is liquidated.

A deceased debtor's loan proceedings are suspended (the heirs take the debt over);
alimony ends with the debtor's death.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.courts.store import (
    CASE_INSERT,
    INDEXES,
    PARTY_INSERT,
    PROCEEDING_INSERT,
    SCHEMA_VERSION,
    TABLES,
)
from adapters.licences.data import anniversary, deprivations_of
from adapters.population import Company, Draw, Household, Person, World
from adapters.population.geography import CITIES, City
from adapters.population.names import FEMALE_FIRST, MALE_FIRST, SURNAMES, NameStyle
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.errors import InvalidIdentifier
from govbus.pb.agencies.courts.v1 import courts_pb2 as pb

__all__ = [
    "MRP_TIYN",
    "RESTRICTION_ACCOUNTS",
    "RESTRICTION_PROPERTY",
    "RESTRICTION_TRAVEL",
    "RESTRICTION_VEHICLES",
    "TRAVEL_BAN_FROM_TIYN",
    "Case",
    "Proceeding",
    "company_records",
    "contract_samples",
    "household_records",
    "parse_proceeding_number",
    "populate",
]

#: Monthly calculation index (МРП) of 2026, 4 325 ₸, in tiyn.
MRP_TIYN = 4_325_00
#: Above 40 МРП a debtor may not leave the country (law on enforcement, art. 33).
TRAVEL_BAN_FROM_TIYN = 40 * MRP_TIYN
RESTRICTION_TRAVEL = "временное ограничение на выезд из Республики Казахстан"
RESTRICTION_ACCOUNTS = "арест банковских счетов"
RESTRICTION_PROPERTY = "арест недвижимого имущества"
RESTRICTION_VEHICLES = "запрет регистрационных действий с транспортными средствами"

OPEN = pb.PROCEEDING_STATUS_OPEN
CLOSED = pb.PROCEEDING_STATUS_CLOSED
SUSPENDED = pb.PROCEEDING_STATUS_SUSPENDED
_CIVIL, _ADMIN, _CRIMINAL = pb.CASE_KIND_CIVIL, pb.CASE_KIND_ADMINISTRATIVE, pb.CASE_KIND_CRIMINAL
_PLAINTIFF, _DEFENDANT = pb.PARTY_ROLE_PLAINTIFF, pb.PARTY_ROLE_DEFENDANT

_KIND_DIGIT: dict[int, int] = {_CIVIL: 2, _ADMIN: 3, _CRIMINAL: 1}
_PROCEEDING_NUMBER = re.compile(r"\d{2}-\d{2}-\d{9}")
_COMPANY_SERIALS = 40_000_000  # above every person's serials (8 per person, ≤ 4,000,000 persons)
_DECIDED = {
    _CIVIL: "решение вступило в законную силу",
    _ADMIN: "постановление вступило в законную силу",
    _CRIMINAL: "приговор вступил в законную силу",
}
PENDING = "находится в производстве"
_BANKS = (
    "АО «Kaspi Bank»",
    "АО «Народный Банк Казахстана»",
    "АО «Банк ЦентрКредит»",
    "АО «Home Credit Bank»",
    "АО «Евразийский банк»",
    "АО «ForteBank»",
    "ТОО «МФО Shinhan Finance»",
    "ТОО «МФО KMF»",
    "ТОО «МФО Solva»",
)
_UTILITIES = (
    "АО «Казахтелеком»",
    "ТОО «Энергосбыт г. {city}»",
    "ГКП «Водоканал г. {city}»",
    "ТОО «Теплосети г. {city}»",
    "ТОО «Kcell»",
)
# Loan amounts in ₸ by bucket (weights ‰): most are small consumer loans.
_LOAN_BUCKETS = ((300, 50_000, 300_000), (400, 300_000, 1_500_000), (250, 1_500_000, 8_000_000))
_LOAN_CUMULATIVE = (300, 700, 950, 1000)
_LOAN_LARGE = (8_000_000, 40_000_000)
_CITY_INDEX = {city.code: n for n, city in enumerate(CITIES)}
_OFFICERS_PER_CITY = 12


@dataclass(frozen=True, slots=True)
class Case:
    number: str
    court: str
    kind: int  # kz.gov.courts.v1.CaseKind
    subject: str
    filed: dt.date
    status: str
    decision: dt.date | None
    parties: tuple[tuple[str, int], ...]  # (IIN or BIN, PartyRole)


@dataclass(frozen=True, slots=True)
class Proceeding:
    number: str
    debtor: str
    debtor_is_company: bool
    creditor: str
    officer: str
    basis: str
    amount_tiyn: int
    opened: dt.date
    status: int  # kz.gov.courts.v1.ProceedingStatus
    closed: dt.date | None
    close_reason: str | None
    restrictions: tuple[str, ...]


def parse_proceeding_number(text: str, field: str = "number") -> str:
    """An enforcement proceeding number "RR-YY-NNNNNNNNN" (region, year, serial)."""
    value = text.strip() if isinstance(text, str) else ""
    if not value:
        raise InvalidIdentifier(f"{field}: a proceeding number RR-YY-NNNNNNNNN is required")
    if not _PROCEEDING_NUMBER.fullmatch(value) or not value.isascii():
        raise InvalidIdentifier(
            f"{field}: {value[:24]!r} is not a proceeding number RR-YY-NNNNNNNNN"
        )
    return value


def _proceeding_number(city: City, opened: dt.date, serial: int) -> str:
    return f"{city.region.code:02d}-{opened.year % 100:02d}-{serial:09d}"


def _court(city: City, kind: str, n: int = 1) -> tuple[str, str]:
    """(court code, court name) of a city's court of a kind."""
    code = f"{_CITY_INDEX[city.code] + 1:02d}"
    if kind == "district":
        return f"{code}1{n}", f"Районный суд №{n} г. {city.name}"
    if kind == "economic":
        return f"{code}20", f"Специализированный межрайонный экономический суд г. {city.name}"
    if kind == "administrative":
        return f"{code}30", f"Специализированный административный суд г. {city.name}"
    return f"{code}40", f"Специализированный межрайонный суд по уголовным делам г. {city.name}"


def _case_number(court_code: str, filed: dt.date, kind: int, serial: int) -> str:
    digit = _KIND_DIGIT[kind]
    return f"{court_code}-{filed.year % 100:02d}-00-{digit}/{serial}"


def _officer(world: World, city: City, draw: Draw) -> str:
    """A private enforcement officer (ЧСИ) of the city, one of a dozen."""
    n = draw.below(_OFFICERS_PER_CITY)
    names = world.draw("courts-officer", city.code, n)
    style = NameStyle.KAZAKH if names.chance(700) else NameStyle.RUSSIAN
    male = names.chance(550)
    surname = names.pick(SURNAMES[style]) + ("" if male else "а")
    first = names.pick((MALE_FIRST if male else FEMALE_FIRST)[style])
    father = names.pick(MALE_FIRST[style])
    return f"ЧСИ {surname} {first[0]}.{father[0]}. (г. {city.name})"


def _state_officer(city: City) -> str:
    return f"ГСИ Департамента юстиции {city.region.name if city.region.code > 2 else city.name}"


def _days(draw: Draw, low: int, high: int) -> dt.timedelta:
    return dt.timedelta(days=draw.between(low, max(low, high)))


def _restrictions(
    amount: int, status: int, *, alimony: bool, owns_home: bool, owns_cars: bool
) -> tuple[str, ...]:
    """The restrictions of a proceeding in a status: none once closed; a suspended one
    keeps its arrests but not the travel ban."""
    if status == CLOSED:
        return ()
    found = []
    if status == OPEN and (alimony or amount > TRAVEL_BAN_FROM_TIYN):
        found.append(RESTRICTION_TRAVEL)
    found.append(RESTRICTION_ACCOUNTS)
    if owns_home:
        found.append(RESTRICTION_PROPERTY)
    if owns_cars:
        found.append(RESTRICTION_VEHICLES)
    return tuple(found)


def _loan_amount(draw: Draw) -> int:
    bucket = draw.weighted(_LOAN_CUMULATIVE)
    low, high = _LOAN_LARGE if bucket == len(_LOAN_BUCKETS) else _LOAN_BUCKETS[bucket][1:]
    return draw.between(low, high) * 100 + draw.below(100)


def _divorce(world: World, household: Household) -> tuple[list[Case], list[Proceeding]]:
    marriage = household.marriage
    if marriage is None or marriage.divorced is None:
        return [], []
    minors = [
        child
        for child in household.members[2:]
        if child.birth_date < marriage.divorced and child.age(marriage.divorced) < 18
    ]
    if not minors:
        return [], []  # dissolved by ЗАГС alone
    husband, wife = household.members[0], household.members[1]
    draw = world.draw("courts-divorce", household.id)
    city = household.address.city
    court_code, court = _court(city, "district", 1 + household.address.slot % 3)
    decided = marriage.divorced - _days(draw, 10, 30)
    filed = decided - _days(draw, 30, 90)
    wife_sued = draw.chance(800)
    number = _case_number(court_code, filed, _CIVIL, husband.index * 8)
    case = Case(
        number=number,
        court=court,
        kind=_CIVIL,
        subject="о расторжении брака и взыскании алиментов",
        filed=filed,
        status=_DECIDED[_CIVIL],
        decision=decided,
        parties=(
            (wife.iin, _PLAINTIFF if wife_sued else _DEFENDANT),
            (husband.iin, _DEFENDANT if wife_sued else _PLAINTIFF),
        ),
    )
    if not draw.chance(350):
        return [case], []
    end = husband.death_date or world.today
    opened = decided + _days(draw, 60, 900)
    if opened >= end - dt.timedelta(days=14):
        return [case], []
    youngest_adult = anniversary(minors[-1].birth_date, 18)
    if youngest_adult <= opened:
        return [case], []
    amount = draw.between(100_000, 2_500_000) * 100
    status, closed, reason = OPEN, None, None
    if husband.death_date is not None:
        status, closed, reason = CLOSED, husband.death_date, "debtor deceased"
    elif youngest_adult < end or draw.chance(300):
        status, reason = CLOSED, "paid"
        closed = min(youngest_adult, opened + _days(draw, 60, (end - opened).days - 1))
        closed = max(closed, opened + dt.timedelta(days=1))
    owns_home = husband.index in world.property_of(household).owners
    proceeding = Proceeding(
        number=_proceeding_number(city, opened, husband.index * 8),
        debtor=husband.iin,
        debtor_is_company=False,
        creditor=wife.full_name,
        officer=_state_officer(city),
        basis=number,
        amount_tiyn=amount,
        opened=opened,
        status=status,
        closed=closed,
        close_reason=reason,
        restrictions=_restrictions(
            amount, status, alimony=True, owns_home=owns_home, owns_cars=husband.vehicles > 0
        ),
    )
    return [case], [proceeding]


def _debt(
    world: World,
    person: Person,
    draw: Draw,
    slot: int,
    *,
    open_now: bool,
    loan: bool,
    owns_home: bool,
) -> tuple[list[Case], list[Proceeding]]:
    """One loan (slot 1) or small-debt (slot 2) proceeding of a person."""
    end = person.death_date or world.today
    earliest = anniversary(person.birth_date, 21 if loan else 18)
    if open_now:
        window = (end - dt.timedelta(days=5 * 365), end - dt.timedelta(days=14))
    else:
        window = (end - dt.timedelta(days=9 * 365), end - dt.timedelta(days=200))
    low = max(window[0], earliest)
    if low >= window[1]:
        return [], []
    opened = low + _days(draw, 0, (window[1] - low).days)
    city = person.address.city
    serial = person.index * 8 + slot
    if loan:
        creditor = draw.pick(_BANKS)
        amount = _loan_amount(draw)
    else:
        creditor = draw.pick(_UTILITIES).format(city=city.name)
        amount = draw.between(15_000, 200_000) * 100 + draw.below(100)
    cases: list[Case] = []
    if loan and draw.chance(600):
        basis = f"исполнительная надпись нотариуса от {opened - _days(draw, 10, 40)}"
    else:
        court_code, court = _court(city, "district", 1 + person.address.slot % 3)
        decided = opened - _days(draw, 15, 60)
        filed = decided - _days(draw, 5 if not loan else 30, 20 if not loan else 120)
        number = _case_number(court_code, filed, _CIVIL, serial)
        subject = (
            "о взыскании задолженности по договору займа"
            if loan
            else "о выдаче судебного приказа о взыскании задолженности"
        )
        cases.append(
            Case(
                number,
                court,
                _CIVIL,
                subject,
                filed,
                _DECIDED[_CIVIL],
                decided,
                ((person.iin, _DEFENDANT),),
            )
        )
        basis = number
    status, closed, reason = _debt_outcome(person, draw, opened, window[1], open_now, loan)
    restrictions = _restrictions(
        amount, status, alimony=False, owns_home=owns_home, owns_cars=person.vehicles > 0
    )
    proceeding = Proceeding(
        number=_proceeding_number(city, opened, serial),
        debtor=person.iin,
        debtor_is_company=False,
        creditor=creditor,
        officer=_officer(world, city, draw),
        basis=basis,
        amount_tiyn=amount,
        opened=opened,
        status=status,
        closed=closed,
        close_reason=reason,
        restrictions=restrictions,
    )
    return cases, [proceeding]


def _debt_outcome(
    person: Person, draw: Draw, opened: dt.date, latest: dt.date, open_now: bool, loan: bool
) -> tuple[int, dt.date | None, str | None]:
    """(status, closed date, reason) of a debt proceeding opened on `opened`."""
    if person.death_date is not None and open_now:
        # The heirs take a loan over (suspended until they are known); other debts end.
        if loan:
            return SUSPENDED, None, None
        return CLOSED, person.death_date, "debtor deceased"
    if open_now:
        return (SUSPENDED if draw.chance(70) else OPEN), None, None
    closed = opened + _days(draw, 30, (latest - opened).days + 150)
    return CLOSED, closed, draw.pick(("paid",) * 5 + ("withdrawn", "impossible"))


def _labour_dispute(
    world: World, person: Person, employer_index: int, draw: Draw, end: dt.date
) -> Case | None:
    """An employee's claim against their employer (the world's company) for wages."""
    employer = world.company(employer_index)
    city = person.address.city
    court_code, court = _court(city, "district", 1 + person.address.slot % 3)
    filed = max(end - _days(draw, 20, 3 * 365), employer.registered + dt.timedelta(days=30))
    decided = filed + _days(draw, 60, 150)
    if filed >= end or person.age(filed) < 18:
        return None
    return Case(
        number=_case_number(court_code, filed, _CIVIL, person.index * 8 + 3),
        court=court,
        kind=_CIVIL,
        subject="трудовой спор: о взыскании заработной платы",
        filed=filed,
        status=_DECIDED[_CIVIL] if decided < end else PENDING,
        decision=decided if decided < end else None,
        parties=((person.iin, _PLAINTIFF), (employer.bin, _DEFENDANT)),
    )


def _person_cases(world: World, person: Person, draw: Draw) -> list[Case]:
    """Deprivations of the right to drive, labour disputes, victims' claims."""
    cases = []
    city = person.address.city
    for deprivation in deprivations_of(world, person):
        court_code, court = _court(city, "administrative")
        decided = deprivation.start - dt.timedelta(days=10)
        filed = decided - _days(draw, 5, 30)
        cases.append(
            Case(
                number=_case_number(court_code, filed, _ADMIN, person.index * 8 + 5),
                court=court,
                kind=_ADMIN,
                subject="о лишении права управления транспортными средствами",
                filed=filed,
                status=_DECIDED[_ADMIN],
                decision=decided,
                parties=((person.iin, _DEFENDANT),),
            )
        )
    end = person.death_date or world.today
    if person.employer is not None and draw.chance(4):
        dispute = _labour_dispute(world, person, person.employer, draw, end)
        if dispute is not None:
            cases.append(dispute)
    if person.age(end) >= 18 and draw.chance(4):
        court_code, court = _court(city, "criminal")
        adult = anniversary(person.birth_date, 18)
        filed = max(adult, end - _days(draw, 60, 6 * 365))
        decided = filed + _days(draw, 30, 200)
        if filed < end:
            cases.append(
                Case(
                    number=_case_number(court_code, filed, _CRIMINAL, person.index * 8 + 4),
                    court=court,
                    kind=_CRIMINAL,
                    subject="гражданский иск потерпевшего в уголовном деле",
                    filed=filed,
                    status=_DECIDED[_CRIMINAL] if decided < end else PENDING,
                    decision=decided if decided < end else None,
                    parties=((person.iin, _PLAINTIFF),),
                )
            )
    return cases


def household_records(world: World, household: Household) -> tuple[list[Case], list[Proceeding]]:
    """Every case and proceeding of a household's members."""
    cases, proceedings = _divorce(world, household)
    owners = world.property_of(household).owners
    for person in household.members:
        if person.age(person.death_date or world.today) < 18:
            continue
        draw = world.draw("courts", person.index)
        cases.extend(_person_cases(world, person, draw))
        for slot, loan in ((1, True), (2, False)):
            roll = draw.below(1000)
            if roll >= 90:
                continue
            found_cases, found = _debt(
                world,
                person,
                draw,
                slot,
                open_now=roll < 45,
                loan=loan,
                owns_home=person.index in owners,
            )
            cases.extend(found_cases)
            proceedings.extend(found)
    return cases, proceedings


def company_records(world: World, company: Company) -> tuple[list[Case], list[Proceeding]]:
    """An economic dispute won by another company of the world, and its enforcement."""
    draw = world.draw("courts-company", company.index)
    roll = draw.below(1000)
    if roll >= 70 or world.company_count < 2:
        return [], []
    end = company.liquidated or world.today
    low = company.registered + dt.timedelta(days=365)
    high = end - dt.timedelta(days=120)
    if low >= high:
        return [], []
    creditor = world.company(
        (company.index + 1 + draw.below(world.company_count - 1)) % world.company_count
    )
    city = company.address.city
    court_code, court = _court(city, "economic")
    filed = low + _days(draw, 0, (high - low).days)
    decided = filed + _days(draw, 40, 110)
    serial = _COMPANY_SERIALS + company.index * 8
    number = _case_number(court_code, filed, _CIVIL, serial)
    case = Case(
        number=number,
        court=court,
        kind=_CIVIL,
        subject="о взыскании задолженности по договору поставки",
        filed=filed,
        status=_DECIDED[_CIVIL],
        decision=decided,
        parties=((creditor.bin, _PLAINTIFF), (company.bin, _DEFENDANT)),
    )
    opened = decided + _days(draw, 20, 90)
    if opened >= end:
        return [case], []
    amount = draw.between(500_000, 60_000_000) * 100
    status, closed, reason = OPEN, None, None
    if company.liquidated is not None:
        status, closed, reason = CLOSED, company.liquidated, "debtor liquidated"
    elif roll >= 30:
        status, reason = CLOSED, "paid"
        closed = opened + _days(draw, 30, (end - opened).days - 1)
    restrictions = _restrictions(amount, status, alimony=False, owns_home=False, owns_cars=False)
    proceeding = Proceeding(
        number=_proceeding_number(city, opened, serial),
        debtor=company.bin,
        debtor_is_company=True,
        creditor=creditor.name,
        officer=_officer(world, city, draw),
        basis=number,
        amount_tiyn=amount,
        opened=opened,
        status=status,
        closed=closed,
        close_reason=reason,
        restrictions=restrictions,
    )
    return [case], [proceeding]


def _all_records(world: World) -> Iterator[tuple[list[Case], list[Proceeding]]]:
    for household in world.households():
        yield household_records(world, household)
    for company in world.companies():
        yield company_records(world, company)


def populate(db_path: Path, world: World) -> None:
    cases: list[tuple[Any, ...]] = []
    parties: list[tuple[Any, ...]] = []
    proceedings: list[tuple[Any, ...]] = []
    for found_cases, found in _all_records(world):
        for case in found_cases:
            cases.append(
                (
                    case.number,
                    case.court,
                    case.kind,
                    case.subject,
                    case.filed.isoformat(),
                    case.status,
                    None if case.decision is None else case.decision.isoformat(),
                )
            )
            parties.extend((party, case.number, role) for party, role in case.parties)
        for p in found:
            proceedings.append(
                (
                    p.number,
                    p.debtor,
                    1 if p.debtor_is_company else 0,
                    p.creditor,
                    p.officer,
                    p.basis,
                    p.amount_tiyn,
                    p.opened.isoformat(),
                    p.status,
                    None if p.closed is None else p.closed.isoformat(),
                    p.close_reason,
                    "\n".join(p.restrictions),
                )
            )
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(CASE_INSERT, cases)
        conn.executemany(PARTY_INSERT, parties)
        conn.executemany(PROCEEDING_INSERT, proceedings)


def contract_samples(world: World) -> ContractSamples:
    debtor: Proceeding | None = None
    for household in world.households():
        for p in household_records(world, household)[1]:
            if p.status == OPEN:
                debtor = p
                break
        if debtor is not None:
            break
    company = next((c for c in world.companies() if company_records(world, c)[1]), world.company(0))
    assert debtor is not None, "the world has no open proceeding: make it bigger"
    region = debtor.number[:2]
    return ContractSamples(
        valid={
            "GetDebtorStatus": [pb.GetDebtorStatusRequest(party=pb.Party(iin=debtor.debtor))],
            "ListProceedings": [
                pb.ListProceedingsRequest(party=pb.Party(iin=debtor.debtor)),
                pb.ListProceedingsRequest(party=pb.Party(bin=company.bin), open_only=True),
            ],
            "ListCourtCases": [
                pb.ListCourtCasesRequest(party=pb.Party(iin=debtor.debtor)),
                pb.ListCourtCasesRequest(party=pb.Party(bin=company.bin)),
            ],
            "CloseProceeding": [
                pb.CloseProceedingRequest(
                    number=debtor.number, reason="paid", closed_date=world.today.isoformat()
                )
            ],
        },
        unknown={
            "CloseProceeding": [
                pb.CloseProceedingRequest(number=f"{region}-25-999999999", reason="paid")
            ],
        },
        unknown_answered={"GetDebtorStatus"},
        invalid={
            "CloseProceeding": [pb.CloseProceedingRequest(number="ИП-123", reason="paid")],
        },
    )
