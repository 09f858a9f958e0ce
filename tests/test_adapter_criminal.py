"""КПСиСУ criminal records over real gRPC: records match the world; certificates keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.criminal.data import (
    PURPOSES,
    SyntheticConviction,
    certificate_of,
    convictions_of,
    court_of,
    wanted_of,
)
from adapters.population import Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.criminal.v1 import criminal_pb2 as pb
from govbus.pb.agencies.criminal.v1 import criminal_pb2_grpc as pb_grpc

WORLD = World(seed=3, persons=1600)
TODAY = dt.date.today()
RECORDS: dict[int, list[SyntheticConviction]] = {
    p.index: c for p in WORLD.persons() if (c := convictions_of(WORLD, p))
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("criminal") / "criminal.db"
    agency = load("criminal")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.CriminalRecordsStub:
    return pb_grpc.CriminalRecordsStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _open(conviction: SyntheticConviction) -> bool:
    return conviction.expunged_on is None or conviction.expunged_on > TODAY


def _living(test: Any) -> list[Person]:
    return [
        p
        for p in WORLD.persons()
        if p.alive
        and p.age() >= 18
        and wanted_of(WORLD, p, RECORDS.get(p.index, [])) is None
        and test(RECORDS.get(p.index, []))
    ]


def test_most_people_have_no_record() -> None:
    adults = [p for p in WORLD.persons() if p.age() >= 18]
    men = [p for p in adults if p.sex is Sex.MALE]
    assert len(RECORDS) / len(adults) < 0.08
    assert sum(p.index in RECORDS for p in men) > sum(p.index in RECORDS for p in adults) / 2


def test_convictions_match_the_world(stub: pb_grpc.CriminalRecordsStub) -> None:
    for index, convictions in list(RECORDS.items())[:40]:
        person = WORLD.person(index)
        everything = list(
            stub.ListConvictions(pb.ListConvictionsRequest(iin=person.iin, include_expunged=True))
        )
        assert [c.case_number for c in everything] == [c.case_number for c in convictions]
        for got, made in zip(everything, convictions, strict=True):
            assert got.verdict_date == made.verdict.isoformat()
            assert got.court == court_of(person)
            assert person.age(made.verdict) >= 16
            assert person.death_date is None or made.verdict <= person.death_date
            assert got.expunged == (not _open(made))
            assert got.expunged_date == ("" if _open(made) else str(made.expunged_on))
        unspent = list(stub.ListConvictions(pb.ListConvictionsRequest(iin=person.iin)))
        assert [c.case_number for c in unspent] == [c.case_number for c in convictions if _open(c)]
        check = stub.CheckRecord(pb.CheckRecordRequest(iin=person.iin))
        assert check.has_convictions == bool(unspent)


def test_a_clean_person_and_an_unknown_one(stub: pb_grpc.CriminalRecordsStub) -> None:
    clean = _living(lambda c: not c)[0]
    for iin in (clean.iin, WORLD.unknown_iin()):
        check = stub.CheckRecord(pb.CheckRecordRequest(iin=iin))
        assert (check.iin, check.has_convictions, check.wanted) == (iin, False, False)
        request = pb.ListConvictionsRequest(iin=iin, include_expunged=True)
        assert list(stub.ListConvictions(request)) == []


def test_issue_certificates(stub: pb_grpc.CriminalRecordsStub) -> None:
    clean = _living(lambda c: not c)[1]
    certificate = stub.IssueCertificate(pb.IssueCertificateRequest(iin=clean.iin, purpose="visa"))
    assert (certificate.iin, certificate.has_convictions) == (clean.iin, False)
    assert not certificate.convictions
    assert certificate.issued_date == TODAY.isoformat() and certificate.purpose == "visa"
    assert certificate.certificate_number.startswith(str(TODAY.year))
    # Asking again on the same day for the same purpose: the same certificate.
    again = stub.IssueCertificate(pb.IssueCertificateRequest(iin=clean.iin, purpose="visa"))
    assert again == certificate
    other = stub.IssueCertificate(pb.IssueCertificateRequest(iin=clean.iin, purpose="employment"))
    assert other.certificate_number != certificate.certificate_number
    number = certificate.certificate_number
    assert stub.GetCertificate(pb.GetCertificateRequest(certificate_number=number)) == certificate


def test_spent_convictions_show_only_where_the_law_wants_them(
    stub: pb_grpc.CriminalRecordsStub,
) -> None:
    spent = _living(lambda c: c and not any(_open(x) for x in c))[0]
    employment = stub.IssueCertificate(
        pb.IssueCertificateRequest(iin=spent.iin, purpose="employment")
    )
    assert not employment.has_convictions and not employment.convictions
    assert {p for p, full in PURPOSES.items() if full} == {
        "work-with-minors",
        "adoption",
        "guardianship",
    }
    teacher = stub.IssueCertificate(
        pb.IssueCertificateRequest(iin=spent.iin, purpose="work-with-minors")
    )
    assert not teacher.has_convictions
    assert [c.case_number for c in teacher.convictions] == [
        c.case_number for c in RECORDS[spent.index]
    ]
    assert all(c.expunged for c in teacher.convictions)

    convict = _living(lambda c: any(_open(x) for x in c))[0]
    shown = stub.IssueCertificate(pb.IssueCertificateRequest(iin=convict.iin, purpose="visa"))
    assert shown.has_convictions
    assert {c.case_number for c in shown.convictions} == {
        c.case_number for c in RECORDS[convict.index] if _open(c)
    }


def test_certificate_rules(stub: pb_grpc.CriminalRecordsStub) -> None:
    wanted = next(
        p for p in WORLD.persons() if wanted_of(WORLD, p, RECORDS.get(p.index, [])) is not None
    )
    assert stub.CheckRecord(pb.CheckRecordRequest(iin=wanted.iin)).wanted
    child = Iin.build(TODAY.replace(year=TODAY.year - 10, day=1), Sex.FEMALE, 9990)
    child = child or Iin.build(TODAY.replace(year=TODAY.year - 10, day=1), Sex.FEMALE, 9991)
    assert child is not None
    adult = _living(lambda c: not c)[2]
    cases = {
        "FAILED_PRECONDITION": [
            pb.IssueCertificateRequest(iin=wanted.iin, purpose="employment"),
            pb.IssueCertificateRequest(iin=child.value, purpose="visa"),
        ],
        "INVALID_REQUEST": [
            pb.IssueCertificateRequest(iin=adult.iin, purpose="gossip"),
            pb.IssueCertificateRequest(iin=adult.iin, purpose=""),
        ],
        "INVALID_IDENTIFIER": [
            pb.IssueCertificateRequest(iin=adult.iin[:11], purpose="visa"),
            pb.IssueCertificateRequest(purpose="visa"),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.IssueCertificate(r)).code == code, request


def test_historic_certificates(stub: pb_grpc.CriminalRecordsStub) -> None:
    issued = []
    for person in WORLD.persons():
        convictions = RECORDS.get(person.index, [])
        made = certificate_of(WORLD, person, convictions, wanted_of(WORLD, person, convictions))
        if made is not None:
            issued.append((person, made))
    assert len(issued) > 50
    for person, made in issued[:30]:
        got = stub.GetCertificate(pb.GetCertificateRequest(certificate_number=made.number))
        assert (got.iin, got.issued_date, got.purpose) == (
            person.iin,
            made.issued.isoformat(),
            made.purpose,
        )
        assert got.has_convictions == made.has_convictions
        assert [c.case_number for c in got.convictions] == [c.case_number for c in made.shown]
    holder, made = issued[0]
    other = issued[1][0]
    request = pb.GetCertificateRequest(certificate_number=made.number)
    assert stub.GetCertificate(request, metadata=[("govbus-subject", holder.iin)]).iin == (
        holder.iin
    )
    scope = _error(lambda: stub.GetCertificate(request, metadata=[("govbus-subject", other.iin)]))
    assert scope.code == "CONSENT_SCOPE"
    cases = {
        "NOT_FOUND": ["2025999999999"],
        "INVALID_IDENTIFIER": ["", "2025-0000001", "1899000000001", "20259999999999"],
    }
    for code, numbers in cases.items():
        for number in numbers:
            call = pb.GetCertificateRequest(certificate_number=number)
            assert _error(lambda c=call: stub.GetCertificate(c)).code == code, number


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("criminal"), WORLD).raise_for_failures()
