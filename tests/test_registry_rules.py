"""Pure rules of the registry: who an admin certificate speaks for, and input checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govbus.errors import AccessDenied, InvalidIdentifier, InvalidRequest
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.rules import AdminRole, Caller, check_address, check_group_id, check_text, summary

GBDFL = "KZ/GOV/040340123459"


def test_certificate_names_map_to_roles() -> None:
    operator = Caller.from_certificate_name("operator", 1)
    admin = Caller.from_certificate_name(GBDFL, 2)
    assert operator.role is AdminRole.OPERATOR and operator.member is None
    assert admin.role is AdminRole.MEMBER_ADMIN and str(admin.member) == GBDFL
    for name in ("Operator", "root", "KZ/GOV/040340123450", f"{GBDFL}/ss1", ""):
        with pytest.raises(AccessDenied):
            Caller.from_certificate_name(name, 3)


def test_member_admin_acts_only_for_its_member() -> None:
    admin = Caller.from_certificate_name(GBDFL, 2)
    admin.require_member(GBDFL, "add subsystems")
    with pytest.raises(AccessDenied, match="only for its own member"):
        admin.require_member("KZ/GOV/990140000017", "add subsystems")
    with pytest.raises(AccessDenied, match="only the registry operator"):
        admin.require_operator("add members")
    assert admin.owns_certificate_name(GBDFL)
    assert admin.owns_certificate_name(f"{GBDFL}/ss1")
    assert not admin.owns_certificate_name(f"{GBDFL}1/ss1")  # a prefix is not ownership
    assert not admin.owns_certificate_name("operator")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7001", ("127.0.0.1", 7001)),
        ("ss1.gbdfl.kz:443", ("ss1.gbdfl.kz", 443)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:7001", ("::1", 7001)),
    ],
)
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert check_address(text) == expected


@pytest.mark.parametrize(
    "text", ["", "host", ":7001", "host:", "host:0", "host:65536", "[zz]:1", "a b:1", "-x:1"]
)
def test_bad_addresses(text: str) -> None:
    with pytest.raises(InvalidRequest):
        check_address(text)
    assert check_address("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)


@given(st.text(max_size=80))
def test_fuzz_address_parser_only_raises_invalid_request(text: str) -> None:
    try:
        host, port = check_address(text)
    except InvalidRequest:
        return
    assert host and 1 <= port <= 65535


def test_texts_and_groups() -> None:
    assert check_text("name", "  ГБД ФЛ  ") == "ГБД ФЛ"
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(InvalidRequest):
            check_text("name", bad)
    assert check_text("description", "", required=False) == ""
    assert check_group_id("group:tson-1") == "group:tson-1"
    for bad in ("tson", "group:", "group:Tson", "group:a b"):
        with pytest.raises(InvalidIdentifier):
            check_group_id(bad)


def test_audit_summaries_show_bytes_by_size_only() -> None:
    server = globalconf_pb2.SecurityServer(
        id=f"{GBDFL}/ss1", owner=GBDFL, address="127.0.0.1:1", tls_certificate=b"\x00" * 400
    )
    text = summary(server)
    assert json.loads(text)["tls_certificate"] == "<400 bytes>"
    assert summary(None) == ""
