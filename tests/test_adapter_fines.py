"""Administrative fines over real gRPC: fines match the world; payments keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.fines.data import DUE_DAYS, MRP_TENGE, OFFENCES, SyntheticFine, fines_of
from adapters.population import Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.fines.v1 import fines_pb2 as pb
from govbus.pb.agencies.fines.v1 import fines_pb2_grpc as pb_grpc

WORLD = World(seed=11, persons=1200)
TODAY = dt.date.today()
FINED: list[tuple[Person, list[SyntheticFine]]] = [
    (p, f) for p in WORLD.persons() if (f := fines_of(WORLD, p))
]
MRP_BY_ARTICLE = {o.article: o.mrp for o in OFFENCES}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("fines") / "fines.db"
    agency = load("fines")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.AdministrativeFinesStub:
    return pb_grpc.AdministrativeFinesStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _with_status(status: int, skip: int = 0) -> tuple[Person, SyntheticFine]:
    found = [(p, f) for p, fines in FINED for f in fines if f.status == status]
    assert len(found) > skip, f"the test world needs {skip + 1} fines of status {status}"
    return found[skip]


def test_proportions_are_plausible() -> None:
    adults = [p for p in WORLD.persons() if p.age() >= 16]
    drivers = [p for p in adults if p.vehicles]
    fined = {p.index for p, _ in FINED}
    assert 0.05 < len(fined) / len(adults) < 0.35  # most people have no fine
    assert sum(p.index in fined for p in drivers) / len(drivers) > 0.3  # drivers more often
    statuses = [f.status for _, fines in FINED for f in fines]
    assert statuses.count(pb.FINE_STATUS_PAID) > len(statuses) / 2


def test_fines_match_the_world(stub: pb_grpc.AdministrativeFinesStub) -> None:
    for person, fines in FINED[:60]:
        listed = list(stub.ListFines(pb.ListFinesRequest(iin=person.iin)))
        assert [f.fine_id for f in listed] == [f.fine_id for f in fines]
        plates = {v.plate for v in WORLD.vehicles_of(person)}
        for fine in listed:
            assert fine.iin == person.iin
            issued = dt.date.fromisoformat(fine.issued_date)
            assert fine.due_date == str(issued + dt.timedelta(days=DUE_DAYS))
            # Whole МРП of the year of the offence, in tiyn.
            assert fine.amount_tiyn == MRP_BY_ARTICLE[fine.article] * MRP_TENGE[issued.year] * 100
            assert person.age(issued) >= 16
            if fine.vehicle_plate:
                assert fine.vehicle_plate in plates  # the plate of one of their vehicles
            if fine.status == pb.FINE_STATUS_PAID:
                assert fine.issued_date <= fine.paid_date
            else:
                assert fine.paid_date == ""
        unpaid = list(stub.ListFines(pb.ListFinesRequest(iin=person.iin, unpaid_only=True)))
        assert [f.fine_id for f in unpaid] == [
            f.fine_id for f in listed if f.status == pb.FINE_STATUS_UNPAID
        ]
        summary = stub.GetFineSummary(pb.GetFineSummaryRequest(iin=person.iin))
        assert summary.unpaid_count == len(unpaid)
        assert summary.unpaid_total_tiyn == sum(f.amount_tiyn for f in unpaid)
        assert summary.total_count == sum(f.status != pb.FINE_STATUS_CANCELLED for f in listed)
        assert stub.GetFine(pb.GetFineRequest(fine_id=listed[0].fine_id)) == listed[0]


def test_nobody_has_no_fines(stub: pb_grpc.AdministrativeFinesStub) -> None:
    clean = next(p for p in WORLD.persons() if not fines_of(WORLD, p))
    for iin in (clean.iin, WORLD.unknown_iin()):
        assert list(stub.ListFines(pb.ListFinesRequest(iin=iin))) == []
        summary = stub.GetFineSummary(pb.GetFineSummaryRequest(iin=iin))
        assert (summary.iin, summary.unpaid_count, summary.total_count) == (iin, 0, 0)


def test_pay_a_fine(stub: pb_grpc.AdministrativeFinesStub) -> None:
    person, fine = _with_status(pb.FINE_STATUS_UNPAID)
    before = stub.GetFineSummary(pb.GetFineSummaryRequest(iin=person.iin))
    request = pb.PayFineRequest(
        fine_id=fine.fine_id, payment_reference="KASPI-T-1", amount_tiyn=fine.amount_tiyn
    )
    paid = stub.PayFine(request)
    assert (paid.status, paid.paid_date) == (pb.FINE_STATUS_PAID, TODAY.isoformat())
    after = stub.GetFineSummary(pb.GetFineSummaryRequest(iin=person.iin))
    assert after.unpaid_count == before.unpaid_count - 1
    assert after.unpaid_total_tiyn == before.unpaid_total_tiyn - fine.amount_tiyn
    # A retried payment answers the paid fine; another payment is refused.
    assert stub.PayFine(request) == paid
    other = pb.PayFineRequest(
        fine_id=fine.fine_id, payment_reference="HALYK-T-2", amount_tiyn=fine.amount_tiyn
    )
    assert _error(lambda: stub.PayFine(other)).code == "ALREADY_EXISTS"


def test_payment_rules(stub: pb_grpc.AdministrativeFinesStub) -> None:
    _person, fine = _with_status(pb.FINE_STATUS_UNPAID, skip=1)
    _p2, next_fine = _with_status(pb.FINE_STATUS_UNPAID, skip=2)
    _p3, cancelled = _with_status(pb.FINE_STATUS_CANCELLED)
    amount = fine.amount_tiyn

    def pay(**kw: Any) -> pb.PayFineRequest:
        fields: dict[str, Any] = {
            "fine_id": fine.fine_id,
            "payment_reference": "EGOV-R-1",
            "amount_tiyn": amount,
        }
        fields.update(kw)
        return pb.PayFineRequest(**fields)

    cases = {
        "INVALID_REQUEST": [
            pay(amount_tiyn=amount - 100),
            pay(amount_tiyn=0),
            pay(amount_tiyn=-amount),
            pay(paid_date="2999-01-01"),
            pay(paid_date=str(fine.issued - dt.timedelta(days=1))),
            pay(paid_date="yesterday"),
            pay(payment_reference=" "),
        ],
        "FAILED_PRECONDITION": [
            pay(fine_id=cancelled.fine_id, amount_tiyn=cancelled.amount_tiyn),
        ],
        "NOT_FOUND": [pay(fine_id="012599999999999")],
        "INVALID_IDENTIFIER": [pay(fine_id="F-1"), pay(fine_id="992500000000001"), pay(fine_id="")],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.PayFine(r)).code == code, request
    # Nothing was paid on the way.
    assert stub.GetFine(pb.GetFineRequest(fine_id=fine.fine_id)).status == pb.FINE_STATUS_UNPAID
    stub.PayFine(pay(paid_date=str(fine.issued)))
    # One payment reference pays one fine.
    reuse = pay(fine_id=next_fine.fine_id, amount_tiyn=next_fine.amount_tiyn)
    assert _error(lambda: stub.PayFine(reuse)).code == "ALREADY_EXISTS"
    assert stub.GetFine(pb.GetFineRequest(fine_id=next_fine.fine_id)).status == (
        pb.FINE_STATUS_UNPAID
    )


def test_a_fine_read_under_someone_elses_consent_is_refused(
    stub: pb_grpc.AdministrativeFinesStub,
) -> None:
    (owner, fines), (other, _) = FINED[0], FINED[1]
    request = pb.GetFineRequest(fine_id=fines[0].fine_id)
    mine = stub.GetFine(request, metadata=[("govbus-subject", owner.iin)])
    assert mine.iin == owner.iin
    refused = _error(lambda: stub.GetFine(request, metadata=[("govbus-subject", other.iin)]))
    assert refused.code == "CONSENT_SCOPE"
    listed = _error(
        lambda: stub.ListFines(
            pb.ListFinesRequest(iin=owner.iin), metadata=[("govbus-subject", other.iin)]
        )
    )
    assert listed.code == "CONSENT_SCOPE"


def test_bad_identifiers(stub: pb_grpc.AdministrativeFinesStub) -> None:
    iin = FINED[0][0].iin
    for bad in (iin[:11], iin[:11] + str((int(iin[11]) + 1) % 10), "", "12345ABCDE12"):
        assert _error(lambda b=bad: stub.ListFines(pb.ListFinesRequest(iin=b))).code == (
            "INVALID_IDENTIFIER"
        )
        assert _error(lambda b=bad: stub.GetFineSummary(pb.GetFineSummaryRequest(iin=b))).code == (
            "INVALID_IDENTIFIER"
        )
    assert _error(lambda: stub.GetFine(pb.GetFineRequest(fine_id="012599999999999"))).code == (
        "NOT_FOUND"
    )


def test_contract_kit_passes(running: RunningAdapter) -> None:
    # Last: the kit's sample payment changes the store the tests above read.
    check_agency(running.channel(), load("fines"), WORLD).raise_for_failures()
