"""The leaf format: how an `ExchangeRecord` becomes the bytes the tree hashes.

A leaf is the deterministic protobuf serialization of the record with its
`log_index` (field 35, the highest number, hence the last field) set to its
position. The log appends that last field to the caller's serialization
instead of re-serializing, which gives the same bytes; `has_index` lets a
verifier check a leaf's position without parsing the record.

Pure functions; no I/O.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from govbus.errors import AuditLogCorrupt
from govbus.pb.govbus.v1 import audit_pb2

__all__ = ["has_index", "index_suffix", "parse_leaf", "with_index"]

# Tag of field 35 with wire type 0 (varint): (35 << 3) | 0 = 280, as a varint.
_TAG = b"\x98\x02"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def index_suffix(index: int) -> bytes:
    return _TAG + _varint(index)


def with_index(record_bytes: bytes, index: int) -> bytes:
    """The leaf for a record serialized without `log_index`, placed at `index`."""
    return record_bytes + _TAG + _varint(index)


def has_index(leaf: bytes, index: int) -> bool:
    """Whether the leaf ends with `log_index = index` (its last field)."""
    return leaf.endswith(_TAG + _varint(index))


def parse_leaf(leaf: bytes, index: int | None = None) -> audit_pb2.ExchangeRecord:
    """The record a leaf holds; `AuditLogCorrupt` if it is not one (or not at `index`)."""
    record = audit_pb2.ExchangeRecord()
    try:
        record.ParseFromString(leaf)
    except DecodeError:
        where = f"record {index}" if index is not None else "leaf"
        raise AuditLogCorrupt(f"{where} is not a valid ExchangeRecord") from None
    if index is not None and (not record.HasField("log_index") or record.log_index != index):
        found = record.log_index if record.HasField("log_index") else "none"
        raise AuditLogCorrupt(f"record found at position {index} carries log_index {found}")
    return record
