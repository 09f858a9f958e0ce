"""Where a log's records, tree nodes and checkpoints are kept: the storage interface.

A store is used from one thread at a time (the log's writer thread, or a reader
thread); its methods are plain blocking calls. `append` is one durable
transaction: the records, the tree nodes they complete, the certificates they
name and the new tree head are committed together or not at all, and the head
moves only from the size the caller expects (so two writers can never
interleave silently).

Tables are append-only by design and by database triggers; the tree head is the
one row that changes. Stores never interpret record bytes beyond the columns
they are given.

`open_store(url)` picks the backend: `sqlite:///path/file.db` (or a plain
path) for the embedded SQLite store, `postgresql://…[?schema=name]` for
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from govbus.errors import ConfigInvalid

__all__ = [
    "Cosignature",
    "LeafRow",
    "LogStore",
    "StoredCheckpoint",
    "TreeHead",
    "open_store",
    "parse_store_url",
]


class LeafRow(NamedTuple):
    """One record as stored (a tuple, so stores can hand it to the driver as it is)."""

    position: int
    leaf_hash: bytes
    leaf: bytes  # the record as stored: deterministic ExchangeRecord bytes with log_index
    request_id: str
    subject: bytes | None  # pseudonym, None when the exchange has no subject
    logged_at_ms: int


@dataclass(frozen=True, slots=True)
class TreeHead:
    size: int
    root: bytes
    frontier: bytes  # the right edge, see audit_log.tree.Frontier


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str  # the signed note as the log issued it
    issued_at_ms: int


@dataclass(frozen=True, slots=True)
class Cosignature:
    size: int
    witness: str
    line: str  # "— <witness> <base64>\n"
    received_at_ms: int


class LogStore(Protocol):
    """Storage of one log. Writes: `append`, `add_checkpoint`, `add_cosignature`,
    `set_meta`. Everything else reads."""

    def read_head(self) -> TreeHead | None: ...

    def append(
        self,
        expected_size: int,
        rows: Sequence[LeafRow],
        nodes: Sequence[tuple[int, int, bytes]],
        head: TreeHead,
        certificates: Sequence[tuple[bytes, bytes]] = (),
    ) -> None: ...

    def level_hashes(self, level: int, start: int, end: int) -> list[bytes]: ...

    def scan(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(index, stored leaf hash, leaf bytes) in index order, as stored."""
        ...

    def nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        """(index, hash) of every stored node at `level`, in index order."""
        ...

    def records(self, indexes: Sequence[int]) -> list[tuple[int, bytes]]: ...

    def find_by_request(self, request_id: str) -> list[tuple[int, bytes]]: ...

    def find_by_subject(
        self, subject: bytes, from_ms: int, to_ms: int, limit: int
    ) -> list[tuple[int, bytes]]: ...

    def bounds(self) -> tuple[int, int | None, int | None]:
        """(number of records, lowest index, highest index)."""
        ...

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...

    def checkpoints(self) -> list[StoredCheckpoint]: ...

    def add_cosignature(self, cosignature: Cosignature) -> None: ...

    def cosignatures(self, size: int) -> list[Cosignature]: ...

    def certificate(self, sha256: bytes) -> bytes | None: ...

    def get_meta(self, key: str) -> bytes | None: ...

    def set_meta(self, key: str, value: bytes) -> None: ...

    def close(self) -> None: ...


def parse_store_url(url: str) -> tuple[str, str, str | None]:
    """("sqlite", path, None) or ("postgresql", conninfo without schema, schema)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigInvalid("audit store URL is empty")
    url = url.strip()
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), None)
        rest = urlencode([(k, v) for k, v in query if k != "schema"])
        if schema is not None and not schema.replace("_", "").isalnum():
            raise ConfigInvalid(f"schema {schema!r} must be letters, digits and underscores")
        return "postgresql", urlunsplit(parts._replace(query=rest)), schema
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path:
            raise ConfigInvalid(f"audit store URL {url!r} names no file")
        return "sqlite", path, None
    if "://" in url:
        raise ConfigInvalid(
            f"unknown audit store {url.split('://')[0]!r}: use sqlite:///path or postgresql://…"
        )
    return "sqlite", url, None


def open_store(url: str, *, create: bool = True) -> LogStore:
    """Open (and with `create`, initialise) the store named by `url`."""
    kind, target, schema = parse_store_url(url)
    if kind == "postgresql":
        from audit_log.store_postgres import PostgresStore

        return PostgresStore(target, schema=schema, create=create)
    from audit_log.store_sqlite import SqliteStore

    return SqliteStore(Path(target), create=create)
