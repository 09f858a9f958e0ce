"""RFC 6962 hashing: the two prefixed SHA-256 functions every tree computation uses.

A leaf hash is SHA-256(0x00 || leaf bytes); an interior node is
SHA-256(0x01 || left || right); the empty tree's root is SHA-256 of nothing.
The prefixes keep a leaf from ever being taken for a node (second-preimage
protection). Pure functions; no I/O, no state.
"""

from __future__ import annotations

import hashlib

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "leaf_hash", "node_hash"]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()
