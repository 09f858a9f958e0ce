"""The address register over real gRPC: codes, search and new addresses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import World
from adapters.population.geography import parse_rca
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.errors import GovbusError, InvalidIdentifier, from_rpc_error
from govbus.pb.agencies.address.v1 import address_pb2 as pb
from govbus.pb.agencies.address.v1 import address_pb2_grpc as pb_grpc

WORLD = World(seed=5, persons=800)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("address") / "address.db"
    agency = load("address")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.AddressRegisterStub:
    return pb_grpc.AddressRegisterStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Address):
            list(result)
    return from_rpc_error(failure.value)


def test_every_kind_of_address_is_registered(stub: pb_grpc.AddressRegisterStub) -> None:
    home = WORLD.person(10).address
    office = WORLD.company(3).address
    school = WORLD.institutions()[5].address
    for address in (home, office, school):
        got = stub.GetAddress(pb.GetAddressRequest(rca=address.rca))
        assert got.line == address.line()
        assert (got.city, got.street, got.house, got.flat) == (
            address.city.name,
            address.street,
            address.house,
            address.flat,
        )
        assert got.kind == address.kind.value and got.region_code == address.region.code


def test_search_by_city_and_street(stub: pb_grpc.AddressRegisterStub) -> None:
    home = WORLD.person(0).address
    found = list(
        stub.SearchAddresses(pb.SearchAddressesRequest(city=home.city.name, street=home.street))
    )
    assert home.rca in {a.rca for a in found}
    assert all(a.street == home.street for a in found)
    few = stub.SearchAddresses(pb.SearchAddressesRequest(city=home.city.name, limit=2))
    assert len(list(few)) == 2
    assert _error(lambda: stub.SearchAddresses(pb.SearchAddressesRequest())).code == (
        "INVALID_REQUEST"
    )


def test_bad_codes_are_invalid_identifiers(stub: pb_grpc.AddressRegisterStub) -> None:
    for bad in ("", "123", "9910000000000001", "0290000000000001", "02100000000000ab"):
        assert _error(lambda b=bad: stub.GetAddress(pb.GetAddressRequest(rca=b))).code == (
            "INVALID_IDENTIFIER"
        )
    with pytest.raises(InvalidIdentifier):
        parse_rca(None)
    unknown = _error(lambda: stub.GetAddress(pb.GetAddressRequest(rca="0210009999999999")))
    assert unknown.code == "NOT_FOUND"


def test_register_a_new_address(stub: pb_grpc.AddressRegisterStub) -> None:
    request = pb.RegisterAddressRequest(
        region_code=1, city="Астана", street="ул. Новая", house="1", flat="", postal_code="010000"
    )
    created = stub.RegisterAddress(request)
    assert parse_rca(created.rca) == created.rca
    assert created.rca[2] == "3" and created.kind == pb.ADDRESS_KIND_REGISTERED
    assert stub.GetAddress(pb.GetAddressRequest(rca=created.rca)).line == created.line
    assert _error(lambda: stub.RegisterAddress(request)).code == "ALREADY_EXISTS"
    second = stub.RegisterAddress(
        pb.RegisterAddressRequest(
            region_code=1, city="Астана", street="ул. Новая", house="2", postal_code="010000"
        )
    )
    assert second.rca != created.rca
    bad_region = pb.RegisterAddressRequest(
        region_code=42, city="X", street="Y", house="1", postal_code="010000"
    )
    assert _error(lambda: stub.RegisterAddress(bad_region)).code == "INVALID_REQUEST"
    bad_postal = pb.RegisterAddressRequest(
        region_code=1, city="X", street="Y", house="1", postal_code="01"
    )
    assert _error(lambda: stub.RegisterAddress(bad_postal)).code == "INVALID_REQUEST"
