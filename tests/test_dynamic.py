"""Calling a service from its published descriptor set, without generated code
(`govbus.dynamic`, `govbus call`, `govbus adapter sample`).

The call through a whole bus is in tests/test_adapter_scaffold.py (the agency
developer's guide ends with it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from adapters.population import World
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.dynamic import DynamicService
from govbus.errors import (
    ConfigInvalid,
    GovbusError,
    InvalidIdentifier,
    InvalidRequest,
    UnknownMethod,
    UnknownService,
    from_rpc_error,
)
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2_grpc as pb_grpc
from tests.conftest import run_cli

WORLD = World(seed=3, persons=600)
GBDFL = load("gbdfl")
SERVICE = GBDFL.publication.grpc_service


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("gbdfl") / "gbdfl.db"
    GBDFL.populate(db, WORLD)
    with run_agency(GBDFL, db) as adapter:
        yield adapter


@pytest.fixture(scope="module")
def contract() -> DynamicService:
    return DynamicService(GBDFL.descriptor_set(), SERVICE)


def _someone() -> str:
    return next(p.iin for p in WORLD.persons() if p.alive and p.age(WORLD.today) > 30)


def test_answers_match_the_generated_stub(
    running: RunningAdapter, contract: DynamicService
) -> None:
    iin = _someone()
    channel = running.channel()
    dynamic = contract.stub(channel)
    generated = pb_grpc.PersonRegistryStub(channel)

    person = dynamic["GetPerson"](contract.request("GetPerson", json.dumps({"iin": iin})))
    expected = generated.GetPerson(pb.GetPersonRequest(iin=iin))
    assert person.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    assert json.loads(contract.to_json(person))["iin"] == iin

    relatives = list(
        dynamic["ListRelatives"](contract.request("ListRelatives", f'{{"iin": "{iin}"}}'))
    )
    assert [r.SerializeToString() for r in relatives] == [
        r.SerializeToString() for r in generated.ListRelatives(pb.ListRelativesRequest(iin=iin))
    ]


def test_errors_come_back_as_the_vocabulary(
    running: RunningAdapter, contract: DynamicService
) -> None:
    dynamic = contract.stub(running.channel())
    with pytest.raises(grpc.RpcError) as failure:
        dynamic["GetPerson"](contract.request("GetPerson", '{"iin": "123"}'))
    assert isinstance(from_rpc_error(failure.value), InvalidIdentifier)


def test_the_contract_is_read_from_the_descriptor_set(contract: DynamicService) -> None:
    assert set(contract.methods) == {
        m.name for m in pb.DESCRIPTOR.services_by_name["PersonRegistry"].methods
    }
    assert contract.method("ListRelatives").server_streaming
    assert contract.request("GetPerson", "").ByteSize() == 0  # no body: the empty request


@pytest.mark.parametrize(
    ("method", "text", "error"),
    [
        ("GetPerson", '{"iin": ', InvalidRequest),  # not JSON
        ("GetPerson", '{"no_such_field": 1}', InvalidRequest),
        ("GetPerson", '{"iin": 12}', InvalidRequest),  # wrong type
        ("GetPerson", "[]", InvalidRequest),
        ("Nope", "{}", UnknownMethod),
    ],
)
def test_bad_requests_are_refused(
    contract: DynamicService, method: str, text: str, error: type[GovbusError]
) -> None:
    with pytest.raises(error):
        contract.request(method, text)


def test_bad_descriptor_sets_are_refused() -> None:
    with pytest.raises(ConfigInvalid):
        DynamicService(b"\xff\xff not a descriptor set", SERVICE)
    with pytest.raises(UnknownService):
        DynamicService(GBDFL.descriptor_set(), "kz.gov.gbdfl.v1.NoSuchRegistry")
    # A file whose import is missing from the set does not build.
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(GBDFL.descriptor_set())
    files.file[-1].dependency.append("missing/import.proto")
    with pytest.raises(ConfigInvalid, match="does not build"):
        DynamicService(files.SerializeToString(), SERVICE)


def test_client_streaming_methods_are_not_carried() -> None:
    file = descriptor_pb2.FileDescriptorProto(name="up.proto", package="t", syntax="proto3")
    file.message_type.add(name="Chunk")
    service = file.service.add(name="Upload")
    service.method.add(
        name="Send", input_type=".t.Chunk", output_type=".t.Chunk", client_streaming=True
    )
    files = descriptor_pb2.FileDescriptorSet(file=[file])
    contract = DynamicService(files.SerializeToString(), "t.Upload")
    with pytest.raises(InvalidRequest, match="streams requests"):
        contract.request("Send", "{}")
    assert "Send" not in contract.stub(grpc.insecure_channel("127.0.0.1:1"))


def test_adapter_sample_prints_a_valid_request() -> None:
    printed = run_cli("adapter", "sample", "gbdfl", "GetPerson", "--persons", "600", "--seed", "3")
    request = json.loads(printed.stdout)
    iin = run_cli(
        "adapter",
        "sample",
        "gbdfl",
        "GetPerson",
        "--persons",
        "600",
        "--seed",
        "3",
        "--field",
        "iin",
    ).stdout.strip()
    assert request == {"iin": iin}
    assert any(p.iin == iin for p in WORLD.persons())
    unknown = run_cli("adapter", "sample", "gbdfl", "Nope", "--persons", "600", check=False)
    assert unknown.returncode == 1 and "UNKNOWN_METHOD" in unknown.stderr


def test_call_refuses_bad_input_before_any_traffic(tmp_path: Path) -> None:
    service = str(GBDFL.publication.service_id)
    no_client = run_cli(
        "call", service, "GetPerson", env={"GOVBUS_CLIENT": "", "GOVBUS_REGISTRY": ""}, check=False
    )
    assert no_client.returncode == 1 and "CONFIG_INVALID" in no_client.stderr
    garbage = tmp_path / "consent.bin"
    garbage.write_bytes(b"not a consent")
    bad_consent = run_cli(
        "call",
        service,
        "GetPerson",
        "--client",
        "KZ/GOV/030140100014/service-centre",
        "--registry",
        "127.0.0.1:1",
        "--consent",
        str(garbage),
        check=False,
    )
    assert bad_consent.returncode == 1 and "CONSENT_INVALID" in bad_consent.stderr
    assert "Traceback" not in no_client.stderr + bad_consent.stderr
