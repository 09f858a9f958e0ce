"""Service contracts from a `FileDescriptorSet`: what a provider publishes.

An agency developer publishes a service by handing the registry the compiled
descriptor set of its proto (`protoc --descriptor_set_out=… --include_imports`)
and naming the fully qualified gRPC service. `read_contract` checks that the set
is complete (every import is in it), that the named service is in it, and
derives the methods the global configuration lists. `descriptor_set_of` builds
such a set from generated Python modules (tests, the demo, adapters).

Pure functions over bytes; the descriptors are loaded into a private pool, never
into the process's default one. Every refusal is `InvalidRequest` saying what to
fix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from govbus.errors import InvalidRequest
from govbus.pb.govbus.v1 import globalconf_pb2

__all__ = ["MAX_DESCRIPTOR_SET_BYTES", "ServiceContract", "descriptor_set_of", "read_contract"]

MAX_DESCRIPTOR_SET_BYTES = 4 * 1024 * 1024
_SERVICE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True, slots=True)
class ServiceContract:
    """A verified gRPC service contract: its methods and the descriptor set it came from."""

    grpc_service: str
    methods: tuple[globalconf_pb2.Method, ...]
    descriptor_set: bytes  # deterministic re-serialization of the set
    sha256: bytes


def _parse_set(data: bytes) -> descriptor_pb2.FileDescriptorSet:
    if not data:
        raise InvalidRequest("the descriptor set is empty: pass a compiled FileDescriptorSet")
    if len(data) > MAX_DESCRIPTOR_SET_BYTES:
        raise InvalidRequest(
            f"the descriptor set is {len(data)} bytes; at most {MAX_DESCRIPTOR_SET_BYTES} "
            "are accepted"
        )
    parsed = descriptor_pb2.FileDescriptorSet()
    try:
        parsed.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        raise InvalidRequest(
            "the descriptor file is not a serialized google.protobuf.FileDescriptorSet; build it "
            "with `python -m grpc_tools.protoc --descriptor_set_out=FILE --include_imports …`"
        ) from None
    if not parsed.file:
        raise InvalidRequest("the descriptor set holds no .proto files")
    return parsed


def _load_pool(
    files: Sequence[descriptor_pb2.FileDescriptorProto],
) -> descriptor_pool.DescriptorPool:
    by_name: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for file in files:
        if not file.name:
            raise InvalidRequest("the descriptor set holds a file without a name")
        known = by_name.get(file.name)
        if known is not None and known != file:
            raise InvalidRequest(f"the descriptor set holds two different files named {file.name}")
        by_name[file.name] = file
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str, chain: tuple[str, ...]) -> None:
        if name in added:
            return
        if name in chain:
            raise InvalidRequest(f"the descriptor set has an import cycle through {name}")
        file = by_name.get(name)
        if file is None:
            raise InvalidRequest(
                f"the descriptor set is incomplete: {chain[-1]} imports {name}, which is not in "
                "it; compile with --include_imports"
            )
        for dependency in file.dependency:
            add(dependency, (*chain, name))
        try:
            pool.AddSerializedFile(file.SerializeToString())
        except Exception as exc:  # noqa: BLE001 - the pool raises TypeError/ValueError variants
            raise InvalidRequest(f"the descriptor of {name} is not valid: {exc}") from None
        added.add(name)

    for name in by_name:
        add(name, ())
    return pool


def _short(method: str) -> str:
    return method.rsplit("/", 1)[-1]


def read_contract(
    descriptor_set: bytes,
    grpc_service: str,
    *,
    idempotent: Iterable[str] = (),
    fields: Mapping[str, Sequence[str]] | None = None,
) -> ServiceContract:
    """Check `descriptor_set` and derive the methods of `grpc_service` from it.

    `idempotent` and the keys of `fields` name methods by short name (`GetPerson`)
    or full path (`/pkg.Service/GetPerson`); every field must be a field of that
    method's response message.
    """
    if not isinstance(grpc_service, str) or not _SERVICE_NAME.fullmatch(grpc_service):
        raise InvalidRequest(
            f"gRPC service name {grpc_service!r} must be fully qualified, e.g. "
            "kz.gov.gbdfl.v1.PersonRegistry"
        )
    parsed = _parse_set(descriptor_set)
    pool = _load_pool(parsed.file)
    try:
        service = pool.FindServiceByName(grpc_service)
    except KeyError:
        present = sorted(
            f"{f.package}.{s.name}" if f.package else s.name for f in parsed.file for s in f.service
        )
        listed = ", ".join(present) if present else "no services at all"
        raise InvalidRequest(
            f"the descriptor set does not contain the service {grpc_service} (it has {listed}); "
            "check --grpc-service or the descriptor file"
        ) from None
    by_short: dict[str, descriptor.MethodDescriptor] = {}
    for method in service.methods:
        if method.client_streaming:
            raise InvalidRequest(
                f"{grpc_service}/{method.name} is client-streaming; the bus carries unary and "
                "server-streaming methods only"
            )
        by_short[method.name] = method
    if not by_short:
        raise InvalidRequest(f"service {grpc_service} has no methods")

    def resolve(name: str, what: str) -> str:
        short = _short(name)
        full_prefix = f"/{grpc_service}/"
        if name.startswith("/") and not name.startswith(full_prefix):
            raise InvalidRequest(f"{what} {name} is not a method of {grpc_service}")
        if short not in by_short:
            raise InvalidRequest(
                f"{what} {name}: {grpc_service} has no such method (it has "
                f"{', '.join(sorted(by_short))})"
            )
        return short

    idempotent_set = {resolve(name, "idempotent method") for name in idempotent}
    scoped: dict[str, list[str]] = {}
    for name, names in (fields or {}).items():
        short = resolve(name, "method")
        output = by_short[short].output_type
        for field_name in names:
            if field_name not in output.fields_by_name:
                raise InvalidRequest(
                    f"{output.full_name} (response of {short}) has no field {field_name!r}; it "
                    f"has {', '.join(sorted(output.fields_by_name))}"
                )
        scoped[short] = list(dict.fromkeys(names))
    methods = tuple(
        globalconf_pb2.Method(
            name=f"/{grpc_service}/{short}",
            server_streaming=method.server_streaming,
            idempotent=short in idempotent_set,
            fields=scoped.get(short, []),
        )
        for short, method in by_short.items()
    )
    canonical = parsed.SerializeToString(deterministic=True)
    return ServiceContract(
        grpc_service=grpc_service,
        methods=methods,
        descriptor_set=canonical,
        sha256=hashlib.sha256(canonical).digest(),
    )


def descriptor_set_of(*files: descriptor.FileDescriptor) -> bytes:
    """A serialized `FileDescriptorSet` of generated modules' `DESCRIPTOR`s and all their
    imports, dependencies first (what `protoc --include_imports` writes)."""
    ordered: list[descriptor.FileDescriptor] = []
    seen: set[str] = set()

    def visit(file: descriptor.FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            visit(dependency)
        ordered.append(file)

    for file in files:
        visit(file)
    result = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        file.CopyToProto(result.file.add())
    return result.SerializeToString(deterministic=True)
