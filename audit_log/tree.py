"""The growing side of the tree: the right edge kept in memory, and the proof builders.

- `Frontier` is the compact range of a log: the hashes of the perfect subtrees
  along its right edge (one per set bit of the size). Appending a leaf merges
  equal-sized subtrees and reports the perfect subtrees it completes, so the
  store can keep the ones on its stride levels. The root is the right-to-left
  fold of the frontier.
- `inclusion_proof` and `consistency_proof` build RFC 6962 proofs (PATH and
  PROOF of §2.1.1/§2.1.2) from any `NodeSource`, the store's view of perfect
  subtree hashes. They are pure given that source.

Nothing here does I/O itself; a store passes itself in as the node source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from audit_log.hashing import EMPTY_ROOT, HASH_SIZE, node_hash
from govbus.errors import AuditLogCorrupt, InvalidRequest

__all__ = [
    "NODE_STRIDE",
    "ConsistencyProof",
    "Frontier",
    "InclusionProof",
    "MemorySource",
    "NodeSource",
    "consistency_proof",
    "inclusion_proof",
    "perfect_hash",
    "range_hash",
    "stored_levels",
]

#: Stores keep the hashes of perfect subtrees whose level is a multiple of this
#: (256, 65,536, … leaves), so any subtree hash needs at most 255 stored hashes.
NODE_STRIDE = 8


def stored_levels(level: int) -> bool:
    return level > 0 and level % NODE_STRIDE == 0


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


class Frontier:
    """The right edge of a tree of `size` leaves: perfect subtree hashes, largest first."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise AuditLogCorrupt(
                f"tree state holds {len(hashes)} edge hashes for size {size} "
                f"(needs {max(size, 0).bit_count()})"
            )
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, leaf: bytes, completed: list[tuple[int, int, bytes]] | None = None) -> None:
        """Add one leaf hash. Perfect subtrees it completes on a stored level are appended
        to `completed` as (level, index, hash)."""
        current = leaf
        index = self.size
        level = 0
        hashes = self.hashes
        while index & 1:
            current = node_hash(hashes.pop(), current)
            index >>= 1
            level += 1
            if completed is not None and level % NODE_STRIDE == 0:
                completed.append((level, index, current))
        hashes.append(current)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            result = node_hash(left, result)
        return result

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        if len(data) % HASH_SIZE:
            raise AuditLogCorrupt(f"stored tree edge is {len(data)} bytes, not whole hashes")
        return cls(size, [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])


class NodeSource(Protocol):
    """Hashes at one level of the tree: level 0 are leaf hashes, stored levels are nodes."""

    def level_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        """Hashes of the perfect subtrees [start, end) at `level`; all must exist."""
        ...


def perfect_hash(source: NodeSource, level: int, index: int) -> bytes:
    """Hash of the perfect subtree of 2**level leaves starting at leaf index << level."""
    base = level - level % NODE_STRIDE
    width = 1 << (level - base)
    hashes = source.level_hashes(base, index * width, (index + 1) * width)
    if len(hashes) != width:
        first = (index << level) if level else index
        last = first + (1 << level) - 1
        what = "leaf hashes" if base == 0 else "tree nodes"
        raise AuditLogCorrupt(f"the store is missing {what} under records {first}..{last}")
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def range_hash(source: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that starts on a boundary of its largest split."""
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return perfect_hash(source, n.bit_length() - 1, start // n)
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(range_hash(source, start, start + k), range_hash(source, start + k, end))


def inclusion_proof(source: NodeSource, index: int, size: int) -> InclusionProof:
    """RFC 6962 PATH(index, D[0:size])."""
    if not 0 <= index < size:
        raise InvalidRequest(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = 1 << ((end - start - 1).bit_length() - 1)
        if index < start + k:
            path.append(range_hash(source, start + k, end))
            end = start + k
        else:
            path.append(range_hash(source, start, start + k))
            start += k
    return InclusionProof(index, size, tuple(reversed(path)))


def consistency_proof(source: NodeSource, old_size: int, new_size: int) -> ConsistencyProof:
    """RFC 6962 PROOF(old_size, D[0:new_size])."""
    if not 0 <= old_size <= new_size:
        raise InvalidRequest(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return ConsistencyProof(old_size, new_size, ())
    path: list[bytes] = []
    m, start, end, whole = old_size, 0, new_size, True
    while m != end - start:
        k = 1 << ((end - start - 1).bit_length() - 1)
        if m <= k:
            path.append(range_hash(source, start + k, end))
            end = start + k
        else:
            path.append(range_hash(source, start, start + k))
            m -= k
            start += k
            whole = False
    if not whole:
        path.append(range_hash(source, start, end))
    return ConsistencyProof(old_size, new_size, tuple(reversed(path)))


class MemorySource:
    """A `NodeSource` over a list of leaf hashes (tests, vectors, small bundles)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._levels: dict[int, list[bytes]] = {0: list(leaves)}

    def level_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        if level not in self._levels:
            below = self.level_hashes(level - NODE_STRIDE, 0, 1 << 62)
            width = 1 << NODE_STRIDE
            self._levels[level] = [
                _fold(below[i : i + width]) for i in range(0, len(below) - width + 1, width)
            ]
        return self._levels[level][start:end]


def _fold(hashes: list[bytes]) -> bytes:
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]
