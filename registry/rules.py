"""Who may change what in the registry, and what a valid input looks like.

Two kinds of administrator exist, both authenticated by an admin certificate
(role `admin`) from the registry CA:

- the *registry operator* (certificate name `operator`) may change everything;
- a *member administrator* (certificate name = a member id `KZ/GOV/<BIN>`) may
  change only what belongs to that member: its subsystems, its security
  servers, the services its subsystems publish, who may call those services,
  the legal bases for them, and revoke its own certificates.

Everything else is `ACCESS_DENIED`. Pure functions and values: no I/O, no clock.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message

from govbus.errors import AccessDenied, InvalidIdentifier, InvalidRequest, Origin
from govbus.ids import MemberId

__all__ = [
    "GROUP_PREFIX",
    "OPERATOR",
    "AdminRole",
    "Caller",
    "check_address",
    "check_group_id",
    "check_text",
    "summary",
]

OPERATOR = "operator"
GROUP_PREFIX = "group:"
_GROUP = re.compile(r"group:[a-z0-9][a-z0-9-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")


class AdminRole(enum.Enum):
    OPERATOR = "operator"
    MEMBER_ADMIN = "member-admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated administrator."""

    name: str  # "operator" or the member id
    role: AdminRole
    serial: int
    member: MemberId | None = None

    @classmethod
    def from_certificate_name(cls, name: str, serial: int) -> Caller:
        if name == OPERATOR:
            return cls(name, AdminRole.OPERATOR, serial)
        try:
            member = MemberId.parse(name)
        except InvalidIdentifier:
            raise AccessDenied(
                f"admin certificate name {name!r} is neither {OPERATOR!r} nor a member id",
                origin=Origin.REGISTRY,
            ) from None
        return cls(str(member), AdminRole.MEMBER_ADMIN, serial, member)

    @property
    def is_operator(self) -> bool:
        return self.role is AdminRole.OPERATOR

    def require_operator(self, action: str) -> None:
        if not self.is_operator:
            raise AccessDenied(
                f"{self.name} may not {action}: only the registry operator may",
                origin=Origin.REGISTRY,
            )

    def require_member(self, member: MemberId | str, action: str) -> None:
        """Allow the operator, or the administrator of `member` itself."""
        if self.is_operator:
            return
        if str(member) != self.name:
            raise AccessDenied(
                f"{self.name} may not {action} of {member}: a member administrator acts only "
                "for its own member",
                origin=Origin.REGISTRY,
            )

    def owns_certificate_name(self, name: str) -> bool:
        """Whether a certificate issued to `name` belongs to this caller's member."""
        if self.is_operator:
            return True
        return name == self.name or name.startswith(self.name + "/")


def check_text(what: str, value: str, *, required: bool = True, limit: int = 200) -> str:
    """A display text: trimmed, bounded, no control characters."""
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise InvalidRequest(f"{what} is required")
    if len(text) > limit:
        raise InvalidRequest(f"{what} is {len(text)} characters long; at most {limit} allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidRequest(f"{what} must not contain control characters")
    return text


def check_group_id(value: str) -> str:
    if not isinstance(value, str) or not _GROUP.fullmatch(value):
        raise InvalidIdentifier(
            f"group id {value!r} must look like group:<name> (lower-case letters, digits, '-')"
        )
    return value


def check_address(value: str, *, listen: bool = False) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); a listen address may use port 0."""
    text = value.strip() if isinstance(value, str) else ""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise InvalidRequest(f"address {value!r} must look like host:port")
    port = int(port_text)
    if not (0 if listen else 1) <= port <= 65535:
        raise InvalidRequest(f"address {value!r}: port must be 1-65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidRequest(f"address {value!r}: {host} is not an IPv6 address") from None
        return host[1:-1], port
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not _HOST.fullmatch(host) or len(host) > 253:
            raise InvalidRequest(f"address {value!r}: {host!r} is not a host name") from None
    return host, port


def summary(message: Message | None) -> str:
    """A short, stable JSON text of a record for the audit trail (bytes shown by size)."""
    if message is None:
        return ""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    for descriptor in message.DESCRIPTOR.fields:
        if descriptor.type == descriptor.TYPE_BYTES and descriptor.name in data:
            value = getattr(message, descriptor.name)
            if isinstance(value, bytes):
                data[descriptor.name] = f"<{len(value)} bytes>"
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
