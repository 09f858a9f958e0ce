"""`govbus adapter new <name>`: write a new adapter that works before you change a line.

For a new agency code it writes, under the checkout root:

- `proto/agencies/<name>/v1/<name>.proto` — a small contract: records by id, a
  person's records (server stream), and a write;
- `adapters/<name>/` — `__init__.py` (ADAPTER), `store.py` (SQLite schema),
  `data.py` (fill from the world + contract samples), `servicer.py`, `publish.json`;
- `tests/test_adapter_<name>.py` — its own tests over real gRPC and the contract kit.

After `make proto`, the generated test passes. For one of the twenty contracts that
already has a proto (e.g. `fines`), it writes the adapter around that contract
instead: every method present and raising NotImplementedError (the kit reports
UNKNOWN_METHOD until it is written), publish.json filled from `AGENCIES`.

This module must never overwrite an existing file.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from pathlib import Path
from string import Template

from adapters.sdk.agency import AGENCIES, RESERVED
from govbus.errors import AlreadyExists, ConfigInvalid, InvalidRequest
from govbus.ids import Bin

__all__ = ["scaffold"]

_NAME = re.compile(r"[a-z][a-z0-9]{1,30}")
_SERVICE = re.compile(r"[A-Z][A-Za-z0-9]{0,62}")


def _member_for(name: str) -> str:
    """The member id of a known agency, or a stable made-up valid BIN for a new one."""
    known = AGENCIES.get(name)
    if known is not None:
        return known.member
    serial = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 40_000
    # Registered December 2015: away from the twenty agencies' BINs (2001–2002).
    built = Bin.build(2015, 12, 2 * serial) or Bin.build(2015, 12, 2 * serial + 1)
    assert built is not None
    return f"KZ/GOV/{built.value}"


def scaffold(name: str, *, root: Path = Path(), service: str = "", title: str = "") -> list[Path]:
    """Write the adapter's files; returns the paths written (relative to `root`)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise InvalidRequest(
            f"{name!r} is not a usable agency code: 2-31 lower-case ASCII letters and digits, "
            "starting with a letter"
        )
    if name in RESERVED:
        raise InvalidRequest(f"{name!r} is reserved")
    if not (root / "proto").is_dir() or not (root / "adapters").is_dir():
        raise ConfigInvalid(f"{root.resolve()} is not a govbus checkout (no proto/ or adapters/)")
    folder = root / "adapters" / name
    if folder.exists():
        raise AlreadyExists(f"{folder} already exists")
    proto_path = root / "proto" / "agencies" / name / "v1" / f"{name}.proto"
    known = AGENCIES.get(name)
    service = service or (
        known.grpc_service.rsplit(".", 1)[-1] if known else name.capitalize() + "Registry"
    )
    if not _SERVICE.fullmatch(service):
        raise InvalidRequest(f"service name {service!r} must look like PersonRegistry")
    values = {
        "name": name,
        "service": service,
        "title": title or (known.title if known else f"Registry {name}"),
        "member": _member_for(name),
        "Name": name.capitalize(),
        "idempotent": '"GetRecord", "ListRecords"',
    }
    files: dict[Path, str] = {}
    if proto_path.exists():
        files.update(_contract_files(root, name, values))
    else:
        files[proto_path] = _PROTO
        files[folder / "store.py"] = _STORE
        files[folder / "data.py"] = _DATA
        files[folder / "servicer.py"] = _SERVICER
        files[root / "tests" / f"test_adapter_{name}.py"] = _TEST
    files[folder / "__init__.py"] = _INIT
    files[folder / "publish.json"] = _PUBLISH
    for path in files:
        if path.exists():
            raise AlreadyExists(f"{path} already exists")
    written = []
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
        written.append(path)
    return written


def _contract_files(root: Path, name: str, values: dict[str, str]) -> dict[Path, str]:
    """Skeleton around an existing contract: methods from the generated module."""
    import importlib

    try:
        pb2 = importlib.import_module(f"govbus.pb.agencies.{name}.v1.{name}_pb2")
    except ModuleNotFoundError:
        raise ConfigInvalid(
            f"the contract of {name} is not generated yet: run `make proto`"
        ) from None
    services = list(pb2.DESCRIPTOR.services_by_name.values())
    if len(services) != 1:
        raise ConfigInvalid(f"{name}.proto must define exactly one service")
    values["service"] = services[0].name
    values["idempotent"] = ""  # say which methods are reads once they exist
    methods = []
    for method in services[0].methods:
        request, response = method.input_type.name, method.output_type.name
        returns = f"AsyncIterator[pb.{response}]" if method.server_streaming else f"pb.{response}"
        one_line = (
            f"    async def {method.name}(self, request: pb.{request}, context: Any) -> {returns}:"
        )
        head = (
            one_line
            if len(one_line) <= 100
            else f"    async def {method.name}(\n"
            f"        self, request: pb.{request}, context: Any\n"
            f"    ) -> {returns}:"
        )
        body = "        raise NotImplementedError  # TODO: adapters.sdk.fields, self.store\n"
        if method.server_streaming:
            body += f"        yield pb.{response}()  # makes this an async generator\n"
        methods.append(f"{head}\n{body}")
    values["methods"] = "\n".join(methods).replace("$", "$$")
    folder = root / "adapters" / name
    return {
        folder / "store.py": _SKELETON_STORE,
        folder / "data.py": _SKELETON_DATA,
        folder / "servicer.py": _SKELETON_SERVICER,
        root / "tests" / f"test_adapter_{name}.py": _TEST,
    }


# --- templates (string.Template: $name, $service, $title, $member, $Name) ---------------

_PROTO = """\
// $title
// Conventions: see proto/agencies/gbdfl/v1/gbdfl.proto (IIN validated first, dates
// "YYYY-MM-DD", NOT_FOUND for a missing record, errors from the govbus vocabulary).
syntax = "proto3";

package kz.gov.$name.v1;

enum RecordStatus {
  RECORD_STATUS_UNSPECIFIED = 0;
  RECORD_STATUS_ACTIVE = 1;
  RECORD_STATUS_CLOSED = 2;
}

message Record {
  string record_id = 1;  // "R" and 10 digits
  string iin = 2;
  string kind = 3;
  string note = 4;
  string registered_date = 5;
  RecordStatus status = 6;
}

message GetRecordRequest {
  string record_id = 1;
}

message ListRecordsRequest {
  string iin = 1;
}

message RegisterRecordRequest {
  string iin = 1;
  string kind = 2;
  string note = 3;
}

service $service {
  rpc GetRecord(GetRecordRequest) returns (Record);
  // A person's records: can be long, hence a stream.
  rpc ListRecords(ListRecordsRequest) returns (stream Record);
  rpc RegisterRecord(RegisterRecordRequest) returns (Record);
}
"""

_INIT = '''\
"""A govbus adapter: $title."""

from pathlib import Path

from adapters.$name.data import contract_samples, populate
from adapters.$name.servicer import ${service}Servicer
from adapters.$name.store import RecordStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.$name.v1 import ${name}_pb2, ${name}_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="$name",
    pb2=${name}_pb2,
    add_servicer=${name}_pb2_grpc.add_${service}Servicer_to_server,
    open_store=RecordStore.open,
    make_servicer=${service}Servicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
'''

_PUBLISH = """\
{
  "code": "$name",
  "title": "$title",
  "member": "$member",
  "subsystem": "$name",
  "service_code": "$name",
  "version": "v1",
  "grpc_service": "kz.gov.$name.v1.$service",
  "personal_data": true,
  "consent_policy": "CONSENT_REQUIRED",
  "default_deadline_ms": 2000,
  "idempotent": [$idempotent],
  "access": ["group:service-centre", "group:portal"]
}
"""

_STORE = '''\
"""The $name store: one SQLite file of records. Owns its schema; knows nothing of gRPC."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = ["INDEXES", "INSERT", "SCHEMA_VERSION", "TABLES", "RecordStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE record (
    record_id TEXT PRIMARY KEY,
    iin TEXT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL,
    registered_date TEXT NOT NULL,
    status INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX record_person ON record (iin, registered_date);
"""

INSERT = "INSERT INTO record VALUES (?, ?, ?, ?, ?, ?)"
#: Records written through the adapter are numbered from here (the world's are lower).
NEW_RECORDS_FROM = 9_000_000_000


class RecordStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> RecordStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def get(self, record_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM record WHERE record_id = ?", (record_id,)
        ).fetchone()
        return row

    def by_person(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM record WHERE iin = ? ORDER BY registered_date, record_id", (iin,)
        ).fetchall()

    def add(self, values: tuple[Any, ...]) -> str:
        """Insert a record (values without its id); returns the new id."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            record_id = f"R{take_number(self.conn, 'R', first=NEW_RECORDS_FROM):010d}"
            self.conn.execute(INSERT, (record_id, *values))
        return record_id
'''

_DATA = '''\
"""Fill the $name store from the synthetic world, and the contract samples.

Each living adult has a record with probability 0.3, drawn from the world's seed, so
every run and every process computes the same records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.$name.store import INDEXES, INSERT, SCHEMA_VERSION, TABLES
from adapters.population import Person, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.pb.agencies.$name.v1 import ${name}_pb2 as pb

__all__ = ["contract_samples", "has_record", "populate", "record_id"]

KINDS = ("заявление", "справка", "разрешение")


def has_record(world: World, person: Person) -> bool:
    return (
        person.alive
        and person.age(world.today) >= 18
        and world.draw("$name", person.index).chance(300)
    )


def record_id(person: Person) -> str:
    return f"R{person.index:010d}"


def _rows(world: World) -> Iterator[tuple[Any, ...]]:
    for person in world.persons():
        if has_record(world, person):
            yield (
                record_id(person),
                person.iin,
                KINDS[person.index % len(KINDS)],
                "",
                person.registered_since.isoformat(),
                pb.RECORD_STATUS_ACTIVE,
            )


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(INSERT, _rows(world))


def contract_samples(world: World) -> ContractSamples:
    holder = next(p for p in world.persons() if has_record(world, p))
    return ContractSamples(
        valid={
            "GetRecord": [pb.GetRecordRequest(record_id=record_id(holder))],
            "ListRecords": [pb.ListRecordsRequest(iin=holder.iin)],
            "RegisterRecord": [pb.RegisterRecordRequest(iin=holder.iin, kind="справка")],
        },
        unknown={"GetRecord": [pb.GetRecordRequest(record_id="R8999999999")]},
        invalid={"GetRecord": [pb.GetRecordRequest(record_id="no such id")]},
    )
'''

_SERVICER = '''\
"""The gRPC service `kz.gov.$name.v1.$service`.

$title. Identifiers are checked first (INVALID_IDENTIFIER), then the other fields
(INVALID_REQUEST), then the registry's rules (NOT_FOUND, FAILED_PRECONDITION).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.$name.store import RecordStore
from adapters.sdk.fields import iin_field, text_field
from govbus.errors import FailedPrecondition, InvalidIdentifier, NotFound
from govbus.pb.agencies.$name.v1 import ${name}_pb2 as pb
from govbus.pb.agencies.$name.v1 import ${name}_pb2_grpc as pb_grpc

__all__ = ["${service}Servicer"]

_RECORD_ID = re.compile(r"R[0-9]{10}")


def _record(row: sqlite3.Row) -> pb.Record:
    return pb.Record(
        record_id=row["record_id"],
        iin=row["iin"],
        kind=row["kind"],
        note=row["note"],
        registered_date=row["registered_date"],
        status=row["status"],
    )


class ${service}Servicer(pb_grpc.${service}Servicer):
    def __init__(self, store: RecordStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def GetRecord(self, request: pb.GetRecordRequest, context: Any) -> pb.Record:
        if not _RECORD_ID.fullmatch(request.record_id):
            raise InvalidIdentifier("record_id must be R followed by 10 digits")
        row = self.store.get(request.record_id)
        if row is None:
            raise NotFound(f"no record {request.record_id}")
        return _record(row)

    async def ListRecords(
        self, request: pb.ListRecordsRequest, context: Any
    ) -> AsyncIterator[pb.Record]:
        iin = iin_field(request.iin)
        for row in self.store.by_person(iin.value):
            yield _record(row)

    async def RegisterRecord(self, request: pb.RegisterRecordRequest, context: Any) -> pb.Record:
        iin = iin_field(request.iin)
        kind = text_field(request.kind, "kind", max_length=50)
        note = text_field(request.note, "note", required=False, max_length=500)
        today = self.today()
        if iin.birth_date > today:
            raise FailedPrecondition("the IIN gives a birth date in the future")
        record_id = self.store.add(
            (iin.value, kind, note, today.isoformat(), pb.RECORD_STATUS_ACTIVE)
        )
        row = self.store.get(record_id)
        assert row is not None
        return _record(row)
'''

_TEST = '''\
"""The $name adapter over real gRPC: its own behaviour and the contract kit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapters.population import World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import from_rpc_error
from govbus.pb.agencies.$name.v1 import ${name}_pb2 as pb
from govbus.pb.agencies.$name.v1 import ${name}_pb2_grpc as pb_grpc

WORLD = World(seed=11, persons=400)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("$name") / "$name.db"
    agency = load("$name")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.${service}Stub:
    return pb_grpc.${service}Stub(running.channel())


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("$name"), WORLD).raise_for_failures()


def test_every_method_has_a_contract_sample() -> None:
    samples = load("$name").samples(WORLD)
    service = pb.DESCRIPTOR.services_by_name["$service"]
    assert {m.name for m in service.methods} <= set(samples.valid)


def test_a_bad_iin_is_refused(stub: pb_grpc.${service}Stub) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        list(stub.ListRecords(pb.ListRecordsRequest(iin="123456789012")))
    assert from_rpc_error(failure.value).code == "INVALID_IDENTIFIER"
'''

_SKELETON_STORE = '''\
"""The $name store. Owns its schema; knows nothing of gRPC. TODO: the tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.sdk.database import open_database

__all__ = ["INDEXES", "SCHEMA_VERSION", "TABLES", "RecordStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE record (
    id TEXT PRIMARY KEY,
    iin TEXT NOT NULL
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX record_person ON record (iin);
"""


class RecordStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> RecordStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()
'''

_SKELETON_DATA = '''\
"""Fill the $name store from the synthetic world, and the contract samples. TODO."""

from __future__ import annotations

from pathlib import Path

from adapters.$name.store import INDEXES, SCHEMA_VERSION, TABLES
from adapters.population import World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load

__all__ = ["contract_samples", "populate"]


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION):
        pass  # TODO: conn.executemany(INSERT, rows derived from world.persons())


def contract_samples(world: World) -> ContractSamples:
    return ContractSamples(valid={})  # TODO: one request per method
'''

_SKELETON_SERVICER = '''\
"""The gRPC service `kz.gov.$name.v1.$service`.

$title. TODO: every method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from adapters.$name.store import RecordStore
from govbus.pb.agencies.$name.v1 import ${name}_pb2 as pb
from govbus.pb.agencies.$name.v1 import ${name}_pb2_grpc as pb_grpc

__all__ = ["${service}Servicer"]


class ${service}Servicer(pb_grpc.${service}Servicer):
    def __init__(self, store: RecordStore) -> None:
        self.store = store

$methods'''
