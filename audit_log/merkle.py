"""Verification of RFC 6962 Merkle trees: roots, inclusion and consistency proofs.

This is the whole of what an auditor must trust to check a proof, so it is
pure: values in, `None` out or a `ProofInvalid` raised. It never does I/O,
never reads a clock and never imports a store. The algorithms are those of
RFC 9162 §2.1.3.2 and §2.1.4.2 (the corrected form of RFC 6962's), with RFC
6962 hashing (0x00 leaf prefix, 0x01 node prefix, SHA-256).

Inputs are checked before any hashing: sizes and indexes must be non-negative
integers, every hash 32 bytes; a proof of the wrong length is refused, never
padded or truncated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from audit_log.hashing import EMPTY_ROOT, HASH_SIZE, node_hash
from govbus.errors import ProofInvalid

__all__ = ["root", "verify_consistency", "verify_inclusion"]


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofInvalid(f"{what} must be a {HASH_SIZE}-byte SHA-256 hash, got {size}")
    return bytes(value)


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofInvalid(f"{what} must be a non-negative integer, got {value!r}")
    return value


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """The RFC 6962 root (Merkle Tree Hash) of a sequence of leaf hashes.

    Streams: it keeps only the right edge of the tree (one hash per level), so a
    million leaves cost a million node hashes and no list of them.
    """
    # stack[i] is the hash of a perfect subtree; sizes strictly decrease downwards.
    stack: list[bytes] = []
    sizes: list[int] = []
    for count, item in enumerate(leaf_hashes):
        current = _check_hash(item, f"leaf hash {count}")
        size = 1
        while sizes and sizes[-1] == size:
            current = node_hash(stack.pop(), current)
            sizes.pop()
            size <<= 1
        stack.append(current)
        sizes.append(size)
    if not stack:
        return EMPTY_ROOT
    result = stack[-1]
    for left in reversed(stack[:-1]):
        result = node_hash(left, result)
    return result


def _proof(proof: Sequence[bytes], what: str) -> list[bytes]:
    if isinstance(proof, bytes | str):
        raise ProofInvalid(f"{what} must be a sequence of hashes, not a single value")
    return [_check_hash(p, f"{what}[{i}]") for i, p in enumerate(proof)]


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`.

    Raises `ProofInvalid` saying what did not hold; returns None when it holds.
    """
    index = _check_size(index, "leaf index")
    size = _check_size(size, "tree size")
    leaf = _check_hash(leaf_hash, "leaf hash")
    expected = _check_hash(root, "root")
    hashes = _proof(proof, "inclusion proof")
    if index >= size:
        raise ProofInvalid(f"leaf index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    current = leaf
    for p in hashes:
        if sn == 0:
            raise ProofInvalid(
                f"inclusion proof for leaf {index} of {size} is too long ({len(hashes)} hashes)"
            )
        if fn & 1 or fn == sn:
            current = node_hash(p, current)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            current = node_hash(current, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid(
            f"inclusion proof for leaf {index} of {size} is too short ({len(hashes)} hashes)"
        )
    if current != expected:
        raise ProofInvalid(
            f"inclusion proof for leaf {index} of {size} leads to root "
            f"{current.hex()[:16]}…, not {expected.hex()[:16]}…"
        )


def _trivially_consistent(
    size1: int, size2: int, hashes: list[bytes], first: bytes, second: bytes
) -> bool:
    """True for the cases with nothing to prove; raises for impossible ones."""
    if size1 > size2:
        raise ProofInvalid(f"tree size {size1} cannot grow into the smaller size {size2}")
    if size1 == size2:
        if hashes:
            raise ProofInvalid(f"trees of equal size {size1} need an empty consistency proof")
        if first != second:
            raise ProofInvalid(f"two different roots for the same tree size {size1}: a fork")
        return True
    if size1 == 0:
        if hashes:
            raise ProofInvalid("a consistency proof from the empty tree must be empty")
        if first != EMPTY_ROOT:
            raise ProofInvalid("the root of the empty tree must be SHA-256 of nothing")
        return True
    if not hashes:
        raise ProofInvalid(f"consistency proof from {size1} to {size2} is empty")
    return False


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of `size2` leaves with `root2` extends the one of `size1` with
    `root1` (RFC 6962 consistency). Raises `ProofInvalid`; returns None when it holds.

    Size 0 is consistent with every tree, with an empty proof and the empty-tree root.
    """
    size1 = _check_size(size1, "first tree size")
    size2 = _check_size(size2, "second tree size")
    first = _check_hash(root1, "first root")
    second = _check_hash(root2, "second root")
    hashes = _proof(proof, "consistency proof")
    if _trivially_consistent(size1, size2, hashes, first, second):
        return
    # A first tree that is a perfect subtree is not repeated in the proof.
    if size1 & (size1 - 1) == 0:
        hashes = [first, *hashes]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ProofInvalid(f"consistency proof from {size1} to {size2} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid(f"consistency proof from {size1} to {size2} is too short")
    if fr != first:
        raise ProofInvalid(
            f"consistency proof from {size1} to {size2} does not lead to the first root"
        )
    if sr != second:
        raise ProofInvalid(
            f"consistency proof from {size1} to {size2} does not lead to the second root"
        )
