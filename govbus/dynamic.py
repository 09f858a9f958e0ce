"""Calling a service without its generated code: messages and a stub built at run time
from the `FileDescriptorSet` the registry publishes for it.

    service = DynamicService(descriptor_set, "kz.gov.dogs.v1.DogsRegistry")
    request = service.request("ListRecords", '{"iin": "900517312343"}')
    stub = bus.stub(service.stub, service_id, subject=..., purpose=..., consent=...)
    async for record in stub["ListRecords"](request):
        print(service.to_json(record))

`govbus call` is built on it; any tool that holds a descriptor set (from
`govbus discover descriptor`) can do the same. Each `DynamicService` has its own
descriptor pool, so two versions of one contract never clash. Everything wrong
with the input is refused with the error vocabulary: an unreadable descriptor set
(`CONFIG_INVALID`), a service or method it does not define (`UNKNOWN_SERVICE`,
`UNKNOWN_METHOD`), a client-streaming method (the bus carries unary and
server-streaming calls only) and a request that is not that message in JSON
(`INVALID_REQUEST`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from govbus.errors import ConfigInvalid, InvalidRequest, UnknownMethod, UnknownService

__all__ = ["DynamicService"]


class DynamicService:
    """One gRPC service of a descriptor set: its methods, messages and a stub factory."""

    def __init__(self, descriptor_set: bytes, grpc_service: str) -> None:
        files = descriptor_pb2.FileDescriptorSet()
        try:
            files.ParseFromString(descriptor_set)
        except DecodeError:
            raise ConfigInvalid("the descriptor set is not a FileDescriptorSet") from None
        pool = descriptor_pool.DescriptorPool()
        try:
            for file in files.file:
                pool.Add(file)
            self.descriptor = pool.FindServiceByName(grpc_service)
        except KeyError:
            raise UnknownService(f"the descriptor set defines no service {grpc_service}") from None
        except TypeError as exc:  # a file whose imports are missing or that conflicts
            raise ConfigInvalid(f"the descriptor set does not build: {exc}") from None
        self.name = grpc_service

    @property
    def methods(self) -> list[str]:
        return [method.name for method in self.descriptor.methods]

    def method(self, name: str) -> MethodDescriptor:
        found: MethodDescriptor | None = self.descriptor.methods_by_name.get(name)
        if found is None:
            known = ", ".join(self.methods) or "none"
            raise UnknownMethod(f"{self.name} has no method {name!r} (it has: {known})")
        if found.client_streaming:
            raise InvalidRequest(f"{self.name}/{name} streams requests: the bus does not carry it")
        return found

    def request(self, method: str, text: str) -> Message:
        """The method's request message parsed from JSON (field names as in the proto)."""
        descriptor = self.method(method).input_type
        message = message_factory.GetMessageClass(descriptor)()
        try:
            fields = json.loads(text or "{}")
        except ValueError as exc:
            raise InvalidRequest(f"the request is not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise InvalidRequest(f"a {descriptor.full_name} is a JSON object, not {text[:40]!r}")
        try:
            json_format.ParseDict(fields, message)
        except json_format.ParseError as exc:
            raise InvalidRequest(f"not a {descriptor.full_name}: {exc}") from None
        return message

    @staticmethod
    def to_json(message: Message) -> str:
        """One line of JSON, field names as in the proto, defaults left out."""
        as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return json.dumps(as_dict, ensure_ascii=False)

    def stub(self, channel: Any) -> dict[str, Callable[..., Any]]:
        """Callables by method name over `channel` (a gRPC channel, or the bus's channel
        from `govbus.client.Bus.stub`, which adds the `govbus-*` metadata)."""
        calls: dict[str, Callable[..., Any]] = {}
        for method in self.descriptor.methods:
            if method.client_streaming:
                continue
            path = f"/{self.name}/{method.name}"
            reply = message_factory.GetMessageClass(method.output_type)
            make = channel.unary_stream if method.server_streaming else channel.unary_unary
            calls[method.name] = make(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reply.FromString,
            )
        return calls
