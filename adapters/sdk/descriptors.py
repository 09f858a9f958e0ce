"""The FileDescriptorSet an adapter publishes: its proto file and every file it imports.

The registry stores the descriptor set with the service (`govbus service publish
--descriptor-set file.binpb`), and the contract kit checks that the running adapter
serves exactly this set through reflection. Files come dependencies first, as
`protoc --include_imports --descriptor_set_out` writes them.

Pure functions over the generated modules' descriptors.
"""

from __future__ import annotations

import hashlib
from types import ModuleType

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from govbus.errors import UnknownService

__all__ = [
    "descriptor_set",
    "descriptor_set_bytes",
    "descriptor_sha256",
    "file_protos",
    "service_descriptor",
]


def file_protos(file: FileDescriptor) -> list[descriptor_pb2.FileDescriptorProto]:
    """The file and its transitive imports, each once, dependencies first."""
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def visit(current: FileDescriptor) -> None:
        if current.name in seen:
            return
        seen.add(current.name)
        for dependency in current.dependencies:
            visit(dependency)
        # The exact bytes protoc produced and reflection serves, not a re-encoding.
        ordered.append(descriptor_pb2.FileDescriptorProto.FromString(current.serialized_pb))

    visit(file)
    return ordered


def descriptor_set(module: ModuleType | FileDescriptor) -> descriptor_pb2.FileDescriptorSet:
    file = module if isinstance(module, FileDescriptor) else module.DESCRIPTOR
    return descriptor_pb2.FileDescriptorSet(file=file_protos(file))


def descriptor_set_bytes(module: ModuleType | FileDescriptor) -> bytes:
    return descriptor_set(module).SerializeToString(deterministic=True)


def descriptor_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def service_descriptor(module: ModuleType, full_name: str) -> ServiceDescriptor:
    """The service `full_name` (e.g. kz.gov.gbdfl.v1.PersonRegistry) of a generated module."""
    file: FileDescriptor = module.DESCRIPTOR
    for service in file.services_by_name.values():
        if service.full_name == full_name:
            return service
    known = ", ".join(s.full_name for s in file.services_by_name.values()) or "none"
    raise UnknownService(f"{file.name} defines no service {full_name} (it has: {known})")
