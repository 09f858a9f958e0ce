"""The real-estate register over real gRPC: objects, rights and encumbrances match the world;
transfers keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import Household, PropertyKind, World
from adapters.realestate.data import BANKS, office_of
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from adapters.tax.data import company_debts, person_debts, restricted_since, tax_office
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.realestate.v1 import realestate_pb2 as pb
from govbus.pb.agencies.realestate.v1 import realestate_pb2_grpc as pb_grpc

WORLD = World(seed=16, persons=2000)
TODAY = dt.date.today()
HOUSEHOLDS = list(WORLD.households())
COMPANIES = list(WORLD.companies())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("realestate") / "realestate.db"
    agency = load("realestate")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.RealEstateRegisterStub:
    return pb_grpc.RealEstateRegisterStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _restricted(household: Household) -> bool:
    owners = WORLD.property_of(household).owners
    return any(
        restricted_since(person_debts(WORLD, WORLD.person(o), household), WORLD.today)
        for o in owners
    )


def _kinds(stub: pb_grpc.RealEstateRegisterStub, number: str) -> set[int]:
    listed = stub.ListEncumbrances(pb.ListEncumbrancesRequest(cadastral_number=number))
    return {e.kind for e in listed}


def test_dwellings_match_the_world(stub: pb_grpc.RealEstateRegisterStub) -> None:
    for household in HOUSEHOLDS[:60]:
        prop = WORLD.property_of(household)
        got = stub.GetProperty(pb.GetPropertyRequest(cadastral_number=prop.cadastral_number))
        assert (got.rca, got.address_line) == (prop.address.rca, prop.address.line())
        assert got.kind == (
            pb.PROPERTY_KIND_FLAT if prop.kind is PropertyKind.FLAT else pb.PROPERTY_KIND_HOUSE
        )
        assert got.area_dm2 == prop.area_m2 * 100
        assert got.registered_date == prop.registered.isoformat()
        owners = [WORLD.person(o).iin for o in prop.owners]
        assert [h.iin for h in got.holders] == owners
        assert sum(h.share_basis_points for h in got.holders) == 10_000
        for iin in owners:
            held = stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest(iin=iin))
            assert prop.cadastral_number in {p.cadastral_number for p in held}


def test_offices_are_held_by_their_companies(stub: pb_grpc.RealEstateRegisterStub) -> None:
    owning = [(c, o) for c in COMPANIES if (o := office_of(WORLD, c)) is not None]
    assert 0.2 < len(owning) / len(COMPANIES) < 0.6
    for company, (number, area, registered) in owning[:10]:
        held = list(stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest(bin=company.bin)))
        assert [p.cadastral_number for p in held] == [number]
        (office,) = held
        assert office.kind == pb.PROPERTY_KIND_COMMERCIAL and office.area_dm2 == area * 100
        assert office.rca == company.address.rca and office.registered_date == str(registered)
        assert [h.bin for h in office.holders] == [company.bin]
    liquidated = next(c for c in COMPANIES if c.liquidated is not None)
    request = pb.ListPropertiesByHolderRequest(bin=liquidated.bin)
    assert list(stub.ListPropertiesByHolder(request)) == []


def test_encumbrances(stub: pb_grpc.RealEstateRegisterStub) -> None:
    restricted = mortgaged = 0
    for n, household in enumerate(HOUSEHOLDS):
        prop = WORLD.property_of(household)
        number = prop.cadastral_number
        listed = list(stub.ListEncumbrances(pb.ListEncumbrancesRequest(cadastral_number=number)))
        kinds = {e.kind for e in listed}
        if n < 100:
            got = stub.GetProperty(pb.GetPropertyRequest(cadastral_number=number))
            assert got.encumbered == bool(kinds)
        # The tax authority's restriction is there exactly when an owner owes enough.
        assert (pb.ENCUMBRANCE_KIND_ARREST in kinds) == _restricted(household)
        restricted += pb.ENCUMBRANCE_KIND_ARREST in kinds
        mortgaged += pb.ENCUMBRANCE_KIND_MORTGAGE in kinds
        offices = {tax_office(WORLD.person(o).address.city.name) for o in prop.owners}
        for e in listed:
            if e.kind == pb.ENCUMBRANCE_KIND_MORTGAGE:
                assert e.holder in BANKS and e.until_date > TODAY.isoformat()
                assert e.since_date == prop.registered.isoformat()
            else:
                assert e.kind == pb.ENCUMBRANCE_KIND_ARREST
                assert e.holder in offices and e.until_date == ""
    assert restricted > 0 and mortgaged > 0
    assert mortgaged < len(HOUSEHOLDS) / 3
    for company in COMPANIES:
        office = office_of(WORLD, company)
        if office is not None:
            arrested = pb.ENCUMBRANCE_KIND_ARREST in _kinds(stub, office[0])
            assert arrested == bool(restricted_since(company_debts(WORLD, company), WORLD.today))


def _free(skip: int = 0) -> Household:
    """A living couple's dwelling without any encumbrance."""
    found = [
        h
        for h in HOUSEHOLDS
        if h.marriage is not None
        and all(p.alive for p in h.members[:2])
        and WORLD.property_of(h).registered.year < 2005
        and not _restricted(h)
    ]
    return found[skip]


def test_register_a_sale(stub: pb_grpc.RealEstateRegisterStub) -> None:
    household = _free()
    number = WORLD.property_of(household).cadastral_number
    seller = household.head
    buyer = _free(1).members[1]
    request = pb.RegisterTransferRequest(
        cadastral_number=number,
        new_holders=[pb.Holder(iin=buyer.iin, share_basis_points=10_000)],
        basis="договор купли-продажи № 1",
    )
    sold = stub.RegisterTransfer(request)
    assert [h.iin for h in sold.holders] == [buyer.iin]
    assert sold.registered_date == TODAY.isoformat()
    mine = stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest(iin=buyer.iin))
    assert number in {p.cadastral_number for p in mine}
    theirs = stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest(iin=seller.iin))
    assert number not in {p.cadastral_number for p in theirs}
    # The same registration again answers the object; the same holders on another basis
    # is refused.
    assert stub.RegisterTransfer(request) == sold
    other_basis = pb.RegisterTransferRequest(
        cadastral_number=number,
        new_holders=[pb.Holder(iin=buyer.iin, share_basis_points=10_000)],
        basis="договор дарения",
    )
    assert _error(lambda: stub.RegisterTransfer(other_basis)).code == "FAILED_PRECONDITION"
    # Inheritance the same day, in shares, to a person and an entity.
    company = next(c for c in COMPANIES if c.liquidated is None)
    shared = stub.RegisterTransfer(
        pb.RegisterTransferRequest(
            cadastral_number=number,
            new_holders=[
                pb.Holder(iin=seller.iin, share_basis_points=2500),
                pb.Holder(bin=company.bin, share_basis_points=7500),
            ],
            basis="свидетельство о праве на наследство",
        )
    )
    assert [(h.iin, h.bin, h.share_basis_points) for h in shared.holders] == [
        (seller.iin, "", 2500),
        ("", company.bin, 7500),
    ]
    held = stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest(bin=company.bin))
    assert number in {p.cadastral_number for p in held}


def test_transfer_rules(stub: pb_grpc.RealEstateRegisterStub) -> None:
    household = _free(2)
    prop = WORLD.property_of(household)
    number = prop.cadastral_number
    buyer = _free(3).head
    arrested = next(h for h in HOUSEHOLDS if _restricted(h))
    mortgaged = next(
        h
        for h in HOUSEHOLDS
        if not _restricted(h)
        and pb.ENCUMBRANCE_KIND_MORTGAGE in _kinds(stub, WORLD.property_of(h).cadastral_number)
    )

    def transfer(*holders: pb.Holder, **kw: Any) -> pb.RegisterTransferRequest:
        fields: dict[str, Any] = {
            "cadastral_number": number,
            "new_holders": list(holders) or [pb.Holder(iin=buyer.iin, share_basis_points=10_000)],
            "basis": "договор купли-продажи № 2",
        }
        fields.update(kw)
        return pb.RegisterTransferRequest(**fields)

    half = 5000
    cases = {
        "FAILED_PRECONDITION": [
            transfer(cadastral_number=WORLD.property_of(arrested).cadastral_number),
            transfer(cadastral_number=WORLD.property_of(mortgaged).cadastral_number),
            transfer(transfer_date=str(prop.registered - dt.timedelta(days=1))),
            # The very holders who hold it now, on a new basis.
            transfer(
                *[
                    pb.Holder(
                        iin=WORLD.person(o).iin, share_basis_points=10_000 // len(prop.owners)
                    )
                    for o in prop.owners
                ]
            ),
        ],
        "INVALID_REQUEST": [
            transfer(pb.Holder(iin=buyer.iin, share_basis_points=half)),
            transfer(
                pb.Holder(iin=buyer.iin, share_basis_points=half),
                pb.Holder(iin=buyer.iin, share_basis_points=half),
            ),
            transfer(pb.Holder(iin=buyer.iin, share_basis_points=0)),
            transfer(new_holders=[]),
            transfer(transfer_date="2999-01-01"),
            transfer(transfer_date="2025/01/01"),
            transfer(basis=""),
        ],
        "NOT_FOUND": [transfer(cadastral_number="01-999-999999")],
        "INVALID_IDENTIFIER": [
            transfer(cadastral_number="01-000-00001"),
            transfer(cadastral_number="99-000-000001"),
            transfer(cadastral_number=""),
            transfer(pb.Holder(share_basis_points=10_000)),
            transfer(pb.Holder(iin=buyer.iin[:11], share_basis_points=10_000)),
            transfer(pb.Holder(bin="123456789012", share_basis_points=10_000)),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.RegisterTransfer(r)).code == code, request
    # Nothing changed on the way.
    got = stub.GetProperty(pb.GetPropertyRequest(cadastral_number=number))
    assert [h.iin for h in got.holders] == [WORLD.person(o).iin for o in prop.owners]
    assert got.registered_date == prop.registered.isoformat()


def test_reads_refuse_bad_and_unknown_numbers(stub: pb_grpc.RealEstateRegisterStub) -> None:
    for call, code in (
        (
            lambda: stub.GetProperty(pb.GetPropertyRequest(cadastral_number="01-999-999999")),
            "NOT_FOUND",
        ),
        (
            lambda: stub.ListEncumbrances(
                pb.ListEncumbrancesRequest(cadastral_number="01-999-999999")
            ),
            "NOT_FOUND",
        ),
        (
            lambda: stub.GetProperty(pb.GetPropertyRequest(cadastral_number="01-000-0000Х1")),
            "INVALID_IDENTIFIER",
        ),
        (
            lambda: stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest()),
            "INVALID_IDENTIFIER",
        ),
        (
            lambda: stub.ListPropertiesByHolder(pb.ListPropertiesByHolderRequest(bin="1" * 12)),
            "INVALID_IDENTIFIER",
        ),
    ):
        assert _error(call).code == code
    nobody = pb.ListPropertiesByHolderRequest(iin=WORLD.unknown_iin())
    assert list(stub.ListPropertiesByHolder(nobody)) == []


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("realestate"), WORLD).raise_for_failures()
