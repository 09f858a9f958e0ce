"""The vehicle registry over real gRPC: owners, plates, registration, transfer and their rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.population import Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from adapters.vehicles.identifiers import parse_plate, parse_vin
from govbus.errors import GovbusError, InvalidIdentifier, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2 as pb
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2_grpc as pb_grpc

WORLD = World(seed=23, persons=1200)
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("vehicles") / "vehicles.db"
    agency = load("vehicles")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.VehicleRegistryStub:
    return pb_grpc.VehicleRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Vehicle):
            list(result)
    return from_rpc_error(failure.value)


def _of(stub: pb_grpc.VehicleRegistryStub, **owner: str) -> list[pb.Vehicle]:
    return list(stub.ListVehiclesByOwner(pb.ListVehiclesByOwnerRequest(owner=pb.Owner(**owner))))


def _owners() -> list[Person]:
    return [p for p in WORLD.persons() if p.vehicles]


def _register(owner: pb.Owner, vin: str, region: int = 2, year: int = 2024) -> Any:
    return pb.RegisterVehicleRequest(
        vin=vin,
        make="Kia",
        model="Rio",
        year=year,
        colour="красный",
        owner=owner,
        region_code=region,
    )


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("vehicles"), WORLD).raise_for_failures()


def test_the_worlds_vehicles_are_registered_to_their_owners(
    stub: pb_grpc.VehicleRegistryStub,
) -> None:
    kit_vehicles = {r.vin for r in load("vehicles").samples(WORLD).valid["TransferVehicle"]}
    for person in WORLD.persons():
        expected = [v for v in WORLD.vehicles_of(person) if v.vin not in kit_vehicles]
        listed = {v.vin: v for v in _of(stub, iin=person.iin)}
        for vehicle in expected:
            got = listed[vehicle.vin]
            assert (got.plate, got.make, got.model, got.year, got.colour) == (
                vehicle.plate,
                vehicle.make,
                vehicle.model,
                vehicle.year,
                vehicle.colour,
            )
            assert got.owner.iin == person.iin
            assert got.registered_date == vehicle.registered.isoformat()
            assert got.certificate_number.startswith("AA")
            assert stub.GetVehicle(pb.GetVehicleRequest(plate=vehicle.plate)) == got
    assert not _of(stub, iin=WORLD.unknown_iin())


def test_companies_have_fleets_on_legal_entity_plates(stub: pb_grpc.VehicleRegistryStub) -> None:
    carriers = [c for c in WORLD.companies() if c.oked_code == "49410" and not c.liquidated]
    assert carriers
    for carrier in carriers:
        fleet = _of(stub, bin=carrier.bin)
        assert 3 <= len(fleet) <= 12
        for vehicle in fleet:
            assert vehicle.owner.bin == carrier.bin and vehicle.make in {
                "KAMAZ",
                "MAN",
                "Volvo",
                "Shacman",
            }
            assert len(vehicle.plate) == 7  # three digits, two letters, region
            assert vehicle.plate.endswith(f"{carrier.address.region.code:02d}")
            assert vehicle.registered_date >= carrier.registered.isoformat()
    for company in WORLD.companies():
        if company.liquidated is not None:
            assert _of(stub, bin=company.bin) == []


def test_a_first_registration_assigns_a_plate(stub: pb_grpc.VehicleRegistryStub) -> None:
    owner = _owners()[0]
    vehicle = stub.RegisterVehicle(_register(pb.Owner(iin=owner.iin), "KNAGB81CBR5000001"))
    assert vehicle.registered_date == TODAY.isoformat() and vehicle.owner.iin == owner.iin
    assert parse_plate(vehicle.plate) == vehicle.plate and vehicle.plate.endswith("02")
    assert len(vehicle.plate) == 8 and vehicle.certificate_number.startswith("BA")
    world_plates = {v.plate for p in WORLD.persons() for v in WORLD.vehicles_of(p)}
    assert vehicle.plate not in world_plates
    assert vehicle.vin in {v.vin for v in _of(stub, iin=owner.iin)}
    second = stub.RegisterVehicle(_register(pb.Owner(iin=owner.iin), "knagb81cbr5000002"))
    assert second.vin == "KNAGB81CBR5000002" and second.plate != vehicle.plate
    assert second.certificate_number != vehicle.certificate_number
    carrier = next(c for c in WORLD.companies() if not c.liquidated)
    truck = stub.RegisterVehicle(_register(pb.Owner(bin=carrier.bin), "XTC54900000000001", 17))
    assert truck.owner.bin == carrier.bin and len(truck.plate) == 7
    assert truck.plate.endswith("17")
    fleet_plates = {v.plate for c in WORLD.companies() for v in _of(stub, bin=c.bin)}
    assert truck.plate in fleet_plates  # listed once, under its owner
    again = _register(pb.Owner(iin=owner.iin), "KNAGB81CBR5000001")
    assert _error(lambda: stub.RegisterVehicle(again)).code == "ALREADY_EXISTS"


def test_a_sale_moves_the_vehicle_to_one_new_owner(stub: pb_grpc.VehicleRegistryStub) -> None:
    seller, buyer = _owners()[2], _owners()[3]
    car = WORLD.vehicles_of(seller)[0]
    sale = pb.TransferVehicleRequest(vin=car.vin, new_owner=pb.Owner(iin=buyer.iin))
    moved = stub.TransferVehicle(sale)
    assert moved.owner.iin == buyer.iin and moved.plate == car.plate  # the plate stays
    assert moved.registered_date == TODAY.isoformat()
    assert moved.certificate_number.startswith("BA")
    assert car.vin not in {v.vin for v in _of(stub, iin=seller.iin)}
    assert car.vin in {v.vin for v in _of(stub, iin=buyer.iin)}
    assert _error(lambda: stub.TransferVehicle(sale)).code == "ALREADY_EXISTS"
    back_dated = pb.TransferVehicleRequest(
        vin=car.vin,
        new_owner=pb.Owner(iin=seller.iin),
        transfer_date=(TODAY - dt.timedelta(days=1)).isoformat(),
    )
    assert _error(lambda: stub.TransferVehicle(back_dated)).code == "FAILED_PRECONDITION"
    company = next(c for c in WORLD.companies() if not c.liquidated)
    leased = stub.TransferVehicle(
        pb.TransferVehicleRequest(vin=car.vin, new_owner=pb.Owner(bin=company.bin))
    )
    assert leased.owner.WhichOneof("id") == "bin" and leased.owner.bin == company.bin
    assert car.vin not in {v.vin for v in _of(stub, iin=buyer.iin)}


def test_refusals_change_nothing(stub: pb_grpc.VehicleRegistryStub) -> None:
    owner = _owners()[4]
    car = WORLD.vehicles_of(owner)[0]
    minor = next(p for p in WORLD.persons() if p.alive and p.age(TODAY) < 17)
    newborn = Iin.build(TODAY, Sex.MALE, 9400) or Iin.build(TODAY, Sex.MALE, 9401)
    assert newborn is not None
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    me = pb.Owner(iin=owner.iin)
    transfers = {
        "FAILED_PRECONDITION": [
            pb.TransferVehicleRequest(vin=car.vin, new_owner=pb.Owner(iin=minor.iin)),
            pb.TransferVehicleRequest(
                vin=car.vin, new_owner=pb.Owner(iin=_owners()[5].iin), transfer_date="1990-01-01"
            ),
        ],
        "ALREADY_EXISTS": [pb.TransferVehicleRequest(vin=car.vin, new_owner=me)],
        "INVALID_REQUEST": [
            pb.TransferVehicleRequest(vin=car.vin),
            pb.TransferVehicleRequest(vin=car.vin, new_owner=pb.Owner()),
            pb.TransferVehicleRequest(
                vin=car.vin, new_owner=pb.Owner(iin=minor.iin), transfer_date=tomorrow
            ),
        ],
        "INVALID_IDENTIFIER": [
            pb.TransferVehicleRequest(vin="XTA0000000000000I", new_owner=me),
            pb.TransferVehicleRequest(vin=car.vin, new_owner=pb.Owner(bin="123456789012")),
        ],
        "NOT_FOUND": [pb.TransferVehicleRequest(vin="XTAN1234567890123", new_owner=me)],
    }
    for code, requests in transfers.items():
        for request in requests:
            assert _error(lambda r=request: stub.TransferVehicle(r)).code == code, request
    registrations = {
        "FAILED_PRECONDITION": [_register(pb.Owner(iin=newborn.value), "XTAN0000000000077")],
        "INVALID_REQUEST": [
            _register(me, "XTAN0000000000078", region=0),
            _register(me, "XTAN0000000000078", region=21),
            _register(me, "XTAN0000000000078", year=1900),
            _register(me, "XTAN0000000000078", year=TODAY.year + 2),
            _register(pb.Owner(), "XTAN0000000000078"),
            pb.RegisterVehicleRequest(vin="XTAN0000000000078", owner=me, region_code=2),
        ],
        "INVALID_IDENTIFIER": [
            _register(me, "XTAN00000000000"),
            _register(pb.Owner(iin="900101300000"), "XTAN0000000000078"),
        ],
    }
    for code, requests in registrations.items():
        for request in requests:
            assert _error(lambda r=request: stub.RegisterVehicle(r)).code == code, request
    assert stub.GetVehicle(pb.GetVehicleRequest(vin=car.vin)).owner.iin == owner.iin
    for vin in ("XTAN0000000000077", "XTAN0000000000078"):
        assert _error(lambda v=vin: stub.GetVehicle(pb.GetVehicleRequest(vin=v))).code == (
            "NOT_FOUND"
        )
    assert _error(lambda: stub.GetVehicle(pb.GetVehicleRequest())).code == "INVALID_REQUEST"
    empty = pb.ListVehiclesByOwnerRequest()
    assert _error(lambda: stub.ListVehiclesByOwner(empty)).code == "INVALID_REQUEST"


def test_the_subject_of_the_consent_sees_only_their_own_vehicles(
    stub: pb_grpc.VehicleRegistryStub,
) -> None:
    owner, other = _owners()[6], _owners()[7]
    car = WORLD.vehicles_of(owner)[0]
    mine = [("govbus-subject", owner.iin)]
    assert stub.GetVehicle(pb.GetVehicleRequest(plate=car.plate), metadata=mine).vin == car.vin
    theirs = [("govbus-subject", other.iin)]
    get = pb.GetVehicleRequest(plate=car.plate)
    assert _error(lambda: stub.GetVehicle(get, metadata=theirs)).code == "CONSENT_SCOPE"
    listing = pb.ListVehiclesByOwnerRequest(owner=pb.Owner(iin=owner.iin))
    assert _error(lambda: stub.ListVehiclesByOwner(listing, metadata=theirs)).code == (
        "CONSENT_SCOPE"
    )


@pytest.mark.parametrize(
    ("vin", "ok"),
    [
        ("XTAZ0000000000001", True),
        ("wvwzzz1kz6w000001", True),
        ("XTAZ000000000001", False),
        ("XTAZ00000000000I1", False),
        ("XTAZ00000000000Q1", False),
        ("XTAZ-000000000001", False),
        ("ХТАZ0000000000001", False),  # Cyrillic Х and Т
    ],
)
def test_vins_are_parsed_in_one_place(vin: str, ok: bool) -> None:
    if ok:
        assert parse_vin(vin) == vin.upper()
    else:
        with pytest.raises(InvalidIdentifier):
            parse_vin(vin)


@pytest.mark.parametrize(
    ("plate", "ok"),
    [
        ("123ABC02", True),
        ("045KZ01", True),
        ("123 abc 17", True),
        ("123ABCD02", False),
        ("12ABC02", False),
        ("123ABC00", False),
        ("123ABC21", False),
        ("123АВС02", False),
    ],
)
def test_plates_are_parsed_in_one_place(plate: str, ok: bool) -> None:
    if ok:
        assert parse_plate(plate) == plate.upper().replace(" ", "")
    else:
        with pytest.raises(InvalidIdentifier):
            parse_plate(plate)
