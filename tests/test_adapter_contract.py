"""The contract-test kit: every implemented adapter passes it, and it catches broken ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2

from adapters.population import World
from adapters.sdk import (
    UNKNOWN_IIN,
    ContractReport,
    ContractSamples,
    RunningAdapter,
    adapter_codes,
    check_adapter,
    check_agency,
    descriptor_set_bytes,
    load,
    run_agency,
)
from adapters.sdk.contract import identifier_fields
from govbus.errors import NotFound
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2_grpc as pb_grpc
from govbus.pb.agencies.notary.v1 import notary_pb2
from govbus.pb.agencies.tax.v1 import tax_pb2

WORLD = World(seed=7, persons=400)
SERVICE = "kz.gov.gbdfl.v1.PersonRegistry"


@pytest.mark.parametrize("code", adapter_codes())
def test_adapter_passes_the_contract_kit(code: str, tmp_path: Path) -> None:
    agency = load(code)
    db = tmp_path / f"{code}.db"
    agency.populate(db, WORLD)
    with run_agency(agency, db) as running:
        first = check_agency(running.channel(), agency, WORLD)
        # Run again on the same store: writes now meet their own earlier effects and
        # must answer with vocabulary errors, never crash.
        second = check_agency(running.channel(), agency, WORLD)
    first.raise_for_failures()
    second.raise_for_failures()
    assert first.checks("descriptor") and first.checks("health")
    service = agency.pb2.DESCRIPTOR.services_by_name[agency.grpc_service.rsplit(".", 1)[1]]
    answered = {f.method for f in first.checks("answers")}
    assert answered == {m.name for m in service.methods}
    assert first.checks("bad identifier"), "the kit must have tried malformed identifiers"


# --- the kit fails adapters that break the contract ------------------------------------

PERSON = WORLD.person(0)


class Lenient(pb_grpc.PersonRegistryServicer):
    """Answers anything: accepts bad IINs, never says NOT_FOUND."""

    async def GetPerson(self, request: pb.GetPersonRequest, context: Any) -> pb.Person:
        return pb.Person(iin=request.iin)

    async def SearchPersons(self, request: pb.SearchPersonsRequest, context: Any) -> Any:
        yield pb.Person(last_name=request.last_name)


class PlainErrors(pb_grpc.PersonRegistryServicer):
    """Fails with bare gRPC statuses instead of the vocabulary."""

    async def GetPerson(self, request: pb.GetPersonRequest, context: Any) -> pb.Person:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
        raise AssertionError("unreachable")


class Absent(pb_grpc.PersonRegistryServicer):
    """Says NOT_FOUND even for records that exist."""

    async def GetPerson(self, request: pb.GetPersonRequest, context: Any) -> pb.Person:
        raise NotFound("nobody")


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[RunningAdapter] = []

    def start(servicer: object) -> grpc.Channel:
        adapter = RunningAdapter([(pb_grpc.add_PersonRegistryServicer_to_server, servicer)])
        started.append(adapter.start())
        return adapter.channel()

    yield start
    for adapter in started:
        adapter.stop()


def _check(channel: grpc.Channel, samples: ContractSamples, **kw: Any) -> ContractReport:
    return check_adapter(
        channel,
        descriptor_set=kw.pop("descriptor_set", descriptor_set_bytes(pb)),
        service=SERVICE,
        samples=samples,
        idempotent={"GetPerson", "SearchPersons", "ListRelatives"},
        **kw,
    )


def _failed(report: ContractReport, check: str, method: str) -> list[str]:
    return [f.detail for f in report.failures if f.check == check and f.method == method]


GET = {"GetPerson": [pb.GetPersonRequest(iin=PERSON.iin)]}


def test_kit_catches_accepted_bad_iins_and_missing_not_found(serve: Any) -> None:
    report = _check(
        serve(Lenient()),
        ContractSamples(
            valid={**GET, "SearchPersons": [pb.SearchPersonsRequest(last_name="Ахметов")]},
            unknown={"SearchPersons": [pb.SearchPersonsRequest(last_name="Никто")]},
        ),
    )
    assert len(_failed(report, "bad identifier", "GetPerson")) == 3
    assert _failed(report, "unknown", "GetPerson")  # OK instead of NOT_FOUND
    assert _failed(report, "unknown", "SearchPersons")  # a record for nobody
    assert _failed(report, "coverage", "AssignIin")  # no sample given
    # Unimplemented methods answer UNKNOWN_METHOD: a vocabulary error, not a crash.
    assert not _failed(report, "vocabulary", "AssignIin")


def test_kit_catches_errors_outside_the_vocabulary(serve: Any) -> None:
    report = _check(serve(PlainErrors()), ContractSamples(valid=GET))
    details = _failed(report, "vocabulary", "GetPerson")
    assert details and all("not a govbus error" in d for d in details)


def test_kit_catches_a_read_that_fails_for_an_existing_record(serve: Any) -> None:
    report = _check(serve(Absent()), ContractSamples(valid=GET))
    assert _failed(report, "answers", "GetPerson") == ["read failed: NOT_FOUND"]


def test_kit_catches_a_served_descriptor_that_differs_from_the_published_one(serve: Any) -> None:
    published = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_bytes(pb))
    person = next(m for m in published.file[-1].message_type if m.name == "Person")
    person.field.add(name="extra", number=99, type=9, label=1, json_name="extra")
    report = _check(
        serve(Lenient()),
        ContractSamples(valid=GET),
        descriptor_set=published.SerializeToString(),
    )
    assert _failed(report, "descriptor", SERVICE) == [
        "agencies/gbdfl/v1/gbdfl.proto differs between the published set and the adapter"
    ]


def test_identifier_fields_are_found_in_oneofs_submessages_and_lists() -> None:
    request = tax_pb2.GetDebtStatusRequest(id=tax_pb2.TaxpayerId(bin="010140100000"))
    assert [(kind, value) for _path, kind, value in identifier_fields(request)] == [
        ("bin", "010140100000")
    ]
    case = notary_pb2.InheritanceCase(deceased_iin=PERSON.iin, heir_iins=[UNKNOWN_IIN])
    found = identifier_fields(case)
    assert {(kind, value) for _p, kind, value in found} == {
        ("iin", PERSON.iin),
        ("iin", UNKNOWN_IIN),
    }
    assert WORLD.index_of(UNKNOWN_IIN) is None
