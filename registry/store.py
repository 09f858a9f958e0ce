"""Persistent state of the registry behind one interface.

The registry's records are the global-configuration messages themselves
(`Member`, `Subsystem`, `SecurityServer`, `Service`, `LegalBasis`,
`RevokedCertificate`), stored as serialized protobuf next to the key columns
the registry looks them up by. Every change runs in one `write` unit of work
that bumps the registry *revision* and appends the audit-trail entries in the
same transaction, so the trail can never miss a change nor show one that did
not happen. `read` gives a consistent snapshot (`content()`) the global
configuration is built from.

`SqlRegistryStore` holds the SQL both backends share; `SqliteRegistryStore`
(WAL, the embedded default) and `PostgresRegistryStore` (for scale) only open
connections, create the schema and run transactions. One connection per store,
used under a lock: the registry writes rarely and serves reads from the
published snapshot, not from the database.

The store never decides who may change what: callers (registry.operations)
check rights and validate input first. It never logs record contents.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from govbus.errors import (
    ConfigInvalid,
    FailedPrecondition,
    GovbusError,
    Internal,
    Origin,
    ServiceUnavailable,
)
from govbus.pb.govbus.v1 import globalconf_pb2

__all__ = [
    "AuditEntry",
    "RegistryContent",
    "RegistryReader",
    "RegistryStore",
    "RegistryWriter",
    "SqlRegistryStore",
    "open_store",
]

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change in the registry's own audit trail."""

    seq: int
    at: float  # unix seconds
    actor: str
    action: str
    target: str
    member: str
    before: str
    after: str
    revision: int


@dataclass(frozen=True)
class RegistryContent:
    """Everything the global configuration is built from, at one revision, sorted by id."""

    revision: int
    members: tuple[globalconf_pb2.Member, ...]
    subsystems: tuple[globalconf_pb2.Subsystem, ...]
    servers: tuple[globalconf_pb2.SecurityServer, ...]
    services: tuple[globalconf_pb2.Service, ...]
    access_rights: tuple[globalconf_pb2.AccessRight, ...]
    groups: tuple[globalconf_pb2.Group, ...]
    legal_bases: tuple[globalconf_pb2.LegalBasis, ...]
    revoked: tuple[globalconf_pb2.RevokedCertificate, ...]
    consent_service_address: str
    consent_service_certificate: bytes
    descriptors: dict[str, bytes] = field(repr=False)


class RegistryReader(Protocol):
    def member(self, member_id: str) -> globalconf_pb2.Member | None: ...
    def subsystem(self, subsystem_id: str) -> globalconf_pb2.Subsystem | None: ...
    def server(self, server_id: str) -> globalconf_pb2.SecurityServer | None: ...
    def server_signing_certificate(self, server_id: str) -> bytes: ...
    def service(self, service_id: str) -> globalconf_pb2.Service | None: ...
    def has_access(self, service_id: str, client: str) -> bool: ...
    def group(self, group_id: str) -> globalconf_pb2.Group | None: ...
    def legal_basis(self, basis_id: str) -> globalconf_pb2.LegalBasis | None: ...
    def revocation(self, serial: bytes) -> globalconf_pb2.RevokedCertificate | None: ...
    def setting(self, key: str) -> bytes | None: ...
    def revoked_serials(self) -> frozenset[int]: ...
    def content(self) -> RegistryContent: ...


class RegistryWriter(RegistryReader, Protocol):
    def put_member(self, member: globalconf_pb2.Member) -> None: ...
    def put_subsystem(self, subsystem: globalconf_pb2.Subsystem, member: str) -> None: ...
    def put_server(self, server: globalconf_pb2.SecurityServer, signing_cert: bytes) -> None: ...
    def put_service(
        self, service: globalconf_pb2.Service, subsystem: str, member: str, descriptor_set: bytes
    ) -> None: ...
    def add_access(self, service_id: str, client: str) -> None: ...
    def remove_access(self, service_id: str, client: str) -> None: ...
    def add_group(self, group_id: str) -> None: ...
    def add_group_member(self, group_id: str, subsystem_id: str) -> None: ...
    def remove_group_member(self, group_id: str, subsystem_id: str) -> None: ...
    def put_legal_basis(self, basis: globalconf_pb2.LegalBasis) -> None: ...
    def remove_legal_basis(self, basis_id: str) -> None: ...
    def add_revocation(self, revoked: globalconf_pb2.RevokedCertificate) -> None: ...
    def set_setting(self, key: str, value: bytes) -> None: ...
    def note(self, action: str, target: str, member: str, before: str, after: str) -> None:
        """Record the change in the audit trail (same transaction)."""
        ...

    @property
    def revision(self) -> int:
        """The revision this unit of work produces."""
        ...


class RegistryStore(Protocol):
    def read(self) -> AbstractContextManager[RegistryReader]:
        """A consistent snapshot for reading."""
        ...

    def write(self, actor: str) -> AbstractContextManager[RegistryWriter]:
        """One change by `actor`, committed with its audit-trail entries."""
        ...

    def revision(self) -> int: ...
    def next_conf_version(self) -> int: ...
    def audit_trail(
        self, limit: int = 100, before_seq: int = 0, member: str | None = None
    ) -> list[AuditEntry]: ...
    def close(self) -> None: ...


def _parse(cls: type[M], data: bytes | memoryview) -> M:
    message = cls()
    message.ParseFromString(bytes(data))
    return message


def _bytes(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


class _Unit:
    """A reader/writer over one open transaction (`?` placeholders; backends adapt)."""

    def __init__(self, store: SqlRegistryStore, cursor: Any, actor: str | None) -> None:
        self._store = store
        self._cur = cursor
        self._actor = actor
        self._revision: int | None = None
        self.notes = 0

    # --- SQL plumbing ---------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(self._store.sql(sql), tuple(params))

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._run(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._run(sql, params).fetchall())

    def _body(self, cls: type[M], table: str, key: str) -> M | None:
        row = self._one(f"SELECT body FROM {table} WHERE id = ?", (key,))  # noqa: S608 - table names are ours
        return None if row is None else _parse(cls, row[0])

    # --- reader -----------------------------------------------------------------------

    def member(self, member_id: str) -> globalconf_pb2.Member | None:
        return self._body(globalconf_pb2.Member, "members", member_id)

    def subsystem(self, subsystem_id: str) -> globalconf_pb2.Subsystem | None:
        return self._body(globalconf_pb2.Subsystem, "subsystems", subsystem_id)

    def server(self, server_id: str) -> globalconf_pb2.SecurityServer | None:
        return self._body(globalconf_pb2.SecurityServer, "servers", server_id)

    def server_signing_certificate(self, server_id: str) -> bytes:
        row = self._one("SELECT signing_certificate FROM servers WHERE id = ?", (server_id,))
        return b"" if row is None else bytes(row[0])

    def service(self, service_id: str) -> globalconf_pb2.Service | None:
        return self._body(globalconf_pb2.Service, "services", service_id)

    def has_access(self, service_id: str, client: str) -> bool:
        row = self._one(
            "SELECT 1 FROM access_rights WHERE service = ? AND client = ?", (service_id, client)
        )
        return row is not None

    def group(self, group_id: str) -> globalconf_pb2.Group | None:
        if self._one("SELECT 1 FROM client_groups WHERE id = ?", (group_id,)) is None:
            return None
        rows = self._all(
            "SELECT subsystem FROM group_members WHERE group_id = ? ORDER BY subsystem",
            (group_id,),
        )
        return globalconf_pb2.Group(id=group_id, members=[r[0] for r in rows])

    def legal_basis(self, basis_id: str) -> globalconf_pb2.LegalBasis | None:
        return self._body(globalconf_pb2.LegalBasis, "legal_bases", basis_id)

    def revocation(self, serial: bytes) -> globalconf_pb2.RevokedCertificate | None:
        return self._body(globalconf_pb2.RevokedCertificate, "revocations", serial.hex())

    def setting(self, key: str) -> bytes | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def revoked_serials(self) -> frozenset[int]:
        return frozenset(int(r[0], 16) for r in self._all("SELECT id FROM revocations"))

    def content(self) -> RegistryContent:
        def bodies(cls: type[M], table: str) -> tuple[M, ...]:
            rows = self._all(f"SELECT body FROM {table} ORDER BY id")  # noqa: S608 - our table names
            return tuple(_parse(cls, r[0]) for r in rows)

        groups = []
        for (group_id,) in self._all("SELECT id FROM client_groups ORDER BY id"):
            found = self.group(group_id)
            if found is not None:
                groups.append(found)
        revision_row = self._one("SELECT value FROM counters WHERE name = 'revision'")
        return RegistryContent(
            revision=int(revision_row[0]),
            members=bodies(globalconf_pb2.Member, "members"),
            subsystems=bodies(globalconf_pb2.Subsystem, "subsystems"),
            servers=bodies(globalconf_pb2.SecurityServer, "servers"),
            services=bodies(globalconf_pb2.Service, "services"),
            access_rights=tuple(
                globalconf_pb2.AccessRight(service=s, client=c)
                for s, c in self._all(
                    "SELECT service, client FROM access_rights ORDER BY service, client"
                )
            ),
            groups=tuple(groups),
            legal_bases=bodies(globalconf_pb2.LegalBasis, "legal_bases"),
            revoked=bodies(globalconf_pb2.RevokedCertificate, "revocations"),
            consent_service_address=(self.setting("consent_service_address") or b"").decode(),
            consent_service_certificate=self.setting("consent_service_certificate") or b"",
            descriptors={
                r[0]: bytes(r[1])
                for r in self._all("SELECT id, descriptor_set FROM services ORDER BY id")
            },
        )

    # --- writer -----------------------------------------------------------------------

    def _upsert(self, table: str, key: str, columns: dict[str, Any]) -> None:
        names = ["id", *columns]
        marks = ", ".join("?" for _ in names)
        updates = ", ".join(f"{n} = excluded.{n}" for n in columns)
        self._run(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks}) "  # noqa: S608 - ours
            f"ON CONFLICT (id) DO UPDATE SET {updates}",
            (key, *columns.values()),
        )

    def put_member(self, member: globalconf_pb2.Member) -> None:
        self._upsert("members", member.id, {"body": _bytes(member)})

    def put_subsystem(self, subsystem: globalconf_pb2.Subsystem, member: str) -> None:
        self._upsert("subsystems", subsystem.id, {"member": member, "body": _bytes(subsystem)})

    def put_server(self, server: globalconf_pb2.SecurityServer, signing_cert: bytes) -> None:
        self._upsert(
            "servers",
            server.id,
            {"member": server.owner, "body": _bytes(server), "signing_certificate": signing_cert},
        )

    def put_service(
        self, service: globalconf_pb2.Service, subsystem: str, member: str, descriptor_set: bytes
    ) -> None:
        self._upsert(
            "services",
            service.id,
            {
                "subsystem": subsystem,
                "member": member,
                "body": _bytes(service),
                "descriptor_set": descriptor_set,
            },
        )

    def add_access(self, service_id: str, client: str) -> None:
        self._run("INSERT INTO access_rights (service, client) VALUES (?, ?)", (service_id, client))

    def remove_access(self, service_id: str, client: str) -> None:
        self._run(
            "DELETE FROM access_rights WHERE service = ? AND client = ?", (service_id, client)
        )

    def add_group(self, group_id: str) -> None:
        self._run("INSERT INTO client_groups (id) VALUES (?)", (group_id,))

    def add_group_member(self, group_id: str, subsystem_id: str) -> None:
        self._run(
            "INSERT INTO group_members (group_id, subsystem) VALUES (?, ?)",
            (group_id, subsystem_id),
        )

    def remove_group_member(self, group_id: str, subsystem_id: str) -> None:
        self._run(
            "DELETE FROM group_members WHERE group_id = ? AND subsystem = ?",
            (group_id, subsystem_id),
        )

    def put_legal_basis(self, basis: globalconf_pb2.LegalBasis) -> None:
        self._upsert(
            "legal_bases",
            basis.id,
            {"client": basis.client, "service": basis.service, "body": _bytes(basis)},
        )

    def remove_legal_basis(self, basis_id: str) -> None:
        self._run("DELETE FROM legal_bases WHERE id = ?", (basis_id,))

    def add_revocation(self, revoked: globalconf_pb2.RevokedCertificate) -> None:
        self._upsert("revocations", revoked.serial.hex(), {"body": _bytes(revoked)})

    def set_setting(self, key: str, value: bytes) -> None:
        self._run(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def revision(self) -> int:
        if self._revision is None:
            # Taking the counter row first serializes writers on both backends.
            row = self._one(
                "UPDATE counters SET value = value + 1 WHERE name = 'revision' RETURNING value"
            )
            self._revision = int(row[0])
        return self._revision

    def note(self, action: str, target: str, member: str, before: str, after: str) -> None:
        if self._actor is None:
            raise Internal("a read-only unit of work cannot record changes")
        self._run(
            "INSERT INTO audit_trail (at_us, actor, action, target, member, before_state, "
            "after_state, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                int(time.time() * 1_000_000),
                self._actor,
                action,
                target,
                member,
                before,
                after,
                self.revision,
            ),
        )
        self.notes += 1


class SqlRegistryStore(abc.ABC):
    """The SQL both backends share; subclasses open the connection and run transactions."""

    #: SQL type names per backend.
    BLOB = "BLOB"
    SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # --- what a backend provides --------------------------------------------------------

    @abc.abstractmethod
    def sql(self, statement: str) -> str:
        """The statement in the backend's placeholder style."""

    @abc.abstractmethod
    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Any]:
        """A cursor inside a transaction; commit on success, roll back on error."""

    @abc.abstractmethod
    def _is_integrity_error(self, exc: BaseException) -> bool: ...

    @abc.abstractmethod
    def _is_database_error(self, exc: BaseException) -> bool: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- schema -----------------------------------------------------------------------------

    def schema(self) -> list[str]:
        blob = self.BLOB
        return [
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value {blob} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS members (id TEXT PRIMARY KEY, body {blob} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS subsystems (id TEXT PRIMARY KEY, "
            f"member TEXT NOT NULL REFERENCES members(id), body {blob} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS servers (id TEXT PRIMARY KEY, "
            f"member TEXT NOT NULL REFERENCES members(id), body {blob} NOT NULL, "
            f"signing_certificate {blob} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS services (id TEXT PRIMARY KEY, "
            "subsystem TEXT NOT NULL REFERENCES subsystems(id), member TEXT NOT NULL, "
            f"body {blob} NOT NULL, descriptor_set {blob} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS access_rights ("
            "service TEXT NOT NULL REFERENCES services(id), client TEXT NOT NULL, "
            "PRIMARY KEY (service, client))",
            "CREATE TABLE IF NOT EXISTS client_groups (id TEXT PRIMARY KEY)",
            "CREATE TABLE IF NOT EXISTS group_members ("
            "group_id TEXT NOT NULL REFERENCES client_groups(id), "
            "subsystem TEXT NOT NULL REFERENCES subsystems(id), PRIMARY KEY (group_id, subsystem))",
            "CREATE TABLE IF NOT EXISTS legal_bases (id TEXT PRIMARY KEY, client TEXT NOT NULL, "
            f"service TEXT NOT NULL REFERENCES services(id), body {blob} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS revocations (id TEXT PRIMARY KEY, body {blob} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS audit_trail (seq {self.SERIAL}, at_us BIGINT NOT NULL, "
            "actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, "
            "member TEXT NOT NULL, before_state TEXT NOT NULL, after_state TEXT NOT NULL, "
            "revision BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS audit_trail_member ON audit_trail (member, seq)",
            "INSERT INTO counters (name, value) VALUES ('revision', 0) ON CONFLICT DO NOTHING",
            "INSERT INTO counters (name, value) VALUES ('conf_version', 0) ON CONFLICT DO NOTHING",
        ]

    def _create_schema(self) -> None:
        with self._guard(), self._transaction(write=True) as cur:
            for statement in self.schema():
                cur.execute(statement)

    # --- units of work ----------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialize use of the one connection; map database failures to the vocabulary."""
        with self._lock:
            try:
                yield
            except GovbusError:
                raise
            except Exception as exc:
                if self._is_integrity_error(exc):
                    raise FailedPrecondition(
                        f"the registry store refused the change: {exc}", origin=Origin.REGISTRY
                    ) from None
                if self._is_database_error(exc):
                    raise ServiceUnavailable(
                        f"the registry store is unavailable: {exc}",
                        origin=Origin.REGISTRY,
                        retry_after=1.0,
                    ) from None
                raise

    @contextmanager
    def read(self) -> Iterator[RegistryReader]:
        with self._guard(), self._transaction(write=False) as cur:
            yield _Unit(self, cur, None)

    @contextmanager
    def write(self, actor: str) -> Iterator[RegistryWriter]:
        """One change: commits only if it recorded at least one audit-trail entry."""
        with self._guard(), self._transaction(write=True) as cur:
            unit = _Unit(self, cur, actor)
            yield unit
            if unit.notes == 0:
                raise Internal("a registry change must be recorded in the audit trail")

    def revision(self) -> int:
        with self._guard(), self._transaction(write=False) as cur:
            row = cur.execute(self.sql("SELECT value FROM counters WHERE name = 'revision'"))
            return int(row.fetchone()[0])

    def next_conf_version(self) -> int:
        """Allocate the next global-configuration version (never reused, even after a crash)."""
        with self._guard(), self._transaction(write=True) as cur:
            row = cur.execute(
                self.sql(
                    "UPDATE counters SET value = value + 1 WHERE name = 'conf_version' "
                    "RETURNING value"
                )
            ).fetchone()
            return int(row[0])

    def audit_trail(
        self, limit: int = 100, before_seq: int = 0, member: str | None = None
    ) -> list[AuditEntry]:
        limit = max(1, min(limit or 100, 1000))
        where: list[str] = []
        params: list[Any] = []
        if before_seq:
            where.append("seq < ?")
            params.append(before_seq)
        if member is not None:
            where.append("member = ?")
            params.append(member)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        # Only fixed clauses are pasted in; every value is a bound parameter.
        statement = (
            "SELECT seq, at_us, actor, action, target, member, before_state, after_state, "  # noqa: S608
            f"revision FROM audit_trail {clause}ORDER BY seq DESC LIMIT {int(limit)}"
        )
        with self._guard(), self._transaction(write=False) as cur:
            rows = cur.execute(self.sql(statement), tuple(params)).fetchall()
        return [
            AuditEntry(
                seq=int(r[0]),
                at=int(r[1]) / 1e6,
                actor=r[2],
                action=r[3],
                target=r[4],
                member=r[5],
                before=r[6],
                after=r[7],
                revision=int(r[8]),
            )
            for r in rows
        ]


def open_store(url: str | Path, *, schema: str = "govbus_registry") -> SqlRegistryStore:
    """A store for `url`: `postgresql://…` for PostgreSQL, anything else is a SQLite file."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from registry.store_postgres import PostgresRegistryStore

        return PostgresRegistryStore(text, schema=schema)
    if not text:
        raise ConfigInvalid("no registry database given")
    from registry.store_sqlite import SqliteRegistryStore

    return SqliteRegistryStore(Path(text))
