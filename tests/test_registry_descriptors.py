"""Service contracts from descriptor sets: what the registry accepts and why it refuses.

`person_descriptor_set` compiles a small agency-style proto with protoc, exactly
as an agency developer does (`--descriptor_set_out --include_imports`); the
other registry tests use it too.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.errors import InvalidRequest
from govbus.pb.govbus.v1 import registry_pb2
from registry.descriptors import descriptor_set_of, read_contract

PERSON_SERVICE = "kz.gov.testpersons.v1.PersonRegistry"
PERSON_PROTO = """
syntax = "proto3";
package kz.gov.testpersons.v1;
import "google/protobuf/timestamp.proto";

message GetPersonRequest { string iin = 1; }
message Person {
  string iin = 1;
  string full_name = 2;
  google.protobuf.Timestamp born = 3;
  string address = 4;
}
message WatchPersonRequest { string iin = 1; }

service PersonRegistry {
  rpc GetPerson(GetPersonRequest) returns (Person);
  rpc WatchPerson(WatchPersonRequest) returns (stream Person);
}

service Uploads {
  rpc Upload(stream Person) returns (Person);
}
"""


def person_descriptor_set(directory: Path, *, include_imports: bool = True) -> bytes:
    """Compile PERSON_PROTO with protoc into a FileDescriptorSet."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "persons.proto").write_text(PERSON_PROTO)
    out = directory / ("persons.binpb" if include_imports else "persons-bare.binpb")
    args = [
        "protoc",
        f"-I{directory}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--descriptor_set_out={out}",
        "persons.proto",
    ]
    if include_imports:
        args.insert(-1, "--include_imports")
    assert protoc.main(args) == 0
    return out.read_bytes()


@pytest.fixture(scope="module")
def persons(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return person_descriptor_set(tmp_path_factory.mktemp("proto"))


def test_methods_are_derived_from_the_descriptor(persons: bytes) -> None:
    contract = read_contract(
        persons,
        PERSON_SERVICE,
        idempotent=["GetPerson", f"/{PERSON_SERVICE}/WatchPerson"],
        fields={"GetPerson": ["full_name", "address"]},
    )
    by_name = {m.name: m for m in contract.methods}
    assert set(by_name) == {f"/{PERSON_SERVICE}/GetPerson", f"/{PERSON_SERVICE}/WatchPerson"}
    get = by_name[f"/{PERSON_SERVICE}/GetPerson"]
    watch = by_name[f"/{PERSON_SERVICE}/WatchPerson"]
    assert (get.server_streaming, get.idempotent, list(get.fields)) == (
        False,
        True,
        ["full_name", "address"],
    )
    assert (watch.server_streaming, watch.idempotent) == (True, True)
    assert contract.sha256 == hashlib.sha256(contract.descriptor_set).digest()
    again = descriptor_pb2.FileDescriptorSet.FromString(contract.descriptor_set)
    assert {f.name for f in again.file} == {"persons.proto", "google/protobuf/timestamp.proto"}


def test_a_descriptor_without_the_named_service_is_refused_clearly(persons: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read_contract(persons, "kz.gov.testpersons.v1.Missing")
    message = refused.value.message
    assert "does not contain the service kz.gov.testpersons.v1.Missing" in message
    assert PERSON_SERVICE in message  # says what the file does hold


@pytest.mark.parametrize(
    ("data", "service", "kwargs", "expected"),
    [
        (b"", PERSON_SERVICE, {}, "empty"),
        (b"\xff\xff\xff garbage", PERSON_SERVICE, {}, "not a serialized"),
        (None, "PersonRegistry", {}, "fully qualified"),
        (None, "kz.gov.testpersons.v1.Uploads", {}, "client-streaming"),
        (None, PERSON_SERVICE, {"idempotent": ["Delete"]}, "no such method"),
        (None, PERSON_SERVICE, {"idempotent": ["/other.Svc/GetPerson"]}, "not a method"),
        (None, PERSON_SERVICE, {"fields": {"GetPerson": ["salary"]}}, "has no field 'salary'"),
    ],
)
def test_bad_contracts_are_refused(
    persons: bytes, data: bytes | None, service: str, kwargs: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidRequest, match=expected):
        read_contract(persons if data is None else data, service, **kwargs)  # type: ignore[arg-type]


def test_a_set_compiled_without_imports_is_refused(tmp_path: Path) -> None:
    bare = person_descriptor_set(tmp_path, include_imports=False)
    with pytest.raises(InvalidRequest, match=r"incomplete.*timestamp.proto.*--include_imports"):
        read_contract(bare, PERSON_SERVICE)


def test_descriptor_set_of_generated_modules_includes_imports() -> None:
    data = descriptor_set_of(registry_pb2.DESCRIPTOR)
    names = [f.name for f in descriptor_pb2.FileDescriptorSet.FromString(data).file]
    # Dependencies come first, as protoc writes them.
    assert names.index("govbus/v1/globalconf.proto") < names.index("govbus/v1/registry.proto")
    contract = read_contract(data, "govbus.v1.Discovery")
    assert len(contract.methods) == 6


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_untrusted_descriptor_bytes_only_raise_invalid_request(data: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        read_contract(data, PERSON_SERVICE)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_fuzz_damaged_real_descriptor_only_raises_invalid_request(
    position: int, value: int
) -> None:
    data = bytearray(descriptor_set_of(registry_pb2.DESCRIPTOR))
    data[position % len(data)] = value
    with contextlib.suppress(InvalidRequest):
        read_contract(bytes(data), "govbus.v1.Discovery")
