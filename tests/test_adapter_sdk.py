"""The adapter SDK over real gRPC: error mapping, request context, logs, metrics, traces."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.sdk import (
    AgencyAdapter,
    Publication,
    RequestContext,
    RunningAdapter,
    Telemetry,
    descriptor_set_bytes,
    load,
    mask_identifiers,
    vocabulary_code,
)
from adapters.sdk.agency import AGENCIES, adapter_codes
from adapters.sdk.descriptors import descriptor_set
from adapters.sdk.fields import date_field, enum_field, iin_field, limit_field, text_field
from adapters.sdk.telemetry import JsonFormatter
from govbus.errors import (
    ConfigInvalid,
    ConsentScope,
    FailedPrecondition,
    GovbusError,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
    from_rpc_error,
)
from govbus.ids import Iin
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2_grpc as pb_grpc

SUBJECT = "900101300017"
OTHER = "850615400016"
SECRET = "password=hunter2"


class Probe(pb_grpc.PersonRegistryServicer):
    """Each request's `iin` (or last name) says how the servicer behaves."""

    async def GetPerson(self, request: pb.GetPersonRequest, context: Any) -> pb.Person:
        if request.iin == "notfound":
            raise NotFound(f"no person with IIN {SUBJECT}")
        if request.iin == "boom":
            raise RuntimeError(f"database {SECRET} failed for {SUBJECT}")
        if request.iin == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "aborted by hand")
        ctx = RequestContext.current()
        return pb.Person(
            iin=request.iin,
            last_name=ctx.purpose,
            first_name=ctx.request_id,
            patronymic=ctx.subject.masked() if ctx.subject else "",
            nationality=ctx.client,
            citizenship=ctx.initiator,
        )

    async def SearchPersons(self, request: pb.SearchPersonsRequest, context: Any) -> Any:
        yield pb.Person(iin="1")
        yield pb.Person(iin="2")
        if request.last_name == "boom":
            raise FailedPrecondition("stopped in the middle of the stream")


def _iin_for_tests() -> None:
    # The constants above must be valid IINs, or the tests prove nothing.
    Iin(SUBJECT)
    Iin(OTHER)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.adapter.sdk")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def running(logs: io.StringIO, spans: InMemorySpanExporter) -> Iterator[RunningAdapter]:
    telemetry = Telemetry(
        name="probe", exporter=spans, logger=logging.getLogger("test.adapter.sdk")
    )
    with RunningAdapter(
        [(pb_grpc.add_PersonRegistryServicer_to_server, Probe())], telemetry=telemetry
    ) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.PersonRegistryStub:
    return pb_grpc.PersonRegistryStub(running.channel())


def _fail(call: Any) -> tuple[grpc.RpcError, GovbusError]:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Person):
            list(result)
    return failure.value, from_rpc_error(failure.value)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_constants_are_valid_iins() -> None:
    _iin_for_tests()


def test_govbus_error_keeps_its_code_status_and_origin(
    stub: pb_grpc.PersonRegistryStub,
) -> None:
    raw, error = _fail(lambda: stub.GetPerson(pb.GetPersonRequest(iin="notfound")))
    assert raw.code() is grpc.StatusCode.NOT_FOUND
    assert vocabulary_code(raw) == "NOT_FOUND"
    assert error.code == "NOT_FOUND" and error.origin.value == "PROVIDER"


def test_unexpected_exception_is_internal_with_an_error_id_and_leaks_nothing(
    stub: pb_grpc.PersonRegistryStub, logs: io.StringIO
) -> None:
    raw, error = _fail(lambda: stub.GetPerson(pb.GetPersonRequest(iin="boom")))
    assert raw.code() is grpc.StatusCode.INTERNAL
    assert error.code == "INTERNAL"
    assert SECRET not in (raw.details() or "") and "RuntimeError" not in (raw.details() or "")
    error_id = error.metadata["error_id"]
    assert error_id in error.message
    logged = [line for line in _lines(logs) if line.get("error_id") == error_id]
    assert logged and "RuntimeError" in logged[0]["traceback"]
    # The operator sees the traceback, but never a raw IIN.
    assert SUBJECT not in logs.getvalue()


def test_unimplemented_method_is_unknown_method(stub: pb_grpc.PersonRegistryStub) -> None:
    raw, error = _fail(lambda: stub.AssignIin(pb.AssignIinRequest()))
    assert raw.code() is grpc.StatusCode.UNIMPLEMENTED
    assert error.code == "UNKNOWN_METHOD"


def test_error_in_the_middle_of_a_stream_is_a_vocabulary_error(
    stub: pb_grpc.PersonRegistryStub,
) -> None:
    received: list[pb.Person] = []
    with pytest.raises(grpc.RpcError) as failure:
        for person in stub.SearchPersons(pb.SearchPersonsRequest(last_name="boom")):
            received.append(person)
    assert [p.iin for p in received] == ["1", "2"]
    assert vocabulary_code(failure.value) == "FAILED_PRECONDITION"


def test_request_context_reaches_the_servicer(stub: pb_grpc.PersonRegistryStub) -> None:
    person = stub.GetPerson(
        pb.GetPersonRequest(iin=SUBJECT),
        metadata=(
            ("govbus-subject", SUBJECT),
            ("govbus-purpose", "certificate-issue"),
            ("govbus-request-id", "req-42"),
            ("govbus-client", "KZ/GOV/010140100000/con"),
            ("govbus-initiator", "operator-7"),
        ),
    )
    assert person.last_name == "certificate-issue"
    assert person.first_name == "req-42"
    assert person.patronymic == Iin(SUBJECT).masked()
    assert person.nationality == "KZ/GOV/010140100000/con"
    assert person.citizenship == "operator-7"


def test_malformed_subject_is_invalid_identifier(stub: pb_grpc.PersonRegistryStub) -> None:
    _raw, error = _fail(
        lambda: stub.GetPerson(
            pb.GetPersonRequest(iin=SUBJECT), metadata=(("govbus-subject", "900101300018"),)
        )
    )
    assert error.code == "INVALID_IDENTIFIER" and "govbus-subject" in error.message


def test_malformed_client_is_invalid_identifier(stub: pb_grpc.PersonRegistryStub) -> None:
    _raw, error = _fail(
        lambda: stub.GetPerson(
            pb.GetPersonRequest(iin=SUBJECT), metadata=(("govbus-client", "not/a/member"),)
        )
    )
    assert error.code == "INVALID_IDENTIFIER"


def test_request_about_another_person_than_the_subject_is_refused(
    stub: pb_grpc.PersonRegistryStub,
) -> None:
    _raw, error = _fail(
        lambda: stub.GetPerson(
            pb.GetPersonRequest(iin=OTHER), metadata=(("govbus-subject", SUBJECT),)
        )
    )
    assert error.code == "CONSENT_SCOPE"
    assert OTHER not in error.message


def test_servicer_abort_passes_through(stub: pb_grpc.PersonRegistryStub) -> None:
    raw, _error = _fail(lambda: stub.GetPerson(pb.GetPersonRequest(iin="abort")))
    assert raw.code() is grpc.StatusCode.PERMISSION_DENIED


def test_one_json_log_line_per_call_without_raw_iin(
    stub: pb_grpc.PersonRegistryStub, logs: io.StringIO
) -> None:
    stub.GetPerson(
        pb.GetPersonRequest(iin=SUBJECT),
        metadata=(("govbus-subject", SUBJECT), ("govbus-request-id", "req-1")),
    )
    _fail(lambda: stub.GetPerson(pb.GetPersonRequest(iin="notfound")))
    calls = [line for line in _lines(logs) if line.get("event") == "call"]
    assert [c["code"] for c in calls] == ["OK", "NOT_FOUND"]
    first = calls[0]
    assert first["method"] == "/kz.gov.gbdfl.v1.PersonRegistry/GetPerson"
    assert first["request_id"] == "req-1"
    assert first["subject"] == Iin(SUBJECT).masked()
    assert isinstance(first["duration_ms"], float)
    assert calls[1]["origin"] == "PROVIDER"
    assert SUBJECT not in logs.getvalue()


def test_metrics_count_calls_by_method_and_code(running: RunningAdapter) -> None:
    stub = pb_grpc.PersonRegistryStub(running.channel())
    stub.GetPerson(pb.GetPersonRequest(iin=SUBJECT))
    stub.GetPerson(pb.GetPersonRequest(iin=SUBJECT))
    _fail(lambda: stub.GetPerson(pb.GetPersonRequest(iin="notfound")))
    port = running.server.telemetry.start_metrics_server(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        running.server.telemetry.stop_metrics_server()
    method = "/kz.gov.gbdfl.v1.PersonRegistry/GetPerson"
    assert f'govbus_adapter_calls_total{{code="OK",method="{method}"}} 2.0' in text
    assert f'govbus_adapter_calls_total{{code="NOT_FOUND",method="{method}"}} 1.0' in text
    assert f'govbus_adapter_call_seconds_count{{method="{method}"}} 3.0' in text


def test_span_continues_the_callers_trace(
    stub: pb_grpc.PersonRegistryStub, spans: InMemorySpanExporter
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    stub.GetPerson(
        pb.GetPersonRequest(iin=SUBJECT),
        metadata=(("traceparent", f"00-{trace_id}-{parent_id}-01"),),
    )
    _fail(lambda: stub.GetPerson(pb.GetPersonRequest(iin="notfound")))
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    first, second = finished
    assert first.name == "kz.gov.gbdfl.v1.PersonRegistry/GetPerson"
    assert f"{first.context.trace_id:032x}" == trace_id
    assert first.parent is not None and f"{first.parent.span_id:016x}" == parent_id
    assert first.attributes is not None and first.attributes["govbus.code"] == "OK"
    assert second.status.status_code.name == "ERROR"


def test_health_and_reflection_are_served(running: RunningAdapter) -> None:
    health = health_pb2_grpc.HealthStub(running.channel())
    answer = health.Check(health_pb2.HealthCheckRequest(service="kz.gov.gbdfl.v1.PersonRegistry"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert running.server.service_names == ["kz.gov.gbdfl.v1.PersonRegistry"]


# --- pure parts ------------------------------------------------------------------------


def test_request_context_parses_metadata() -> None:
    ctx = RequestContext.from_metadata(
        [
            ("govbus-subject", SUBJECT),
            ("govbus-service", "KZ/GOV/010140100000/gbdfl/person-registry/v1"),
            ("govbus-consent", "consent-1"),
            ("user-agent", "grpc-python"),
        ]
    )
    assert ctx.subject == Iin(SUBJECT)
    assert ctx.consent == "consent-1"
    assert ctx.log_fields()["subject"] == Iin(SUBJECT).masked()
    assert RequestContext.from_metadata(None) == RequestContext()
    with pytest.raises(InvalidIdentifier):
        RequestContext.from_metadata([("govbus-service", "KZ/GOV/x")])
    with pytest.raises(InvalidRequest):
        RequestContext.from_metadata([("govbus-purpose", "x" * 501)])
    with pytest.raises(ConsentScope):
        ctx.check_subject(OTHER)
    ctx.check_subject(Iin(SUBJECT))
    RequestContext().check_subject(OTHER)  # no subject: nothing to compare


def test_mask_identifiers_hides_every_twelve_digit_run() -> None:
    text = mask_identifiers(f"a {SUBJECT}, b {OTHER}; 1234567890123 stays")
    assert SUBJECT not in text and OTHER not in text
    assert Iin(SUBJECT).masked() in text
    assert "1234567890123" in text  # 13 digits is not an IIN


def test_fields_refuse_bad_input_with_vocabulary_errors() -> None:
    assert iin_field(SUBJECT) == Iin(SUBJECT)
    with pytest.raises(InvalidIdentifier, match="mother_iin"):
        iin_field("900101300018", "mother_iin")
    with pytest.raises(InvalidIdentifier):
        iin_field("")
    with pytest.raises(InvalidRequest):
        date_field("2024-02-30", "birth_date")
    with pytest.raises(InvalidRequest):
        text_field("  ", "last_name")
    with pytest.raises(InvalidRequest):
        text_field("a\x00b", "last_name")
    with pytest.raises(InvalidRequest):
        enum_field(0, "sex", (1, 2))
    assert limit_field(0) == 50
    with pytest.raises(InvalidRequest):
        limit_field(10_000)


def test_descriptor_set_holds_the_file_and_its_imports() -> None:
    from govbus.pb.govbus.v1 import globalconf_pb2

    files = [f.name for f in descriptor_set(globalconf_pb2).file]
    assert files[-1] == "govbus/v1/globalconf.proto"
    assert "google/protobuf/timestamp.proto" in files
    assert files.index("google/protobuf/timestamp.proto") < files.index(files[-1])
    assert descriptor_set_bytes(pb) == descriptor_set_bytes(pb)  # deterministic


def test_publication_is_validated() -> None:
    good = load("gbdfl").publication
    assert str(good.service_id) == "KZ/GOV/010140100000/gbdfl/person-registry/v1"
    data = {k: getattr(good, k) for k in ("code", "title", "member", "subsystem")}
    data |= {
        "service_code": "person-registry",
        "version": "v1",
        "grpc_service": good.grpc_service,
        "personal_data": True,
        "consent_policy": "CONSENT_NOT_REQUIRED",
        "default_deadline_ms": 2000,
    }
    with pytest.raises(ConfigInvalid, match="personal data"):
        Publication.from_json(data)
    with pytest.raises(InvalidIdentifier):
        Publication.from_json({**data, "consent_policy": "CONSENT_REQUIRED", "member": "KZ/X/1"})
    with pytest.raises(ConfigInvalid):
        Publication.from_json({"code": "x"})
    methods = good.methods(pb)
    assert [m.name.rsplit("/", 1)[1] for m in methods if m.idempotent] == [
        "GetPerson",
        "SearchPersons",
        "ListRelatives",
    ]
    assert "iin" in methods[0].fields


def test_every_implemented_adapter_publishes_a_valid_service(tmp_path: Path) -> None:
    for code in adapter_codes():
        adapter = load(code)
        assert isinstance(adapter, AgencyAdapter)
        publication = adapter.publication
        assert publication.code == code
        if code in AGENCIES:
            assert publication.member == AGENCIES[code].member
            assert publication.grpc_service == AGENCIES[code].grpc_service
        publication.methods(adapter.pb2)  # idempotent names exist
        argv = publication.publish_argv(tmp_path / f"{code}.binpb", "KZ/GOV/010140100000/ss1")
        assert argv[:3] == ["govbus", "service", "publish"]
        assert "--descriptor-set" in argv and "--consent-policy" in argv


def test_agency_codes_and_members_are_valid() -> None:
    from govbus.ids import MemberId

    assert len(AGENCIES) == 20
    assert len({a.member for a in AGENCIES.values()}) == 20
    for info in AGENCIES.values():
        MemberId.parse(info.member)
        module = __import__(f"govbus.pb.agencies.{info.code}.v1.{info.code}_pb2", fromlist=["x"])
        assert info.grpc_service in {
            s.full_name for s in module.DESCRIPTOR.services_by_name.values()
        }


def test_unknown_agency_is_a_clear_error() -> None:
    from govbus.errors import UnknownService

    with pytest.raises(UnknownService):
        load("nosuchagency")
    with pytest.raises(InvalidRequest):
        load("../etc")


def test_take_number_hands_out_each_number_once(tmp_path: Path) -> None:
    from adapters.sdk.database import bulk_load, open_database, take_number

    db = tmp_path / "seq.db"
    tables = "CREATE TABLE sequence (kind TEXT PRIMARY KEY, next INTEGER NOT NULL);"
    with bulk_load(db, tables=tables, schema_version=1):
        pass
    first, second = open_database(db, 1), open_database(db, 1)

    def take(conn: Any, key: str, **kw: Any) -> int:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            return take_number(conn, key, **kw)

    # Two connections (two writers) share the series; another key has its own.
    taken = [take(first if i % 2 else second, "A", first=100) for i in range(6)]
    assert taken == [100, 101, 102, 103, 104, 105]
    assert take(first, "B", first=7) == 7
    # A series at its limit is refused and stays where it was.
    with pytest.raises(FailedPrecondition, match="every ticket of the series"):
        take(first, "A", first=100, limit=106, what="ticket")
    assert take(first, "A", first=100) == 106
    with pytest.raises(ValueError):
        take_number(first, "A", first=0, column="kind; DROP TABLE sequence")
    first.close()
    second.close()
