"""Kazpost over real gRPC: contacts and deliveries match the world; writes keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.kazpost.data import SENDER_ID_CARD, has_postamats, household_deliveries
from adapters.kazpost.store import s10_check_digit
from adapters.licences.data import driving_record
from adapters.population import Person, World
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2 as pb
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2_grpc as pb_grpc

WORLD = World(seed=19, persons=1200)
TODAY = dt.date.today()
DELIVERIES = [d for h in WORLD.households() for d in household_deliveries(WORLD, h)]
POST, COURIER, POSTAMAT = (
    pb.DELIVERY_CHANNEL_POST,
    pb.DELIVERY_CHANNEL_COURIER,
    pb.DELIVERY_CHANNEL_POSTAMAT,
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("kazpost") / "kazpost.db"
    agency = load("kazpost")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.PostalServiceStub:
    return pb_grpc.PostalServiceStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _adults(test: Any = lambda p: True) -> list[Person]:
    return [p for p in WORLD.persons() if p.alive and p.age(TODAY) >= 18 and test(p)]


def test_contacts_match_the_world(stub: pb_grpc.PostalServiceStub) -> None:
    for person in WORLD.persons(0, 8):
        request = pb.GetDeliveryContactRequest(iin=person.iin)
        if not person.alive or person.age() < 16:
            assert _error(lambda r=request: stub.GetDeliveryContact(r)).code == "NOT_FOUND"
            continue
        contact = stub.GetDeliveryContact(request)
        assert contact.phone == person.phone and contact.phone.startswith("+7")
        assert contact.rca == person.address.rca
        assert contact.postal_code == person.address.postal_code
        assert contact.preferred in (POST, COURIER, POSTAMAT)
        if contact.preferred == POSTAMAT:
            assert has_postamats(person.address.city)
        assert not contact.email or "@" in contact.email


def test_deliveries_match_the_world(stub: pb_grpc.PostalServiceStub) -> None:
    assert DELIVERIES
    by_person: dict[str, list[tuple[Any, ...]]] = {}
    for row in DELIVERIES:
        by_person.setdefault(row[1], []).append(row)
    for iin, rows in list(by_person.items())[:40]:
        listed = list(stub.ListDeliveries(pb.ListDeliveriesRequest(iin=iin)))
        assert sorted(d.tracking_number for d in listed) == sorted(r[0] for r in rows)
        person = WORLD.person(WORLD.index_of(iin) or 0)
        for delivery in listed:
            number = delivery.tracking_number
            assert number.endswith("KZ") and int(number[10]) == s10_check_digit(number[2:10])
            created = dt.date.fromisoformat(delivery.created_date)
            # Sent to where the person was registered on the day.
            previous = person.previous_registration
            expected = (
                previous[0].rca
                if previous is not None and created < person.registered_since
                else person.address.rca
            )
            assert delivery.rca == expected
            delivered = delivery.status == pb.DELIVERY_STATUS_DELIVERED
            assert bool(delivery.delivered_date) == delivered
            if delivery.document_kind == "ID_CARD":
                assert person.document is not None
                assert 0 < (created - person.document.issued).days <= 7
            if delivery.document_kind == "DRIVING_LICENCE":
                record = driving_record(WORLD, person)
                assert record is not None
                assert any(0 < (created - lic.issued).days <= 7 for lic in record.licences)


def test_create_a_delivery_to_the_contacts_address(stub: pb_grpc.PostalServiceStub) -> None:
    person = _adults()[3]
    request = pb.CreateDeliveryRequest(
        iin=person.iin, document_kind="passport", sender=SENDER_ID_CARD
    )
    created = stub.CreateDelivery(request)
    contact = stub.GetDeliveryContact(pb.GetDeliveryContactRequest(iin=person.iin))
    assert created.status == pb.DELIVERY_STATUS_CREATED and created.rca == contact.rca
    assert created.document_kind == "PASSPORT" and created.created_date == TODAY.isoformat()
    assert created.channel == contact.preferred  # unspecified: the contact's preference
    assert created.tracking_number.endswith("KZ")
    assert _error(lambda: stub.CreateDelivery(request)).code == "ALREADY_EXISTS"
    listed = stub.ListDeliveries(pb.ListDeliveriesRequest(iin=person.iin))
    assert created.tracking_number in {d.tracking_number for d in listed}
    # To another address, for someone Kazpost has no contact of: a newborn's certificate.
    child = next(p for p in WORLD.persons() if p.alive and p.age() < 16)
    elsewhere = stub.CreateDelivery(
        pb.CreateDeliveryRequest(
            iin=child.iin,
            document_kind="BIRTH_CERTIFICATE",
            sender="ЗАГС",
            channel=COURIER,
            rca=child.address.rca,
        )
    )
    assert elsewhere.rca == child.address.rca and elsewhere.channel == COURIER


def test_update_a_contact(stub: pb_grpc.PostalServiceStub) -> None:
    person = _adults()[5]
    small_town = next(h.address for h in WORLD.households() if not has_postamats(h.address.city))
    moved = stub.UpdateDeliveryContact(
        pb.UpdateDeliveryContactRequest(iin=person.iin, rca=small_town.rca, phone="8 701 555 1234")
    )
    assert moved.rca == small_town.rca and moved.postal_code == small_town.postal_code
    assert moved.phone == "+77015551234" and moved.preferred != POSTAMAT
    locker = pb.UpdateDeliveryContactRequest(iin=person.iin, preferred=POSTAMAT)
    assert _error(lambda: stub.UpdateDeliveryContact(locker)).code == "FAILED_PRECONDITION"
    mail = stub.UpdateDeliveryContact(
        pb.UpdateDeliveryContactRequest(iin=person.iin, email="Aigerim.K@Mail.kz")
    )
    assert mail.email == "aigerim.k@mail.kz" and mail.rca == small_town.rca
    assert mail.phone == "+77015551234"  # unchanged

    newcomer = next(p for p in WORLD.persons() if p.alive and p.age() < 16)
    bare = pb.UpdateDeliveryContactRequest(iin=newcomer.iin, phone="+77001234567")
    assert _error(lambda: stub.UpdateDeliveryContact(bare)).code == "INVALID_REQUEST"
    created = stub.UpdateDeliveryContact(
        pb.UpdateDeliveryContactRequest(iin=newcomer.iin, rca=newcomer.address.rca)
    )
    assert created.preferred == POST and created.phone == ""


def test_bad_requests_are_refused_and_change_nothing(stub: pb_grpc.PostalServiceStub) -> None:
    person = _adults()[7]
    before = stub.GetDeliveryContact(pb.GetDeliveryContactRequest(iin=person.iin))
    deliveries_before = list(stub.ListDeliveries(pb.ListDeliveriesRequest(iin=person.iin)))
    updates = {
        "INVALID_IDENTIFIER": [
            pb.UpdateDeliveryContactRequest(iin="12345", phone="+77001234567"),
            pb.UpdateDeliveryContactRequest(iin=person.iin, rca="0212345"),
            pb.UpdateDeliveryContactRequest(iin=person.iin, rca="9910000000000000"),
        ],
        "INVALID_REQUEST": [
            pb.UpdateDeliveryContactRequest(iin=person.iin),
            pb.UpdateDeliveryContactRequest(iin=person.iin, phone="+1 212 555 0100"),
            pb.UpdateDeliveryContactRequest(iin=person.iin, phone="77001234567"),
            pb.UpdateDeliveryContactRequest(iin=person.iin, email="not-an-email"),
            pb.UpdateDeliveryContactRequest(iin=person.iin, preferred=42),
        ],
        "NOT_FOUND": [
            pb.UpdateDeliveryContactRequest(iin=person.iin, rca="0219999999999999"),
        ],
    }
    for code, requests in updates.items():
        for request in requests:
            got = _error(lambda r=request: stub.UpdateDeliveryContact(r)).code
            assert got == code, (code, request)
    creates = {
        "INVALID_REQUEST": [
            pb.CreateDeliveryRequest(iin=person.iin, document_kind="PIZZA", sender="x"),
            pb.CreateDeliveryRequest(iin=person.iin, document_kind="ID_CARD", sender=""),
            pb.CreateDeliveryRequest(
                iin=person.iin, document_kind="ID_CARD", sender="x", channel=9
            ),
        ],
        "INVALID_IDENTIFIER": [
            pb.CreateDeliveryRequest(iin="", document_kind="ID_CARD", sender="x"),
            pb.CreateDeliveryRequest(
                iin=person.iin, document_kind="ID_CARD", sender="x", rca="abc"
            ),
        ],
        "FAILED_PRECONDITION": [
            pb.CreateDeliveryRequest(iin=UNKNOWN_IIN, document_kind="ID_CARD", sender="x"),
        ],
    }
    for code, requests in creates.items():
        for request in requests:
            assert _error(lambda r=request: stub.CreateDelivery(r)).code == code, (code, request)
    small_town = next(h.address for h in WORLD.households() if not has_postamats(h.address.city))
    locker = pb.CreateDeliveryRequest(
        iin=person.iin, document_kind="ID_CARD", sender="x", channel=POSTAMAT, rca=small_town.rca
    )
    assert _error(lambda: stub.CreateDelivery(locker)).code == "FAILED_PRECONDITION"
    assert stub.GetDeliveryContact(pb.GetDeliveryContactRequest(iin=person.iin)) == before
    assert list(stub.ListDeliveries(pb.ListDeliveriesRequest(iin=person.iin))) == deliveries_before
    unknown = pb.GetDeliveryContactRequest(iin=UNKNOWN_IIN)
    assert _error(lambda: stub.GetDeliveryContact(unknown)).code == "NOT_FOUND"
    assert not list(stub.ListDeliveries(pb.ListDeliveriesRequest(iin=UNKNOWN_IIN)))


# Last: the kit's sample writes change the records the tests above read.
def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("kazpost"), WORLD).raise_for_failures()
