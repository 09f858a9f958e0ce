"""Fill the real-estate register from the synthetic world, and the contract samples.

Objects and rights:

- every household's dwelling, as the world gives it (`world.property_of`): a flat
  in an apartment building or a private house, its cadastral number, area and
  owners — the head alone or the couple in equal shares — since they moved in;
- the offices that about 40 % of active companies own at their legal address,
  held by the company's BIN (this registry's own draw; cadastral numbers in a
  block of their own, `RR-5NN-NNNNNN`, so they never meet the world's).

Encumbrances in force on the world's date:

- mortgages on about a quarter of the dwellings bought since 2005 (the bank, from
  the purchase for 10–20 years);
- restrictions of the tax authority (kind ARREST) on everything a tax debtor holds
  when the debt is large and old enough — the same debts the КГД register holds
  (`adapters.tax.data`), so the two registries agree;
- long leases on some company offices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.population import Company, Household, Property, PropertyKind, World
from adapters.realestate.store import (
    ENCUMBRANCE_INSERT,
    INDEXES,
    PROPERTY_INSERT,
    RIGHT_INSERT,
    SCHEMA_VERSION,
    TABLES,
)
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from adapters.tax.data import company_debts, person_debts, restricted_since, tax_office
from govbus.pb.agencies.realestate.v1 import realestate_pb2 as pb

__all__ = [
    "BANKS",
    "FIRST_BASIS",
    "commercial_cadastral_number",
    "contract_samples",
    "office_of",
    "populate",
]

BANKS = (
    "АО «Отбасы банк»",
    "АО «Народный Банк Казахстана»",
    "АО «Банк ЦентрКредит»",
    "АО «ForteBank»",
    "АО «Jusan Bank»",
)
#: The basis recorded for the rights the register already held.
FIRST_BASIS = "договор купли-продажи"
_KINDS = {PropertyKind.FLAT: pb.PROPERTY_KIND_FLAT, PropertyKind.HOUSE: pb.PROPERTY_KIND_HOUSE}
_FULL_SHARE = 10_000
_MORTGAGES_SINCE = dt.date(2005, 1, 1)


def commercial_cadastral_number(world: World, company: Company) -> str:
    region = company.address.region.code
    return f"{region:02d}-{500 + company.index // 10**6:03d}-{company.index % 10**6:06d}"


def office_of(world: World, company: Company) -> tuple[str, int, dt.date] | None:
    """(cadastral number, area in m², registered) of the office a company owns, if any."""
    if company.liquidated is not None:
        return None
    draw = world.draw("realestate-office", company.index)
    if not draw.chance(400):
        return None
    first = company.registered.toordinal()
    registered = dt.date.fromordinal(draw.between(first, world.today.toordinal() - 1))
    return commercial_cadastral_number(world, company), draw.between(40, 1500), registered


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return dt.date(day.year + years, 3, 1)


def _shares(count: int) -> list[int]:
    shares = [_FULL_SHARE // count] * count
    shares[0] += _FULL_SHARE - sum(shares)
    return shares


def _dwelling(world: World, household: Household, prop: Property) -> Iterator[tuple[str, Any]]:
    number = prop.cadastral_number
    registered = prop.registered.isoformat()
    yield (
        "property",
        (
            number,
            prop.address.rca,
            prop.address.line(),
            _KINDS[prop.kind],
            prop.area_m2 * 100,
            registered,
        ),
    )
    members = {p.index: p for p in household.members}
    for position, (owner, share) in enumerate(
        zip(prop.owners, _shares(len(prop.owners)), strict=True)
    ):
        yield (
            "right",
            (number, position, registered, members[owner].iin, None, share, None, FIRST_BASIS),
        )
    draw = world.draw("realestate-mortgage", household.id)
    if prop.registered >= _MORTGAGES_SINCE and draw.chance(250):
        until = _years_after(prop.registered, draw.between(10, 20))
        if until > world.today:
            yield (
                "encumbrance",
                (
                    number,
                    pb.ENCUMBRANCE_KIND_MORTGAGE,
                    draw.pick(BANKS),
                    registered,
                    until.isoformat(),
                ),
            )
    for owner in prop.owners:
        person = members[owner]
        since = restricted_since(person_debts(world, person, household), world.today)
        if since is not None:
            yield (
                "encumbrance",
                (
                    number,
                    pb.ENCUMBRANCE_KIND_ARREST,
                    tax_office(person.address.city.name),
                    max(since, prop.registered).isoformat(),
                    None,
                ),
            )


def _office(world: World, company: Company, companies: list[Company]) -> Iterator[tuple[str, Any]]:
    office = office_of(world, company)
    if office is None:
        return
    number, area, registered = office
    yield (
        "property",
        (
            number,
            company.address.rca,
            company.address.line(),
            pb.PROPERTY_KIND_COMMERCIAL,
            area * 100,
            registered.isoformat(),
        ),
    )
    yield (
        "right",
        (number, 0, registered.isoformat(), None, company.bin, _FULL_SHARE, None, FIRST_BASIS),
    )
    since = restricted_since(company_debts(world, company), world.today)
    if since is not None:
        yield (
            "encumbrance",
            (
                number,
                pb.ENCUMBRANCE_KIND_ARREST,
                tax_office(company.address.city.name),
                max(since, registered).isoformat(),
                None,
            ),
        )
    draw = world.draw("realestate-lease", company.index)
    if draw.chance(150) and len(companies) > 1:
        lessee = companies[(company.index + 1 + draw.below(len(companies) - 1)) % len(companies)]
        start = max(registered, lessee.registered).toordinal()
        if start < world.today.toordinal():
            since_day = dt.date.fromordinal(draw.between(start, world.today.toordinal() - 1))
            until = _years_after(since_day, draw.between(3, 10))
            if until > world.today and lessee.liquidated is None:
                yield (
                    "encumbrance",
                    (
                        number,
                        pb.ENCUMBRANCE_KIND_LEASE,
                        f"{lessee.name}, БИН {lessee.bin}",
                        since_day.isoformat(),
                        until.isoformat(),
                    ),
                )


def _rows(world: World) -> Iterator[tuple[str, Any]]:
    for household in world.households():
        yield from _dwelling(world, household, world.property_of(household))
    companies = list(world.companies())
    for company in companies:
        yield from _office(world, company, companies)


_INSERTS = {"property": PROPERTY_INSERT, "right": RIGHT_INSERT, "encumbrance": ENCUMBRANCE_INSERT}


def populate(db_path: Path, world: World) -> None:
    batches: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERTS}
    for table, row in _rows(world):
        batches[table].append(row)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        for table, sql in _INSERTS.items():
            conn.executemany(sql, batches[table])


def contract_samples(world: World) -> ContractSamples:
    households = [
        h
        for h in world.households()
        if h.marriage is not None and all(p.alive for p in h.members[:2])
    ]
    if len(households) < 2:
        raise LookupError("the world has too few living couples: make it bigger")
    first = households[0]
    prop = world.property_of(first)
    head = first.head
    # A dwelling to sell: one whose right is free of any encumbrance in the world.
    seller = next(
        (
            h
            for h in households[1:]
            if not any(t == "encumbrance" for t, _ in _dwelling(world, h, world.property_of(h)))
        ),
        households[1],
    )
    buyer = households[0].members[1]
    office = next((c for c in world.companies() if office_of(world, c) is not None), None)
    holders = [pb.ListPropertiesByHolderRequest(iin=head.iin)]
    if office is not None:
        holders.append(pb.ListPropertiesByHolderRequest(bin=office.bin))
    return ContractSamples(
        valid={
            "GetProperty": [pb.GetPropertyRequest(cadastral_number=prop.cadastral_number)],
            "ListPropertiesByHolder": holders,
            "ListEncumbrances": [
                pb.ListEncumbrancesRequest(cadastral_number=prop.cadastral_number)
            ],
            "RegisterTransfer": [
                pb.RegisterTransferRequest(
                    cadastral_number=world.property_of(seller).cadastral_number,
                    new_holders=[pb.Holder(iin=buyer.iin, share_basis_points=_FULL_SHARE)],
                    transfer_date=world.today.isoformat(),
                    basis=f"договор купли-продажи № К-{world.seed}",
                )
            ],
        },
        unknown={
            "GetProperty": [pb.GetPropertyRequest(cadastral_number="01-999-999999")],
            "ListEncumbrances": [pb.ListEncumbrancesRequest(cadastral_number="01-999-999999")],
        },
        invalid={
            "GetProperty": [
                pb.GetPropertyRequest(cadastral_number="01-000-00001"),
                pb.GetPropertyRequest(cadastral_number="99-000-000001"),
            ],
            "RegisterTransfer": [
                pb.RegisterTransferRequest(
                    cadastral_number="cadastre",
                    new_holders=[pb.Holder(iin=buyer.iin, share_basis_points=_FULL_SHARE)],
                    basis="договор",
                )
            ],
        },
    )
