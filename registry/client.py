"""Clients of the registry: `AdminClient` (admin port, mutual TLS) and `DiscoveryClient`
(public port, TLS).

Synchronous, for the CLI, tests and the demo; the security server downloads the
configuration with `govbus.globalconf.grpc_source` instead. A failed call
raises the typed govbus error the registry sent (or `SERVICE_UNAVAILABLE` when
it cannot be reached). Keys are handed to gRPC in memory, never written out
decrypted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor as pb_descriptor

from govbus.crypto.keys import load_private_key, private_key_pem
from govbus.errors import Internal, InvalidRequest, KeyInvalid, from_rpc_error
from govbus.pb.govbus.v1 import globalconf_pb2, globalconf_pb2_grpc, registry_pb2, registry_pb2_grpc
from registry.descriptors import descriptor_set_of

__all__ = ["AdminClient", "DiscoveryClient"]

T = TypeVar("T")

_CONSENT_POLICIES = {
    "required": globalconf_pb2.CONSENT_REQUIRED,
    "not-required": globalconf_pb2.CONSENT_NOT_REQUIRED,
    "consent-or-legal-basis": globalconf_pb2.CONSENT_OR_LEGAL_BASIS,
}
_STALE_MODES = {"fail-closed": globalconf_pb2.FAIL_CLOSED, "fail-open": globalconf_pb2.FAIL_OPEN}


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyInvalid(f"cannot read {what} {path}: {exc.strerror}") from None


class _Client:
    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._channel = channel
        self.timeout = timeout

    def _call(
        self,
        method: Callable[..., Any],
        request: Any,
        answer: type[T],
        timeout: float | None = None,
    ) -> T:
        try:
            result = method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        if not isinstance(result, answer):
            raise Internal(f"the registry answered with a {type(result).__name__}")
        return result

    def close(self) -> None:
        self._channel.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AdminClient(_Client):
    """The registry admin API, authenticated with an admin certificate."""

    def __init__(
        self,
        address: str,
        *,
        ca_pem: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        timeout: float = 15.0,
    ) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )
        super().__init__(grpc.secure_channel(address, credentials), timeout)
        self.address = address
        self._stub = registry_pb2_grpc.RegistryAdminStub(self._channel)

    @classmethod
    def from_files(
        cls, address: str, *, ca: Path, cert: Path, key: Path, passphrase: bytes, **kw: Any
    ) -> AdminClient:
        """From PEM files; the key file is encrypted with `passphrase`."""
        return cls(
            address,
            ca_pem=_read(ca, "CA certificate"),
            cert_pem=_read(cert, "admin certificate"),
            key_pem=private_key_pem(load_private_key(key, passphrase)),
            **kw,
        )

    @classmethod
    def operator(cls, ready: Mapping[str, Any], passphrase: bytes, **kw: Any) -> AdminClient:
        """The registry operator, from a `govbus registry serve` ready file's content."""
        return cls.from_files(
            ready["admin"],
            ca=Path(ready["ca_cert"]),
            cert=Path(ready["operator_cert"]),
            key=Path(ready["operator_key"]),
            passphrase=passphrase,
            **kw,
        )

    # --- calls --------------------------------------------------------------------------------

    def whoami(self) -> registry_pb2.WhoAmIResponse:
        return self._call(
            self._stub.WhoAmI, registry_pb2.WhoAmIRequest(), registry_pb2.WhoAmIResponse
        )

    def add_member(self, member_id: str, name: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.AddMember,
            registry_pb2.AddMemberRequest(id=member_id, name=name),
            registry_pb2.RegistryChange,
        )

    def add_subsystem(self, subsystem_id: str, name: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.AddSubsystem,
            registry_pb2.AddSubsystemRequest(id=subsystem_id, name=name),
            registry_pb2.RegistryChange,
        )

    def register_server(
        self,
        server_id: str,
        address: str,
        tls_csr: bytes,
        signing_csr: bytes,
        *,
        replace: bool = False,
    ) -> registry_pb2.RegisterServerResponse:
        return self._call(
            self._stub.RegisterServer,
            registry_pb2.RegisterServerRequest(
                id=server_id,
                address=address,
                tls_csr=tls_csr,
                signing_csr=signing_csr,
                replace=replace,
            ),
            registry_pb2.RegisterServerResponse,
        )

    def set_server_address(self, server_id: str, address: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.SetServerAddress,
            registry_pb2.SetServerAddressRequest(id=server_id, address=address),
            registry_pb2.RegistryChange,
        )

    def publish_service(
        self,
        service_id: str,
        grpc_service: str,
        descriptor_set: bytes | pb_descriptor.FileDescriptor,
        servers: Sequence[str],
        *,
        personal_data: bool = False,
        consent_policy: str | int = 0,
        stale_feed_mode: str | int = 0,
        deadline_ms: int = 0,
        max_bytes: int = 0,
        idempotent: Iterable[str] = (),
        fields: Mapping[str, Sequence[str]] | None = None,
        resilience: globalconf_pb2.BreakerSettings | None = None,
        description: str = "",
        replace: bool = False,
    ) -> registry_pb2.PublishServiceResponse:
        """Publish a service. `descriptor_set` may be the bytes of a FileDescriptorSet or a
        generated module's `DESCRIPTOR` (its imports are included). Policies take the CLI
        words (`required`, `not-required`, `consent-or-legal-basis`; `fail-closed`,
        `fail-open`) or the enum values."""
        if isinstance(descriptor_set, pb_descriptor.FileDescriptor):
            descriptor_set = descriptor_set_of(descriptor_set)
        request = registry_pb2.PublishServiceRequest(
            id=service_id,
            grpc_service=grpc_service,
            descriptor_set=descriptor_set,
            servers=list(servers),
            personal_data=personal_data,
            consent_policy=_enum(
                consent_policy, _CONSENT_POLICIES, globalconf_pb2.ConsentPolicy, "consent policy"
            ),
            stale_feed_mode=_enum(
                stale_feed_mode, _STALE_MODES, globalconf_pb2.StaleFeedMode, "stale-feed mode"
            ),
            default_deadline_ms=deadline_ms,
            max_message_bytes=max_bytes,
            idempotent_methods=list(idempotent),
            description=description,
            replace=replace,
        )
        for method, names in (fields or {}).items():
            request.fields[method].fields.extend(names)
        if resilience is not None:
            request.resilience.CopyFrom(resilience)
        return self._call(self._stub.PublishService, request, registry_pb2.PublishServiceResponse)

    def grant(self, service_id: str, client: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.GrantAccess,
            registry_pb2.AccessRightRequest(service=service_id, client=client),
            registry_pb2.RegistryChange,
        )

    def revoke(self, service_id: str, client: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.RevokeAccess,
            registry_pb2.AccessRightRequest(service=service_id, client=client),
            registry_pb2.RegistryChange,
        )

    def add_group(self, group_id: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.AddGroup,
            registry_pb2.AddGroupRequest(id=group_id),
            registry_pb2.RegistryChange,
        )

    def add_group_member(self, group_id: str, subsystem_id: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.AddGroupMember,
            registry_pb2.GroupMemberRequest(group=group_id, subsystem=subsystem_id),
            registry_pb2.RegistryChange,
        )

    def remove_group_member(self, group_id: str, subsystem_id: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.RemoveGroupMember,
            registry_pb2.GroupMemberRequest(group=group_id, subsystem=subsystem_id),
            registry_pb2.RegistryChange,
        )

    def add_legal_basis(
        self,
        client: str,
        service_id: str,
        law_reference: str,
        *,
        description: str = "",
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
        hidden_until: dt.datetime | None = None,
    ) -> registry_pb2.AddLegalBasisResponse:
        basis = globalconf_pb2.LegalBasis(
            client=client, service=service_id, law_reference=law_reference, description=description
        )
        for name, value in (
            ("valid_from", valid_from),
            ("valid_until", valid_until),
            ("hidden_until", hidden_until),
        ):
            if value is not None:
                getattr(basis, name).FromDatetime(value.astimezone(dt.UTC))
        return self._call(
            self._stub.AddLegalBasis,
            registry_pb2.AddLegalBasisRequest(basis=basis),
            registry_pb2.AddLegalBasisResponse,
        )

    def remove_legal_basis(self, basis_id: str) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.RemoveLegalBasis,
            registry_pb2.RemoveLegalBasisRequest(id=basis_id),
            registry_pb2.RegistryChange,
        )

    def revoke_certificate(self, serial_hex: str, reason: str = "") -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.RevokeCertificate,
            registry_pb2.RevokeCertificateRequest(serial_hex=serial_hex, reason=reason),
            registry_pb2.RegistryChange,
        )

    def set_consent_service(self, address: str, certificate: bytes) -> registry_pb2.RegistryChange:
        return self._call(
            self._stub.SetConsentService,
            registry_pb2.SetConsentServiceRequest(address=address, certificate=certificate),
            registry_pb2.RegistryChange,
        )

    def issue_admin_certificate(
        self, name: str, csr_pem: bytes
    ) -> registry_pb2.IssueAdminCertificateResponse:
        return self._call(
            self._stub.IssueAdminCertificate,
            registry_pb2.IssueAdminCertificateRequest(name=name, csr=csr_pem),
            registry_pb2.IssueAdminCertificateResponse,
        )

    def audit_trail(
        self, limit: int = 100, before_seq: int = 0
    ) -> list[registry_pb2.RegistryAuditEntry]:
        answer = self._call(
            self._stub.AuditTrail,
            registry_pb2.RegistryAuditTrailRequest(limit=limit, before_seq=before_seq),
            registry_pb2.RegistryAuditTrailResponse,
        )
        return list(answer.entries)

    def wait_published(self, revision: int = 0, timeout: float = 30.0) -> int:
        """Block until a configuration covering `revision` (0 = every change so far) is
        published; returns its version."""
        answer = self._call(
            self._stub.WaitPublished,
            registry_pb2.WaitPublishedRequest(revision=revision),
            registry_pb2.WaitPublishedResponse,
            timeout=timeout,
        )
        return int(answer.version)


def _enum(value: str | int, words: Mapping[str, int], enum: Any, what: str) -> str:
    """The enum value's proto name, from a CLI word or a number."""
    try:
        number = value if isinstance(value, int) else words[value]
        name: str = enum.Name(number)
    except (KeyError, ValueError):
        raise InvalidRequest(f"unknown {what} {value!r}; use one of {', '.join(words)}") from None
    return name


class DiscoveryClient(_Client):
    """The registry's public port: global configuration and discovery (no client certificate)."""

    def __init__(self, address: str, *, ca_pem: bytes, timeout: float = 15.0) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        super().__init__(grpc.secure_channel(address, credentials), timeout)
        self.address = address
        self._stub = registry_pb2_grpc.DiscoveryStub(self._channel)
        self._conf = globalconf_pb2_grpc.GlobalConfServiceStub(self._channel)

    @classmethod
    def from_files(cls, address: str, *, ca: Path, **kw: Any) -> DiscoveryClient:
        return cls(address, ca_pem=_read(ca, "CA certificate"), **kw)

    def signed_conf(self) -> bytes:
        """The signed global configuration as served (SignedGlobalConf bytes, unverified)."""
        answer = self._call(
            self._conf.Get, globalconf_pb2.GetGlobalConfRequest(), globalconf_pb2.SignedGlobalConf
        )
        data: bytes = answer.SerializeToString(deterministic=True)
        return data

    def members(self) -> list[globalconf_pb2.Member]:
        return list(
            self._call(
                self._stub.ListMembers,
                registry_pb2.DiscoverMembersRequest(),
                registry_pb2.DiscoverMembersResponse,
            ).members
        )

    def subsystems(self, member: str = "") -> list[globalconf_pb2.Subsystem]:
        answer = self._call(
            self._stub.ListSubsystems,
            registry_pb2.DiscoverSubsystemsRequest(member=member),
            registry_pb2.DiscoverSubsystemsResponse,
        )
        return list(answer.subsystems)

    def services(self, provider: str = "") -> list[globalconf_pb2.Service]:
        answer = self._call(
            self._stub.ListServices,
            registry_pb2.DiscoverServicesRequest(provider=provider),
            registry_pb2.DiscoverServicesResponse,
        )
        return list(answer.services)

    def service(self, service_id: str) -> globalconf_pb2.Service:
        answer = self._call(
            self._stub.GetService,
            registry_pb2.DiscoverServiceRequest(service=service_id),
            registry_pb2.DiscoverServiceResponse,
        )
        return answer.service

    def allowed(self, client: str) -> list[registry_pb2.AllowedService]:
        answer = self._call(
            self._stub.ListAllowed,
            registry_pb2.DiscoverAllowedRequest(client=client),
            registry_pb2.DiscoverAllowedResponse,
        )
        return list(answer.services)

    def descriptor(self, service_id: str) -> registry_pb2.DiscoverDescriptorResponse:
        return self._call(
            self._stub.GetDescriptor,
            registry_pb2.DiscoverDescriptorRequest(service=service_id),
            registry_pb2.DiscoverDescriptorResponse,
        )
