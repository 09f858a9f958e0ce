"""Build the global configuration from the registry's content: a pure function.

The snapshot holds everything a security server needs and nothing it does not
(descriptor sets stay in the registry, only their SHA-256 travels). Lists are
in id order so the same content always serializes to the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from govbus.pb.govbus.v1 import globalconf_pb2
from registry.store import RegistryContent

__all__ = ["ConfSettings", "build_global_conf"]


@dataclass(frozen=True, slots=True)
class ConfSettings:
    ttl: float = 600.0  # expires_at - generated_at, as X-Road
    instance: str = "KZ"
    registry_address: str = ""
    ca_certificates: tuple[bytes, ...] = ()  # DER
    witness_certificate: bytes = b""  # DER, role registry


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    whole = int(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def _serial_bytes(serial: int) -> bytes:
    return serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")


def build_global_conf(
    content: RegistryContent,
    settings: ConfSettings,
    *,
    version: int,
    now: float,
    extra_revoked: Iterable[int] = (),
) -> globalconf_pb2.GlobalConf:
    """The configuration of `content`; `extra_revoked` are serials revoked outside the
    registry store (directly in the CA's index with `govbus pki revoke`)."""
    revoked = list(content.revoked)
    known = {int.from_bytes(r.serial, "big") for r in revoked}
    for serial in sorted(set(extra_revoked) - known):
        revoked.append(
            globalconf_pb2.RevokedCertificate(
                serial=_serial_bytes(serial), reason="revoked in the CA index"
            )
        )
    conf = globalconf_pb2.GlobalConf(
        version=version,
        instance=settings.instance,
        generated_at=_timestamp(now),
        expires_at=_timestamp(now + settings.ttl),
        members=content.members,
        subsystems=content.subsystems,
        security_servers=content.servers,
        services=content.services,
        access_rights=content.access_rights,
        groups=content.groups,
        legal_bases=content.legal_bases,
        revoked=revoked,
        ca_certificates=settings.ca_certificates,
        consent_service_certificate=content.consent_service_certificate,
        consent_service_address=content.consent_service_address,
        witness_certificate=settings.witness_certificate,
        registry_address=settings.registry_address,
    )
    return conf
