"""The land cadastre over real gRPC: plots, holders, new rights and their rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.land.cadastre import parse_cadastral
from adapters.land.data import FARMLAND, GARDEN
from adapters.population import Household, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, InvalidIdentifier, from_rpc_error
from govbus.ids import Bin, EntityKind
from govbus.pb.agencies.land.v1 import land_pb2 as pb
from govbus.pb.agencies.land.v1 import land_pb2_grpc as pb_grpc

WORLD = World(seed=11, persons=1200)
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("land") / "land.db"
    agency = load("land")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.LandCadastreStub:
    return pb_grpc.LandCadastreStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.LandPlot):
            list(result)
    return from_rpc_error(failure.value)


def _houses() -> list[Household]:
    return [h for h in WORLD.households() if not h.apartment]


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("land"), WORLD).raise_for_failures()


def test_a_house_stands_on_its_holders_plot(stub: pb_grpc.LandCadastreStub) -> None:
    household = _houses()[-1]
    world_plot = WORLD.land_plot_of(household)
    assert world_plot is not None
    plot = stub.GetPlot(pb.GetPlotRequest(cadastral_number=world_plot.cadastral_number))
    assert plot.rca == household.address.rca
    assert plot.address_line == household.address.line()
    assert plot.area_m2 == world_plot.area_m2 and plot.purpose == "ИЖС"
    assert plot.holder_iin == household.head.iin
    assert plot.right == pb.LAND_RIGHT_OWNERSHIP
    assert plot.registered_date == household.moved_in.isoformat()
    assert plot.cadastral_value_tiyn > 0 and plot.cadastral_value_tiyn % 100 == 0
    held = list(stub.ListPlotsByHolder(pb.ListPlotsByHolderRequest(iin=household.head.iin)))
    assert world_plot.cadastral_number in {p.cadastral_number for p in held}


def test_flats_have_no_plot_but_some_households_own_a_garden(
    stub: pb_grpc.LandCadastreStub,
) -> None:
    gardens = 0
    for household in WORLD.households():
        if not household.apartment:
            continue
        held = list(stub.ListPlotsByHolder(pb.ListPlotsByHolderRequest(iin=household.head.iin)))
        assert all(p.purpose == GARDEN and not p.rca for p in held)
        gardens += len(held)
    assert 0 < gardens < len(list(WORLD.households())) // 4


def test_companies_hold_farmland_on_lease(stub: pb_grpc.LandCadastreStub) -> None:
    farms = [c for c in WORLD.companies() if c.oked_code == "01110" and not c.liquidated]
    leased = [
        plot
        for farm in farms
        for plot in stub.ListPlotsByHolder(pb.ListPlotsByHolderRequest(bin=farm.bin))
    ]
    assert leased, "the world's grain farms must lease land"
    for plot in leased:
        assert plot.purpose == FARMLAND and plot.right == pb.LAND_RIGHT_LEASE
        assert plot.area_m2 >= 200 * 10_000 and plot.rca == ""
    liquidated = [c for c in WORLD.companies() if c.liquidated]
    for company in liquidated:
        request = pb.ListPlotsByHolderRequest(bin=company.bin)
        assert list(stub.ListPlotsByHolder(request)) == []


def test_a_sale_moves_the_plot_and_keeps_one_holder(stub: pb_grpc.LandCadastreStub) -> None:
    seller_home, buyer_home = _houses()[0], _houses()[1]
    world_plot = WORLD.land_plot_of(seller_home)
    assert world_plot is not None
    number = world_plot.cadastral_number
    buyer = buyer_home.head
    sale = pb.RegisterPlotRightRequest(
        cadastral_number=number,
        right=pb.LAND_RIGHT_OWNERSHIP,
        holder_iin=buyer.iin,
        since_date=TODAY.isoformat(),
    )
    plot = stub.RegisterPlotRight(sale)
    assert plot.holder_iin == buyer.iin and plot.registered_date == TODAY.isoformat()
    assert stub.GetPlot(pb.GetPlotRequest(cadastral_number=number)).holder_iin == buyer.iin
    seller_plots = stub.ListPlotsByHolder(pb.ListPlotsByHolderRequest(iin=seller_home.head.iin))
    assert number not in {p.cadastral_number for p in seller_plots}
    buyer_plots = stub.ListPlotsByHolder(pb.ListPlotsByHolderRequest(iin=buyer.iin))
    assert number in {p.cadastral_number for p in buyer_plots}
    assert _error(lambda: stub.RegisterPlotRight(sale)).code == "ALREADY_EXISTS"

    # A company leases it from the new owner's date on; an earlier start is refused.
    company = next(c for c in WORLD.companies() if not c.liquidated)
    earlier = pb.RegisterPlotRightRequest(
        cadastral_number=number,
        right=pb.LAND_RIGHT_LEASE,
        holder_bin=company.bin,
        since_date=(TODAY - dt.timedelta(days=1)).isoformat(),
    )
    assert _error(lambda: stub.RegisterPlotRight(earlier)).code == "FAILED_PRECONDITION"
    lease = stub.RegisterPlotRight(
        pb.RegisterPlotRightRequest(
            cadastral_number=number, right=pb.LAND_RIGHT_LEASE, holder_bin=company.bin
        )
    )
    assert lease.holder_bin == company.bin and lease.WhichOneof("holder") == "holder_bin"


def test_rights_a_cadastre_refuses(stub: pb_grpc.LandCadastreStub) -> None:
    house = _houses()[2]
    world_plot = WORLD.land_plot_of(house)
    assert world_plot is not None
    number = world_plot.cadastral_number
    person = house.head.iin
    farm = next(c for c in WORLD.companies() if c.oked_code == "01110" and not c.liquidated)
    farmland = next(stub.ListPlotsByHolder(pb.ListPlotsByHolderRequest(bin=farm.bin)))
    foreign = Bin.build(2015, 3, 100, EntityKind.NON_RESIDENT) or Bin.build(
        2015, 3, 101, EntityKind.NON_RESIDENT
    )
    assert foreign is not None
    future = (TODAY + dt.timedelta(days=2)).isoformat()
    cases: dict[str, list[pb.RegisterPlotRightRequest]] = {
        "FAILED_PRECONDITION": [
            pb.RegisterPlotRightRequest(
                cadastral_number=number, right=pb.LAND_RIGHT_PERMANENT_USE, holder_iin=person
            ),
            pb.RegisterPlotRightRequest(
                cadastral_number=farmland.cadastral_number,
                right=pb.LAND_RIGHT_LEASE,
                holder_bin=foreign.value,
            ),
        ],
        "ALREADY_EXISTS": [
            pb.RegisterPlotRightRequest(
                cadastral_number=number, right=pb.LAND_RIGHT_OWNERSHIP, holder_iin=person
            )
        ],
        "NOT_FOUND": [
            pb.RegisterPlotRightRequest(
                cadastral_number="02-499-000001", right=pb.LAND_RIGHT_LEASE, holder_iin=person
            )
        ],
        "INVALID_REQUEST": [
            pb.RegisterPlotRightRequest(cadastral_number=number, holder_iin=person),
            pb.RegisterPlotRightRequest(cadastral_number=number, right=pb.LAND_RIGHT_LEASE),
            pb.RegisterPlotRightRequest(
                cadastral_number=number,
                right=pb.LAND_RIGHT_LEASE,
                holder_iin=person,
                since_date=future,
            ),
            pb.RegisterPlotRightRequest(
                cadastral_number=number, right=7, holder_iin=person, since_date="2020-13-01"
            ),
        ],
        "INVALID_IDENTIFIER": [
            pb.RegisterPlotRightRequest(
                cadastral_number=number, right=pb.LAND_RIGHT_LEASE, holder_iin="123456789012"
            ),
            pb.RegisterPlotRightRequest(
                cadastral_number=number, right=pb.LAND_RIGHT_LEASE, holder_bin="990340000000"
            ),
            pb.RegisterPlotRightRequest(
                cadastral_number="02-000-00001", right=pb.LAND_RIGHT_LEASE, holder_iin=person
            ),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.RegisterPlotRight(r)).code == code, request
    # A right cannot start before its holder was born (though after the current right).
    family = next(h for h in _houses() if h.members[-1].birth_date > h.moved_in)
    family_plot = WORLD.land_plot_of(family)
    assert family_plot is not None
    unborn = pb.RegisterPlotRightRequest(
        cadastral_number=family_plot.cadastral_number,
        right=pb.LAND_RIGHT_OWNERSHIP,
        holder_iin=family.members[-1].iin,
        since_date=(family.members[-1].birth_date - dt.timedelta(days=1)).isoformat(),
    )
    refused = _error(lambda: stub.RegisterPlotRight(unborn))
    assert refused.code == "FAILED_PRECONDITION" and "birth" in refused.message
    # None of the refusals changed the plot.
    plot = stub.GetPlot(pb.GetPlotRequest(cadastral_number=number))
    assert plot.holder_iin == person and plot.right == pb.LAND_RIGHT_OWNERSHIP


def test_reads_refuse_bad_and_unknown_identifiers(stub: pb_grpc.LandCadastreStub) -> None:
    assert _error(lambda: stub.GetPlot(pb.GetPlotRequest())).code == "INVALID_IDENTIFIER"
    missing = pb.GetPlotRequest(cadastral_number="17-499-123456")
    assert _error(lambda: stub.GetPlot(missing)).code == "NOT_FOUND"
    empty = pb.ListPlotsByHolderRequest()
    assert _error(lambda: stub.ListPlotsByHolder(empty)).code == "INVALID_REQUEST"
    bad = pb.ListPlotsByHolderRequest(iin="900101300000")
    assert _error(lambda: stub.ListPlotsByHolder(bad)).code == "INVALID_IDENTIFIER"
    unknown = pb.ListPlotsByHolderRequest(iin=WORLD.unknown_iin())
    assert list(stub.ListPlotsByHolder(unknown)) == []


def test_the_subject_of_the_consent_sees_only_their_own_plots(
    stub: pb_grpc.LandCadastreStub,
) -> None:
    house = _houses()[3]
    world_plot = WORLD.land_plot_of(house)
    assert world_plot is not None
    request = pb.GetPlotRequest(cadastral_number=world_plot.cadastral_number)
    own = stub.GetPlot(request, metadata=[("govbus-subject", house.head.iin)])
    assert own.holder_iin == house.head.iin
    other = _houses()[4].head.iin
    refused = _error(lambda: stub.GetPlot(request, metadata=[("govbus-subject", other)]))
    assert refused.code == "CONSENT_SCOPE"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("02-000-000123", True),
        (" 20-999-999999 ", True),
        ("00-000-000001", False),
        ("21-000-000001", False),
        ("02-00-0000123", False),
        ("020000000123", False),
        ("02-000-00012٣", False),
        ("", False),
    ],
)
def test_cadastral_numbers_are_parsed_in_one_place(text: str, ok: bool) -> None:
    if ok:
        assert parse_cadastral(text) == text.strip()
    else:
        with pytest.raises(InvalidIdentifier):
            parse_cadastral(text)
