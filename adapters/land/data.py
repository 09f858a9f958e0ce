"""Fill the land cadastre from the synthetic world, and the contract samples.

- Every private house stands on its plot (`world.land_plot_of`): individual housing
  (ИЖС), owned by the household head since the household moved in.
- About 8 % of households in flats own a garden plot outside town (садоводство).
- Grain farms (ОКЭД 01110) lease farmland from the state; about a quarter of the
  other companies own or lease the plot under their office (at the company's
  address, which the address register knows). Liquidated companies hold nothing.

Cadastral values are in tiyn, from a per-city price of a square metre. Every choice
beyond the world's own comes from `world.draw("land", …)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.land.cadastre import FARMLAND_BLOCK, GARDEN_BLOCK, OFFICE_BLOCK, cadastral_number
from adapters.land.store import INDEXES, PLOT_INSERT, RIGHT_INSERT, SCHEMA_VERSION, TABLES
from adapters.population import Company, Household, World
from adapters.population.geography import REGIONS, City, Region
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Bin
from govbus.pb.agencies.land.v1 import land_pb2 as pb

__all__ = [
    "FARMLAND",
    "GARDEN",
    "HOUSING",
    "OFFICE",
    "contract_samples",
    "populate",
    "rural_region",
]

HOUSING = "ИЖС"  # individual housing construction, as in the world
GARDEN = "ведение садоводства"
FARMLAND = "сельскохозяйственное производство"
OFFICE = "размещение и обслуживание административного здания"

_GARDEN_PER_MILLE = 80
_OFFICE_PER_MILLE = 250
_FARM_PER_MILLE = 900
_GRAIN_OKED = "01110"
_HECTARE = 10_000
_GARDEN_SOCIETIES = ("Строитель", "Мичуринец", "Энергетик", "Геолог", "Яблонька", "Ақбұлақ")
# Tenge per square metre of housing land, by city (the cadastral, not the market, price).
_HOUSING_PRICE = {"ALA": 9000, "AST": 8000, "SHY": 4500, "GUW": 3500, "SCO": 3500}
_HOUSING_PRICE_ELSEWHERE = 2000
# The region around a city that is a region of its own: gardens and farms lie there.
_SURROUNDING = {1: 3, 2: 5, 17: 13}
_REGIONS = {r.code: r for r in REGIONS}


def rural_region(city: City) -> Region:
    """The region where a city's gardens and farmland lie."""
    return _REGIONS[_SURROUNDING.get(city.region.code, city.region.code)]


def _value(area_m2: int, tenge_per_m2: int, percent: int) -> int:
    """Cadastral value in tiyn."""
    return area_m2 * tenge_per_m2 * percent  # tenge × 100 tiyn × percent / 100


def _housing(world: World, household: Household) -> Iterator[tuple[tuple[Any, ...], ...]]:
    plot = world.land_plot_of(household)
    if plot is not None:
        draw = world.draw("land", "value", household.id)
        price = _HOUSING_PRICE.get(plot.address.city.code, _HOUSING_PRICE_ELSEWHERE)
        yield (
            (
                plot.cadastral_number,
                plot.address.rca,
                plot.address.line(),
                plot.area_m2,
                plot.purpose,
                0,
                _value(plot.area_m2, price, draw.between(75, 125)),
            ),
            (
                plot.cadastral_number,
                pb.LAND_RIGHT_OWNERSHIP,
                world.person(plot.holder).iin,
                None,
                plot.registered.isoformat(),
            ),
        )
        return
    draw = world.draw("land", "garden", household.id)
    if not draw.chance(_GARDEN_PER_MILLE):
        return
    head = household.head
    region = rural_region(household.address.city)
    number = cadastral_number(region.code, GARDEN_BLOCK, household.id)
    area = draw.between(4, 10) * 100
    since = household.moved_in + dt.timedelta(days=draw.between(0, 3650))
    latest = min(world.today, head.death_date or world.today) - dt.timedelta(days=1)
    if latest < household.moved_in:
        return  # the head died before the household moved in
    since = max(min(since, latest), household.moved_in)
    society = draw.pick(_GARDEN_SOCIETIES)
    line = f"{region.name}, садоводческое товарищество «{society}», участок {draw.between(1, 400)}"
    yield (
        (number, "", line, area, GARDEN, 0, _value(area, 600, draw.between(70, 140))),
        (number, pb.LAND_RIGHT_OWNERSHIP, head.iin, None, since.isoformat()),
    )


def _company(world: World, company: Company) -> Iterator[tuple[tuple[Any, ...], ...]]:
    if company.liquidated is not None:
        return
    draw = world.draw("land", "company", company.index)
    latest = (world.today - company.registered).days - 1
    if company.oked_code == _GRAIN_OKED:
        if not draw.chance(_FARM_PER_MILLE):
            return
        region = rural_region(company.address.city)
        number = cadastral_number(region.code, FARMLAND_BLOCK, company.index)
        area = draw.between(200, 5000) * _HECTARE
        since = company.registered + dt.timedelta(days=draw.between(0, min(365, latest)))
        line = (
            f"{region.name}, земли сельскохозяйственного назначения, участок №{company.index + 1}"
        )
        yield (
            (number, "", line, area, FARMLAND, 1, _value(area, draw.between(8, 20), 100)),
            (number, pb.LAND_RIGHT_LEASE, None, company.bin, since.isoformat()),
        )
        return
    if not draw.chance(_OFFICE_PER_MILLE):
        return
    address = company.address
    number = cadastral_number(address.region.code, OFFICE_BLOCK, company.index)
    area = draw.between(3, 30) * 100
    price = 2 * _HOUSING_PRICE.get(address.city.code, _HOUSING_PRICE_ELSEWHERE)
    right = pb.LAND_RIGHT_OWNERSHIP if draw.chance(600) else pb.LAND_RIGHT_LEASE
    since = company.registered + dt.timedelta(days=draw.between(0, min(720, latest)))
    yield (
        (number, address.rca, address.line(), area, OFFICE, 0, _value(area, price, 100)),
        (number, right, None, company.bin, since.isoformat()),
    )


def _plots(world: World) -> Iterator[tuple[tuple[Any, ...], ...]]:
    for household in world.households():
        yield from _housing(world, household)
    for company in world.companies():
        yield from _company(world, company)


def populate(db_path: Path, world: World) -> None:
    plots, rights = [], []
    for plot, right in _plots(world):
        plots.append(plot)
        rights.append(right)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(PLOT_INSERT, plots)
        conn.executemany(RIGHT_INSERT, rights)


def _sample_sale(
    world: World,
) -> tuple[str, pb.RegisterPlotRightRequest, pb.ListPlotsByHolderRequest]:
    """A plot, a write that changes its holder, and a read of the holder before it.

    Preferably a house of a living couple, given to the wife; failing that, the first
    plot of the world, leased to a company that is not its holder.
    """
    for household in world.households():
        plot = world.land_plot_of(household)
        if plot is None or household.marriage is None:
            continue
        if all(p.alive for p in household.members[:2]):
            wife = household.members[1].iin
            sale = pb.RegisterPlotRightRequest(
                cadastral_number=plot.cadastral_number,
                right=pb.LAND_RIGHT_OWNERSHIP,
                holder_iin=wife,
                since_date=world.today.isoformat(),
            )
            holder = pb.ListPlotsByHolderRequest(iin=household.head.iin)
            return plot.cadastral_number, sale, holder
    for plot_row, right_row in _plots(world):
        holder_iin, holder_bin = right_row[2], right_row[3]
        lessee = next(c for c in world.companies() if c.bin != holder_bin)
        lease = pb.RegisterPlotRightRequest(
            cadastral_number=plot_row[0],
            right=pb.LAND_RIGHT_LEASE,
            holder_bin=lessee.bin,
            since_date=world.today.isoformat(),
        )
        if holder_iin is not None:
            return plot_row[0], lease, pb.ListPlotsByHolderRequest(iin=holder_iin)
        return plot_row[0], lease, pb.ListPlotsByHolderRequest(bin=holder_bin)
    raise LookupError("the world has no land plot: make it bigger")


def contract_samples(world: World) -> ContractSamples:
    number, sale, holder = _sample_sale(world)
    farm = next(
        (c for c in world.companies() if c.oked_code == _GRAIN_OKED and not c.liquidated), None
    )
    by_holder = [holder]
    if farm is not None:
        by_holder.append(pb.ListPlotsByHolderRequest(bin=farm.bin))
    nobody = Bin.build(1999, 12, 99998) or Bin.build(1999, 12, 99999)
    assert nobody is not None
    return ContractSamples(
        valid={
            "GetPlot": [pb.GetPlotRequest(cadastral_number=number)],
            "ListPlotsByHolder": by_holder,
            "RegisterPlotRight": [sale],
        },
        unknown={
            "GetPlot": [pb.GetPlotRequest(cadastral_number="01-499-999999")],
            "ListPlotsByHolder": [pb.ListPlotsByHolderRequest(bin=nobody.value)],
        },
        invalid={
            "GetPlot": [
                pb.GetPlotRequest(cadastral_number="02-000-12345"),
                pb.GetPlotRequest(cadastral_number="99-000-000001"),
            ],
            "RegisterPlotRight": [
                pb.RegisterPlotRightRequest(
                    cadastral_number="02/000/000001",
                    right=pb.LAND_RIGHT_LEASE,
                    holder_bin=nobody.value,
                )
            ],
        },
    )
