"""RFC 6962 known answers: roots, inclusion and consistency proofs, and mutations that
must fail. The vectors are checked three ways: against the published reference
values, against a naive recursive transcription of RFC 6962 §2.1 written here,
and against the module under test (verification and proof building)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log import merkle
from audit_log.hashing import leaf_hash
from audit_log.tree import Frontier, MemorySource, consistency_proof, inclusion_proof
from govbus.errors import ProofInvalid

VECTORS = Path(__file__).parent / "vectors"
KAT: dict[str, Any] = json.loads((VECTORS / "rfc6962.json").read_text())
PUBLISHED: dict[str, Any] = json.loads((VECTORS / "rfc6962_published.json").read_text())
LEAVES = [bytes.fromhex(x) for x in KAT["leaf_inputs"]]


# --- a naive transcription of RFC 6962 §2.1, independent of audit_log ----------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(d: list[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + _mth(d[:k]) + _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


def _hx(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# --- the vectors themselves -----------------------------------------------------------


def test_vectors_agree_with_published_values() -> None:
    assert KAT["roots"] == PUBLISHED["roots"]
    assert KAT["leaf_hashes"] == PUBLISHED["leaf_hashes"]
    inclusion = {(v["index"], v["size"]): v["proof"] for v in KAT["inclusion"]}
    for v in PUBLISHED["inclusion"]:
        assert inclusion[(v["index"], v["size"])] == v["proof"]
    consistency = {(v["size1"], v["size2"]): v["proof"] for v in KAT["consistency"]}
    for v in PUBLISHED["consistency"]:
        assert consistency[(v["size1"], v["size2"])] == v["proof"]


def test_vectors_agree_with_the_rfc_definitions() -> None:
    for size, value in KAT["roots"].items():
        assert _mth(LEAVES[: int(size)]).hex() == value
    for v in KAT["inclusion"]:
        assert v["leaf_hash"] == _h(b"\x00" + LEAVES[v["index"]]).hex()
        assert _hx(v["proof"]) == _path(v["index"], LEAVES[: v["size"]])
    for v in KAT["consistency"]:
        n1, n2 = v["size1"], v["size2"]
        want = [] if n1 in (0, n2) else _subproof(n1, LEAVES[:n2], True)
        assert _hx(v["proof"]) == want
    assert len(KAT["inclusion"]) == 36 and len(KAT["consistency"]) == 45


# --- the module against the vectors ---------------------------------------------------


@pytest.mark.parametrize("size", range(9))
def test_root(size: int) -> None:
    hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert merkle.root(hashes).hex() == KAT["roots"][str(size)]
    frontier = Frontier()
    for h in hashes:
        frontier.append(h)
    assert frontier.root().hex() == KAT["roots"][str(size)]


@pytest.mark.parametrize("v", KAT["inclusion"], ids=lambda v: f"{v['index']}of{v['size']}")
def test_inclusion(v: dict[str, Any]) -> None:
    merkle.verify_inclusion(
        v["index"],
        v["size"],
        bytes.fromhex(v["leaf_hash"]),
        _hx(v["proof"]),
        bytes.fromhex(v["root"]),
    )
    source = MemorySource([leaf_hash(x) for x in LEAVES])
    assert list(inclusion_proof(source, v["index"], v["size"]).hashes) == _hx(v["proof"])


@pytest.mark.parametrize("v", KAT["consistency"], ids=lambda v: f"{v['size1']}to{v['size2']}")
def test_consistency(v: dict[str, Any]) -> None:
    merkle.verify_consistency(
        v["size1"],
        v["size2"],
        _hx(v["proof"]),
        bytes.fromhex(v["root1"]),
        bytes.fromhex(v["root2"]),
    )
    source = MemorySource([leaf_hash(x) for x in LEAVES])
    assert list(consistency_proof(source, v["size1"], v["size2"]).hashes) == _hx(v["proof"])


def test_every_invalid_inclusion_is_refused() -> None:
    assert len(KAT["invalid_inclusion"]) > 500
    for v in KAT["invalid_inclusion"]:
        with pytest.raises(ProofInvalid):
            merkle.verify_inclusion(
                v["index"],
                v["size"],
                bytes.fromhex(v["leaf_hash"]),
                _hx(v["proof"]),
                bytes.fromhex(v["root"]),
            )


def test_every_invalid_consistency_is_refused() -> None:
    assert len(KAT["invalid_consistency"]) > 500
    for v in KAT["invalid_consistency"]:
        with pytest.raises(ProofInvalid):
            merkle.verify_consistency(
                v["size1"],
                v["size2"],
                _hx(v["proof"]),
                bytes.fromhex(v["root1"]),
                bytes.fromhex(v["root2"]),
            )


def test_module_exposes_exactly_the_three_functions() -> None:
    assert sorted(merkle.__all__) == ["root", "verify_consistency", "verify_inclusion"]


@pytest.mark.parametrize(
    "args",
    [
        (-1, 1, b"\x00" * 32, [], b"\x00" * 32),
        (0, 1, b"short", [], b"\x00" * 32),
        (0, 1, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32),
        (True, 2, b"\x00" * 32, [], b"\x00" * 32),
        (0, 1, b"\x00" * 32, ["not bytes"], b"\x00" * 32),
    ],
)
def test_malformed_inputs_are_typed_errors(args: tuple[Any, ...]) -> None:
    with pytest.raises(ProofInvalid):
        merkle.verify_inclusion(*args)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_built_proofs_verify_and_match_the_rfc(size: int, data: st.DataObject) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    hashes = [leaf_hash(x) for x in leaves]
    source = MemorySource(hashes)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(0, size))
    top = merkle.root(hashes)
    proof = inclusion_proof(source, index, size)
    merkle.verify_inclusion(index, size, hashes[index], proof.hashes, top)
    cons = consistency_proof(source, old, size)
    merkle.verify_consistency(old, size, cons.hashes, merkle.root(hashes[:old]), top)
    if size <= 64:
        assert list(proof.hashes) == _path(index, leaves)
        assert top == _mth(leaves)
