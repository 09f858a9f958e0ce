"""Deterministic pseudo-random draws keyed by (seed, tag, key…).

Every value of the synthetic world is a pure function of the world's seed and the
index of the thing it describes, so that any agency can compute any person,
household or company on its own, in any order, in any process, without shared
state. A `Draw` is a small stream of entropy taken from a BLAKE2b hash of its key;
callers take numbers from it in a fixed order.

This module must never use the global `random` state or the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import TypeVar

__all__ = ["Draw"]

T = TypeVar("T")

_BITS = 1 << 256


class Draw:
    """A stream of deterministic numbers for one key; refills itself by re-hashing."""

    __slots__ = ("_key", "_pool", "_round")

    def __init__(self, *key: object) -> None:
        self._key = ":".join(map(str, key)).encode()
        self._round = 0
        self._pool = self._hash()

    def _hash(self) -> int:
        digest = blake2b(self._key + b"#%d" % self._round, digest_size=32).digest()
        return int.from_bytes(digest, "big")

    def below(self, n: int) -> int:
        """A number in [0, n)."""
        if self._pool < n * 1024:
            # Too little entropy left for an unbiased-enough draw: take a fresh block.
            self._round += 1
            self._pool = self._hash() + _BITS * self._pool
        self._pool, value = divmod(self._pool, n)
        return value

    def between(self, low: int, high: int) -> int:
        """A number in [low, high] (inclusive)."""
        return low + self.below(high - low + 1)

    def chance(self, per_mille: int) -> bool:
        """True with probability per_mille / 1000."""
        return self.below(1000) < per_mille

    def pick(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]

    def weighted(self, cumulative: Sequence[int]) -> int:
        """An index chosen with weights given as a running total (last = total)."""
        point = self.below(cumulative[-1])
        for index, bound in enumerate(cumulative):
            if point < bound:
                return index
        raise AssertionError("unreachable: point below the total")
