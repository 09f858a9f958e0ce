"""The contract-test kit: does a running adapter keep the govbus adapter contract?

An agency developer points it at a channel to their adapter, with the descriptor
set they are about to publish and a few sample requests; it starts nothing itself.

```python
report = check_adapter(channel, descriptor_set=data, service="kz.gov.x.v1.Registry",
                       samples=ContractSamples(valid={"GetThing": [req]}),
                       idempotent={"GetThing"})
report.raise_for_failures()
```

Checks:

- descriptor: reflection serves exactly the files of the descriptor set to be published
  (the service's file and every file it imports);
- health: the service reports SERVING;
- coverage: every method of the service has a sample;
- answers: a sample read answers OK; a sample write answers OK or with a vocabulary
  error; every failure anywhere carries `google.rpc.ErrorInfo` with domain `govbus`,
  and none is INTERNAL;
- bad identifiers: every IIN or BIN field of a sample (fields named `iin`, `*_iin`,
  `bin`, `*_bin`, `*_iins`, `*_bins`, also inside sub-messages and oneofs), made
  wrong in three ways — a wrong check digit, eleven digits, letters — is refused
  with INVALID_IDENTIFIER;
- unknown records: a read about a person nobody has (a valid IIN born in 1899), and
  the samples given as `unknown`, answer NOT_FOUND (or an empty stream); methods in
  `unknown_answered` may answer OK instead ("not a debtor"); the samples given as
  `invalid` (malformed identifiers of other kinds, e.g. an address code) answer
  INVALID_IDENTIFIER;
- empty request: a request with every field unset answers OK or with a vocabulary
  error other than INTERNAL.

This module must never start or stop a server, and never write a store itself
(only through the adapter's own write methods in the samples).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from govbus.errors import DOMAIN, STATUS_DETAILS_KEY, UnknownService
from govbus.ids import Iin, Sex

if TYPE_CHECKING:
    from adapters.population import World
    from adapters.sdk.agency import AgencyAdapter

__all__ = [
    "UNKNOWN_IIN",
    "ContractReport",
    "ContractSamples",
    "Finding",
    "check_adapter",
    "check_agency",
    "identifier_fields",
    "vocabulary_code",
]

_built = Iin.build(dt.date(1899, 12, 31), Sex.MALE, 9990)
assert _built is not None
#: A valid IIN no synthetic person has: every "unknown person" check uses it.
UNKNOWN_IIN = _built.value


@dataclass(frozen=True)
class ContractSamples:
    """Requests for the kit, by method name (short name, e.g. "GetPerson")."""

    #: Requests about records that exist: reads must answer OK.
    valid: Mapping[str, Sequence[Message]]
    #: Requests about records that do not exist: NOT_FOUND or an empty stream.
    unknown: Mapping[str, Sequence[Message]] = field(default_factory=dict)
    #: Reads that answer about anyone, e.g. "no convictions", instead of NOT_FOUND.
    unknown_answered: Collection[str] = frozenset()
    #: Requests with malformed identifiers other than IIN/BIN (which the kit derives
    #: itself), e.g. a bad address code: INVALID_IDENTIFIER.
    invalid: Mapping[str, Sequence[Message]] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    check: str
    method: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'FAIL'}] {self.check} {self.method}: {self.detail}"


@dataclass
class ContractReport:
    service: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, method: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(check, method, ok, detail))

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def passed(self) -> bool:
        return not self.failures

    def checks(self, name: str) -> list[Finding]:
        return [f for f in self.findings if f.check == name]

    def __str__(self) -> str:
        head = (
            f"contract of {self.service}: {len(self.findings)} checks, {len(self.failures)} failed"
        )
        return "\n".join([head, *(str(f) for f in self.failures)])

    def raise_for_failures(self) -> None:
        if self.failures:
            raise AssertionError(str(self))


def vocabulary_code(error: grpc.RpcError) -> str | None:
    """The govbus code of a failed call, or None when it carries no govbus ErrorInfo."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # noqa: BLE001 - unparsable details are not vocabulary
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
                return str(info.reason)
    return None


# --- identifier fields ---------------------------------------------------------------


def _is_identifier(name: str) -> str | None:
    for kind in ("iin", "bin"):
        if name in (kind, f"{kind}s") or name.endswith((f"_{kind}", f"_{kind}s")):
            return kind
    return None


Path_ = tuple[tuple[str, int | None], ...]


def identifier_fields(message: Message) -> list[tuple[Path_, str, str]]:
    """(path, kind, value) of every set IIN/BIN field of a message, depth first."""
    found: list[tuple[Path_, str, str]] = []

    def walk(current: Message, prefix: Path_) -> None:
        for fd, value in current.ListFields():
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                if _repeated(fd):
                    for index, item in enumerate(value):
                        walk(item, (*prefix, (fd.name, index)))
                else:
                    walk(value, (*prefix, (fd.name, None)))
            elif fd.type == FieldDescriptor.TYPE_STRING:
                kind = _is_identifier(fd.name)
                if kind is None:
                    continue
                if _repeated(fd):
                    for index, item in enumerate(value):
                        found.append(((*prefix, (fd.name, index)), kind, item))
                elif value:
                    found.append(((*prefix, (fd.name, None)), kind, value))

    walk(message, ())
    return found


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _with_value(message: Message, path: Path_, value: str) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    target: Any = copy
    for name, index in path[:-1]:
        target = getattr(target, name) if index is None else getattr(target, name)[index]
    name, index = path[-1]
    if index is None:
        setattr(target, name, value)
    else:
        getattr(target, name)[index] = value
    return copy


def _bad_variants(value: str) -> list[tuple[str, str]]:
    wrong_check = value[:11] + str((int(value[11]) + 1) % 10) if value[11:].isdigit() else "1" * 12
    return [
        ("wrong check digit", wrong_check),
        ("eleven digits", value[:11]),
        ("letters", "12345ABCDE12"),
    ]


# --- calling methods by descriptor ---------------------------------------------------------


class _Caller:
    def __init__(
        self,
        channel: grpc.Channel,
        service: str,
        method: MethodDescriptor,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        self.method = method
        self.output: type[Message] = message_factory.GetMessageClass(method.output_type)
        path = f"/{service}/{method.name}"
        serializer: Callable[[Message], bytes] = _serialize
        if method.server_streaming:
            self._stream = channel.unary_stream(
                path, request_serializer=serializer, response_deserializer=_raw
            )
        else:
            self._unary = channel.unary_unary(
                path, request_serializer=serializer, response_deserializer=_raw
            )
        self.timeout = timeout
        self.metadata = tuple(metadata)

    def call(self, request: Message) -> tuple[int, grpc.RpcError | None]:
        """Number of response messages (1 for unary), or the error."""
        try:
            if self.method.server_streaming:
                count = 0
                for raw in self._stream(request, timeout=self.timeout, metadata=self.metadata):
                    self.output.FromString(raw)
                    count += 1
                return count, None
            self.output.FromString(
                self._unary(request, timeout=self.timeout, metadata=self.metadata)
            )
            return 1, None
        except grpc.RpcError as error:
            return 0, error


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _raw(data: bytes) -> bytes:
    return data


def _describe(error: grpc.RpcError) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else ""
    return f"{getattr(code, 'name', code)}: {str(details)[:160]}"


# --- the checks --------------------------------------------------------------------------------


def check_adapter(
    channel: grpc.Channel,
    *,
    descriptor_set: bytes,
    service: str,
    samples: ContractSamples,
    idempotent: Collection[str],
    timeout: float = 10.0,
    metadata: Sequence[tuple[str, str]] = (),
) -> ContractReport:
    """Run every check against the adapter behind `channel` (see the module docstring)."""
    report = ContractReport(service)
    published = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for file in published.file:
        pool.Add(file)
    try:
        service_desc = pool.FindServiceByName(service)
    except KeyError:
        raise UnknownService(f"the descriptor set defines no service {service}") from None

    _check_descriptor(report, channel, service, service_desc.file.name, published, timeout)
    _check_health(report, channel, service, timeout)
    for method in service_desc.methods:
        caller = _Caller(channel, service, method, timeout, metadata)
        _check_method(report, caller, method, samples, method.name in idempotent)
    return report


def check_agency(
    channel: grpc.Channel, adapter: AgencyAdapter, world: World, **options: Any
) -> ContractReport:
    """`check_adapter` with what an `AgencyAdapter` publishes and its samples from `world`."""
    publication = adapter.publication
    return check_adapter(
        channel,
        descriptor_set=adapter.descriptor_set(),
        service=publication.grpc_service,
        samples=adapter.samples(world),
        idempotent=publication.idempotent,
        **options,
    )


def _check_descriptor(
    report: ContractReport,
    channel: grpc.Channel,
    service: str,
    file_name: str,
    published: descriptor_pb2.FileDescriptorSet,
    timeout: float,
) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
    try:
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=timeout))
    except grpc.RpcError as error:
        report.add("descriptor", service, False, f"reflection failed: {_describe(error)}")
        return
    if not responses or not responses[0].HasField("file_descriptor_response"):
        detail = responses[0].error_response.error_message if responses else "no answer"
        report.add("descriptor", service, False, f"reflection does not serve it: {detail}")
        return
    served = {}
    for raw in responses[0].file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        served[proto.name] = proto
    by_name = {f.name: f for f in published.file}
    wanted = _closure(file_name, by_name)
    problems = []
    for name in sorted(wanted | served.keys()):
        mine, theirs = by_name.get(name), served.get(name)
        if name not in wanted:
            problems.append(f"{name} served but not published")
        elif theirs is None:
            problems.append(f"{name} published but not served")
        elif mine != theirs:
            problems.append(f"{name} differs between the published set and the adapter")
    report.add(
        "descriptor",
        service,
        not problems,
        "; ".join(problems) or f"reflection serves the published {len(wanted)} file(s)",
    )


def _closure(name: str, by_name: Mapping[str, descriptor_pb2.FileDescriptorProto]) -> set[str]:
    result: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        if current in result:
            continue
        result.add(current)
        file = by_name.get(current)
        if file is not None:
            pending.extend(file.dependency)
    return result


def _check_health(
    report: ContractReport, channel: grpc.Channel, service: str, timeout: float
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        report.add("health", service, False, f"health check failed: {_describe(error)}")
        return
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    report.add("health", service, serving, f"status {answer.status}")


def _outcome(
    report: ContractReport, check: str, name: str, error: grpc.RpcError | None
) -> str | None:
    """Record that a failure is a vocabulary error (not INTERNAL); return its code."""
    if error is None:
        return "OK"
    code = vocabulary_code(error)
    if code is None:
        report.add("vocabulary", name, False, f"{check}: not a govbus error: {_describe(error)}")
    elif code == "INTERNAL":
        report.add("vocabulary", name, False, f"{check}: INTERNAL: {_describe(error)}")
    return code


def _check_method(
    report: ContractReport,
    caller: _Caller,
    method: MethodDescriptor,
    samples: ContractSamples,
    is_read: bool,
) -> None:
    name = method.name
    valid = list(samples.valid.get(name, ()))
    if not valid:
        report.add("coverage", name, False, "no sample request: add one to the samples")
    for request in valid:
        count, error = caller.call(request)
        code = _outcome(report, "sample", name, error)
        if is_read:
            ok = error is None
            detail = f"answered {count} message(s)" if ok else f"read failed: {code}"
        else:
            ok = code not in (None, "INTERNAL")
            detail = f"answered {code}"
        report.add("answers", name, ok, detail)

    if valid:
        _check_identifiers(report, caller, name, valid[0])
        if is_read:
            _check_unknown_subject(report, caller, name, valid[0], samples)
    for request in samples.unknown.get(name, ()):
        _expect_not_found(report, caller, name, request, samples, "unknown record")
    for request in samples.invalid.get(name, ()):
        _count, error = caller.call(request)
        code = _outcome(report, "invalid identifier", name, error)
        report.add(
            "bad identifier",
            name,
            code == "INVALID_IDENTIFIER",
            f"malformed identifier sample answered {code}",
        )

    empty = _empty_request(method.input_type, valid)
    _count, error = caller.call(empty)
    code = _outcome(report, "empty request", name, error)
    report.add(
        "empty request",
        name,
        code not in (None, "INTERNAL"),
        f"answered {code}",
    )


def _empty_request(input_type: Descriptor, valid: Sequence[Message]) -> Message:
    if valid:
        return type(valid[0])()
    return message_factory.GetMessageClass(input_type)()


def _check_identifiers(report: ContractReport, caller: _Caller, name: str, sample: Message) -> None:
    fields = identifier_fields(sample)
    for path, kind, value in fields:
        where = ".".join(p if i is None else f"{p}[{i}]" for p, i in path)
        for label, bad in _bad_variants(value):
            _count, error = caller.call(_with_value(sample, path, bad))
            code = _outcome(report, f"bad {kind} {where}", name, error)
            report.add(
                "bad identifier",
                name,
                code == "INVALID_IDENTIFIER",
                f"{where} ({label}) answered {code}",
            )


def _check_unknown_subject(
    report: ContractReport,
    caller: _Caller,
    name: str,
    sample: Message,
    samples: ContractSamples,
) -> None:
    iins = [(path, value) for path, kind, value in identifier_fields(sample) if kind == "iin"]
    if not iins:
        return
    request = sample
    for path, _value in iins:
        request = _with_value(request, path, UNKNOWN_IIN)
    _expect_not_found(report, caller, name, request, samples, "unknown person")


def _expect_not_found(
    report: ContractReport,
    caller: _Caller,
    name: str,
    request: Message,
    samples: ContractSamples,
    label: str,
) -> None:
    count, error = caller.call(request)
    code = _outcome(report, label, name, error)
    if name in samples.unknown_answered:
        ok = code in ("OK", "NOT_FOUND")
    elif caller.method.server_streaming:
        ok = code == "NOT_FOUND" or (code == "OK" and count == 0)
    else:
        ok = code == "NOT_FOUND"
    report.add("unknown", name, ok, f"{label} answered {code} ({count} message(s))")
