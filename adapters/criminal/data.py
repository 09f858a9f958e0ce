"""Fill the КПСиСУ store from the synthetic world, and the contract samples.

Most people have no criminal record. By this registry's own draws
(`world.draw("criminal", person)`): about 6 % of men and 1 % of women of 16 and over
were convicted once (a fifth of them twice), from 1995 on, by a court of the city
they live in, under a few common articles of the Criminal Code, with a sentence that
fits the gravity of the offence. A conviction is spent (expunged) by law after the
sentence plus one year (non-custodial), at the end of probation, or three, six or
eight years after release by gravity; most old convictions are spent by now.

A few living persons are on the wanted list (mostly convicts who left probation).
About one adult in eight got a certificate in the two years before the world's date
(the most common e-certificate of the ЦОН); each keeps the convictions it showed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.criminal.store import (
    CERTIFICATE_CONVICTION_INSERT,
    CERTIFICATE_INSERT,
    CONVICTION_INSERT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    WANTED_INSERT,
)
from adapters.population import Draw, Person, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Sex
from govbus.pb.agencies.criminal.v1 import criminal_pb2 as pb

__all__ = [
    "PURPOSES",
    "SyntheticCertificate",
    "SyntheticConviction",
    "certificate_number",
    "certificate_of",
    "contract_samples",
    "convictions_of",
    "court_of",
    "populate",
    "wanted_of",
]

#: Certificate purposes, and whether the certificate discloses spent convictions too
#: (work with children, adoption and guardianship need the whole history).
PURPOSES: dict[str, bool] = {
    "employment": False,
    "visa": False,
    "residence-permit": False,
    "firearms-licence": False,
    "personal": False,
    "work-with-minors": True,
    "adoption": True,
    "guardianship": True,
}
_PURPOSE_WEIGHTS = (
    ("employment", 600),
    ("visa", 180),
    ("work-with-minors", 100),
    ("personal", 50),
    ("firearms-licence", 30),
    ("residence-permit", 20),
    ("adoption", 12),
    ("guardianship", 8),
)
_PURPOSE_CUMULATIVE = tuple(
    sum(w for _, w in _PURPOSE_WEIGHTS[: k + 1]) for k in range(len(_PURPOSE_WEIGHTS))
)
_RESPONSIBILITY_AGE = 16
_REGISTER_START = dt.date(1995, 1, 1)
_PER_PERSON = 4  # case numbers reserved per person index
# Years after release before a custodial sentence is spent, by gravity (1…4).
_SPENT_AFTER_RELEASE = {1: 3, 2: 3, 3: 6, 4: 8}


@dataclass(frozen=True, slots=True)
class Article:
    code: str
    title: str
    gravity: int  # 1 small, 2 medium, 3 grave, 4 especially grave
    weight: int


ARTICLES: tuple[Article, ...] = (
    Article("188 ч.1", "Кража", 1, 22),
    Article("188 ч.2", "Кража", 2, 14),
    Article("190 ч.2", "Мошенничество", 2, 12),
    Article("191 ч.1", "Грабёж", 2, 6),
    Article("191 ч.2", "Грабёж", 3, 3),
    Article("293 ч.1", "Хулиганство", 2, 9),
    Article("296 ч.1", "Незаконное обращение с наркотическими средствами без цели сбыта", 1, 9),
    Article("345 ч.2", "Нарушение правил дорожного движения, повлёкшее смерть человека", 2, 6),
    Article("107 ч.1", "Умышленное причинение средней тяжести вреда здоровью", 2, 7),
    Article("106 ч.1", "Умышленное причинение тяжкого вреда здоровью", 3, 4),
    Article("189 ч.2", "Присвоение или растрата вверенного чужого имущества", 2, 5),
    Article("367 ч.1", "Дача взятки", 2, 2),
    Article("99 ч.1", "Убийство", 4, 1),
)
_ARTICLE_CUMULATIVE = tuple(sum(a.weight for a in ARTICLES[: k + 1]) for k in range(len(ARTICLES)))


@dataclass(frozen=True, slots=True)
class SyntheticConviction:
    case_number: str
    article: str
    court: str
    verdict: dt.date
    sentence: str
    expunged_on: dt.date | None


def court_of(person: Person) -> str:
    return f"Специализированный межрайонный суд по уголовным делам г. {person.address.city.name}"


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return dt.date(day.year + years, 3, 1)


def _years(n: int) -> str:
    return f"{n} {'год' if n == 1 else 'года' if n < 5 else 'лет'}"


def _sentence(article: Article, verdict: dt.date, draw: Draw) -> tuple[str, dt.date | None]:
    """The sentence and the day it is spent."""
    roll = draw.below(100)
    if article.gravity == 1 and roll < 50:
        return f"штраф в размере {100 * draw.between(1, 5)} МРП", _years_after(verdict, 1)
    if article.gravity <= 2 and roll < 80:
        if roll < 65:
            probation = draw.between(1, 3)
            term = draw.between(1, 4)
            return (
                f"лишение свободы сроком на {_years(term)} условно "
                f"с испытательным сроком {_years(probation)}",
                _years_after(verdict, probation),
            )
        term = draw.between(1, 3)
        return f"ограничение свободы сроком на {_years(term)}", _years_after(verdict, term + 1)
    if article.gravity == 4:
        term = draw.between(10, 20)
    elif article.gravity == 3:
        term = draw.between(3, 8)
    else:
        term = draw.between(1, 4)
    spent = _years_after(verdict, term + _SPENT_AFTER_RELEASE[article.gravity])
    return f"лишение свободы сроком на {_years(term)}", spent


def convictions_of(world: World, person: Person) -> list[SyntheticConviction]:
    """The convictions of one person (pure: the same in every process)."""
    draw = world.draw("criminal", person.index)
    if not draw.chance(60 if person.sex is Sex.MALE else 10):
        return []
    start = max(_REGISTER_START, _years_after(person.birth_date, _RESPONSIBILITY_AGE))
    end = world.today if person.death_date is None else person.death_date
    if (end - start).days < 30:
        return []
    count = 2 if draw.chance(200) else 1
    verdicts = sorted(
        start + dt.timedelta(days=draw.below((end - start).days)) for _ in range(count)
    )
    region = person.address.region.code
    convictions = []
    for k, verdict in enumerate(verdicts):
        article = ARTICLES[draw.weighted(_ARTICLE_CUMULATIVE)]
        sentence, spent = _sentence(article, verdict, draw)
        convictions.append(
            SyntheticConviction(
                case_number=(
                    f"{verdict.year % 100:02d}{region:02d}{person.index * _PER_PERSON + k:011d}"
                ),
                article=f"{article.code} — {article.title}",
                court=court_of(person),
                verdict=verdict,
                sentence=sentence,
                expunged_on=spent,
            )
        )
    return convictions


def wanted_of(
    world: World, person: Person, convictions: list[SyntheticConviction]
) -> tuple[dt.date, str] | None:
    """(since, initiator) if the person is on the wanted list."""
    if not person.alive or person.age() < _RESPONSIBILITY_AGE:
        return None
    draw = world.draw("criminal-wanted", person.index)
    today = world.today
    open_cases = [c for c in convictions if c.expunged_on is None or c.expunged_on > today]
    if open_cases and draw.chance(40):
        low = open_cases[-1].verdict
    elif draw.chance(1):
        low = today - dt.timedelta(days=3 * 365)
    else:
        return None
    since = low + dt.timedelta(days=draw.below(max(1, (today - low).days)))
    return since, f"Департамент полиции г. {person.address.city.name}"


def certificate_number(year: int, serial: int) -> str:
    return f"{year:04d}{serial:09d}"


@dataclass(frozen=True, slots=True)
class SyntheticCertificate:
    number: str
    issued: dt.date
    purpose: str
    has_convictions: bool
    full_history: bool
    shown: tuple[SyntheticConviction, ...]


def certificate_of(
    world: World,
    person: Person,
    convictions: list[SyntheticConviction],
    wanted: tuple[dt.date, str] | None,
) -> SyntheticCertificate | None:
    """The certificate the person got in the last two years, if any."""
    draw = world.draw("criminal-certificate", person.index)
    if not (person.age() >= 18 and draw.chance(125)):
        return None
    issued = world.today - dt.timedelta(days=draw.between(1, 730))
    if person.death_date is not None and person.death_date <= issued:
        return None
    if wanted is not None and wanted[0] <= issued:
        return None  # not issued to a wanted person (see the servicer)
    purpose = _PURPOSE_WEIGHTS[draw.weighted(_PURPOSE_CUMULATIVE)][0]
    full = PURPOSES[purpose]
    known = [c for c in convictions if c.verdict <= issued]
    open_ = [c for c in known if c.expunged_on is None or c.expunged_on > issued]
    return SyntheticCertificate(
        number=certificate_number(issued.year, person.index),
        issued=issued,
        purpose=purpose,
        has_convictions=bool(open_),
        full_history=full,
        shown=tuple(known if full else open_),
    )


def _rows(world: World) -> Iterator[tuple[str, tuple[Any, ...]]]:
    for person in world.persons():
        convictions = convictions_of(world, person)
        for c in convictions:
            yield (
                "conviction",
                (
                    c.case_number,
                    person.iin,
                    c.article,
                    c.court,
                    c.verdict.isoformat(),
                    c.sentence,
                    None if c.expunged_on is None else c.expunged_on.isoformat(),
                ),
            )
        wanted = wanted_of(world, person, convictions)
        if wanted is not None:
            yield "wanted", (person.iin, wanted[0].isoformat(), wanted[1])
        certificate = certificate_of(world, person, convictions, wanted)
        if certificate is None:
            continue
        yield (
            "certificate",
            (
                certificate.number,
                person.iin,
                certificate.issued.isoformat(),
                certificate.purpose,
                int(certificate.has_convictions),
                int(certificate.full_history),
            ),
        )
        for c in certificate.shown:
            yield "link", (certificate.number, c.case_number)


_INSERTS = {
    "conviction": CONVICTION_INSERT,
    "wanted": WANTED_INSERT,
    "certificate": CERTIFICATE_INSERT,
    "link": CERTIFICATE_CONVICTION_INSERT,
}


def populate(db_path: Path, world: World) -> None:
    batches: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERTS}
    for table, row in _rows(world):
        batches[table].append(row)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        for table, sql in _INSERTS.items():
            conn.executemany(sql, batches[table])


def contract_samples(world: World) -> ContractSamples:
    convicted: Person | None = None
    certified: SyntheticCertificate | None = None
    applicant: Person | None = None
    for person in world.persons():
        convictions = convictions_of(world, person)
        wanted = wanted_of(world, person, convictions)
        if convicted is None and convictions:
            convicted = person
        if certified is None:
            certified = certificate_of(world, person, convictions, wanted)
        if applicant is None and person.alive and person.age() >= 18 and wanted is None:
            applicant = person
        if convicted is not None and certified is not None and applicant is not None:
            break
    if certified is None or applicant is None:
        raise LookupError("the world has nobody with a certificate: make it bigger")
    convicted = convicted or applicant
    return ContractSamples(
        valid={
            "CheckRecord": [pb.CheckRecordRequest(iin=convicted.iin)],
            "ListConvictions": [
                pb.ListConvictionsRequest(iin=convicted.iin, include_expunged=True)
            ],
            "GetCertificate": [pb.GetCertificateRequest(certificate_number=certified.number)],
            "IssueCertificate": [
                pb.IssueCertificateRequest(iin=applicant.iin, purpose="employment")
            ],
        },
        unknown={"GetCertificate": [pb.GetCertificateRequest(certificate_number="2025999999999")]},
        unknown_answered={"CheckRecord"},
        invalid={
            "GetCertificate": [
                pb.GetCertificateRequest(certificate_number="12345"),
                pb.GetCertificateRequest(certificate_number="1899000000001"),
            ]
        },
    )
