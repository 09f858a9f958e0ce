"""Every change an administrator can make to the registry, checked and recorded.

Each operation takes the authenticated `Caller`, validates its input completely
(ids through govbus.ids, descriptors through registry.descriptors, certificate
requests through the CA), checks the caller's rights (registry.rules), and
makes the change in one store transaction together with its audit-trail entry.
A refused request changes nothing.

Synchronous on purpose: the gRPC layer runs it in a worker thread. It never
talks to the network and never publishes the global configuration itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from govbus.crypto.pki import (
    CertificateAuthority,
    Role,
    TrustAnchor,
    certificate_der,
    load_certificate,
)
from govbus.errors import (
    AlreadyExists,
    CertificateInvalid,
    FailedPrecondition,
    GovbusError,
    InvalidRequest,
    NotFound,
    Origin,
)
from govbus.ids import MemberId, ServerId, ServiceId, SubsystemId
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.descriptors import read_contract
from registry.rules import (
    GROUP_PREFIX,
    OPERATOR,
    Caller,
    check_address,
    check_group_id,
    check_text,
    summary,
)
from registry.state import DEFAULT_HOSTS
from registry.store import AuditEntry, RegistryStore, RegistryWriter

__all__ = ["Change", "RegistryOperations", "ServerRegistration", "ServiceSettings"]

DEFAULT_DEADLINE_MS = 5_000
MAX_DEADLINE_MS = 600_000
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # what govbus servers accept (serving.DEFAULT_OPTIONS)
_PERSONAL_POLICIES = (globalconf_pb2.CONSENT_REQUIRED, globalconf_pb2.CONSENT_OR_LEGAL_BASIS)


@dataclass(frozen=True, slots=True)
class Change:
    revision: int
    summary: str


@dataclass(frozen=True, slots=True)
class ServerRegistration:
    server: globalconf_pb2.SecurityServer
    tls_certificate: x509.Certificate
    signing_certificate: x509.Certificate
    revision: int


@dataclass(frozen=True)
class ServiceSettings:
    """What a provider says about a service when publishing it."""

    service_id: str
    grpc_service: str
    descriptor_set: bytes
    servers: Sequence[str]
    personal_data: bool = False
    consent_policy: int = globalconf_pb2.CONSENT_POLICY_UNSPECIFIED
    stale_feed_mode: int = globalconf_pb2.STALE_FEED_MODE_UNSPECIFIED
    default_deadline_ms: int = 0
    max_message_bytes: int = 0
    idempotent_methods: Sequence[str] = ()
    fields: Mapping[str, Sequence[str]] | None = None
    resilience: globalconf_pb2.BreakerSettings | None = None
    description: str = ""
    replace: bool = False


def _client_error(cls: type[GovbusError], message: str) -> GovbusError:
    return cls(message, origin=Origin.CLIENT)


class RegistryOperations:
    def __init__(
        self,
        store: RegistryStore,
        ca: CertificateAuthority,
        *,
        protected_serials: Sequence[int] = (),
    ) -> None:
        self.store = store
        self.ca = ca
        # The registry's own TLS and signing certificates: revoking them would stop the bus.
        self._protected = frozenset(protected_serials)
        self._ca_lock = threading.Lock()  # the CA index files are read-modify-write

    # --- who is calling ---------------------------------------------------------------------

    def anchor(self) -> TrustAnchor:
        """The CA with the revocations in force now (admin certificates are checked against it)."""
        with self.store.read() as reader:
            revoked = reader.revoked_serials()
        with self._ca_lock:
            # Also what was revoked straight in the CA index (`govbus pki revoke`).
            revoked |= self.ca.revoked_serials()
        return TrustAnchor([self.ca.certificate], revoked)

    # --- members and subsystems -------------------------------------------------------------

    def add_member(self, caller: Caller, member_id: str, name: str) -> Change:
        caller.require_operator("add members")
        member = str(MemberId.parse(member_id))
        record = globalconf_pb2.Member(id=member, name=check_text("member name", name))
        with self.store.write(caller.name) as w:
            if w.member(member) is not None:
                raise _client_error(AlreadyExists, f"member {member} is already registered")
            w.put_member(record)
            w.note("member.add", member, member, "", summary(record))
        return Change(w.revision, f"member {member} added")

    def add_subsystem(self, caller: Caller, subsystem_id: str, name: str) -> Change:
        subsystem = SubsystemId.parse(subsystem_id)
        caller.require_member(subsystem.member, "add subsystems")
        record = globalconf_pb2.Subsystem(
            id=str(subsystem), name=check_text("subsystem name", name)
        )
        with self.store.write(caller.name) as w:
            self._require_member(w, subsystem.member)
            if w.subsystem(record.id) is not None:
                raise _client_error(AlreadyExists, f"subsystem {record.id} is already registered")
            w.put_subsystem(record, str(subsystem.member))
            w.note("subsystem.add", record.id, str(subsystem.member), "", summary(record))
        return Change(w.revision, f"subsystem {record.id} added")

    # --- security servers -------------------------------------------------------------------

    def register_server(
        self,
        caller: Caller,
        server_id: str,
        address: str,
        tls_csr: bytes,
        signing_csr: bytes,
        *,
        replace: bool = False,
    ) -> ServerRegistration:
        server = ServerId.parse(server_id)
        caller.require_member(server.member, "register security servers")
        host, _ = check_address(address)
        tls_request = _load_csr(tls_csr, "TLS")
        if not isinstance(tls_request.public_key(), ec.EllipticCurvePublicKey):
            raise InvalidRequest("the TLS certificate request must be for a P-256 key")
        _load_csr(signing_csr, "signing")
        hosts = list(dict.fromkeys([*DEFAULT_HOSTS, host]))
        with self.store.write(caller.name) as w:
            self._require_member(w, server.member)
            before = w.server(str(server))
            if before is not None and not replace:
                raise _client_error(
                    AlreadyExists,
                    f"security server {server} is already registered; pass replace to re-key it",
                )
            with self._ca_lock:
                tls_cert = self.ca.issue_from_csr(Role.SERVER, str(server), tls_csr, hosts=hosts)
                signing_cert = self.ca.issue_from_csr(Role.SIGNING, str(server.member), signing_csr)
            record = globalconf_pb2.SecurityServer(
                id=str(server),
                owner=str(server.member),
                address=address.strip(),
                tls_certificate=certificate_der(tls_cert),
                signing_certificate=certificate_der(signing_cert),
            )
            w.put_server(record, certificate_der(signing_cert))
            w.note(
                "server.register",
                record.id,
                record.owner,
                summary(before),
                summary(record) + f" tls_serial={tls_cert.serial_number:x} signing_serial="
                f"{signing_cert.serial_number:x}",
            )
        return ServerRegistration(record, tls_cert, signing_cert, w.revision)

    def set_server_address(self, caller: Caller, server_id: str, address: str) -> Change:
        server = ServerId.parse(server_id)
        caller.require_member(server.member, "change security servers")
        check_address(address)
        with self.store.write(caller.name) as w:
            before = w.server(str(server))
            if before is None:
                raise _client_error(NotFound, f"security server {server} is not registered")
            record = globalconf_pb2.SecurityServer()
            record.CopyFrom(before)
            record.address = address.strip()
            w.put_server(record, w.server_signing_certificate(record.id))
            w.note("server.address", record.id, record.owner, summary(before), summary(record))
        return Change(w.revision, f"security server {server} now at {record.address}")

    # --- services -------------------------------------------------------------------------

    def publish_service(
        self, caller: Caller, spec: ServiceSettings
    ) -> tuple[globalconf_pb2.Service, int]:
        service_id = ServiceId.parse(spec.service_id)
        caller.require_member(service_id.member, "publish services")
        contract = read_contract(
            spec.descriptor_set,
            spec.grpc_service,
            idempotent=spec.idempotent_methods,
            fields=spec.fields,
        )
        policy, stale = _policies(spec)
        deadline, max_bytes = _limits(spec)
        resilience = globalconf_pb2.BreakerSettings()
        if spec.resilience is not None:
            resilience.CopyFrom(spec.resilience)
            _check_breaker(resilience)
        servers = list(dict.fromkeys(spec.servers))
        if not servers:
            raise InvalidRequest("name at least one security server that serves the service")
        record = globalconf_pb2.Service(
            id=str(service_id),
            grpc_service=contract.grpc_service,
            methods=contract.methods,
            personal_data=spec.personal_data,
            consent_policy=policy,  # type: ignore[arg-type]
            stale_feed_mode=stale,  # type: ignore[arg-type]
            default_deadline_ms=deadline,
            max_message_bytes=max_bytes,
            servers=[str(ServerId.parse(s)) for s in servers],
            descriptor_sha256=contract.sha256,
            resilience=resilience,
            description=check_text("description", spec.description, required=False, limit=1000),
        )
        member = str(service_id.member)
        with self.store.write(caller.name) as w:
            if w.subsystem(str(service_id.subsystem)) is None:
                raise _client_error(
                    NotFound, f"subsystem {service_id.subsystem} is not registered; add it first"
                )
            for server_id in record.servers:
                server = w.server(server_id)
                if server is None:
                    raise _client_error(NotFound, f"security server {server_id} is not registered")
                if not caller.is_operator and server.owner != member:
                    raise _client_error(
                        InvalidRequest,
                        f"security server {server_id} belongs to {server.owner}, not {member}; "
                        "only the registry operator may publish on another member's server",
                    )
            before = w.service(record.id)
            if before is not None and not spec.replace:
                raise _client_error(
                    AlreadyExists,
                    f"service {record.id} is already published; pass replace to update it",
                )
            w.put_service(record, str(service_id.subsystem), member, contract.descriptor_set)
            w.note("service.publish", record.id, member, summary(before), summary(record))
        return record, w.revision

    # --- access rights and groups --------------------------------------------------------

    def _client_exists(self, w: RegistryWriter, client: str) -> str:
        if client.startswith(GROUP_PREFIX):
            check_group_id(client)
            if w.group(client) is None:
                raise _client_error(NotFound, f"group {client} does not exist")
            return client
        subsystem = str(SubsystemId.parse(client))
        if w.subsystem(subsystem) is None:
            raise _client_error(NotFound, f"client subsystem {subsystem} is not registered")
        return subsystem

    def _service_of(self, w: RegistryWriter, service_id: str) -> globalconf_pb2.Service:
        service = w.service(service_id)
        if service is None:
            raise _client_error(NotFound, f"service {service_id} is not published")
        return service

    def grant_access(self, caller: Caller, service_id: str, client: str) -> Change:
        service = ServiceId.parse(service_id)
        caller.require_member(service.member, "grant access to the services")
        with self.store.write(caller.name) as w:
            self._service_of(w, str(service))
            client_id = self._client_exists(w, client)
            if w.has_access(str(service), client_id):
                raise _client_error(AlreadyExists, f"{client_id} already has access to {service}")
            w.add_access(str(service), client_id)
            w.note("access.grant", f"{service} <- {client_id}", str(service.member), "", "granted")
        return Change(w.revision, f"{client_id} may call {service}")

    def revoke_access(self, caller: Caller, service_id: str, client: str) -> Change:
        service = ServiceId.parse(service_id)
        caller.require_member(service.member, "revoke access to the services")
        client_id = client if client.startswith(GROUP_PREFIX) else str(SubsystemId.parse(client))
        with self.store.write(caller.name) as w:
            if not w.has_access(str(service), client_id):
                raise _client_error(NotFound, f"{client_id} has no access right to {service}")
            w.remove_access(str(service), client_id)
            w.note("access.revoke", f"{service} <- {client_id}", str(service.member), "granted", "")
        return Change(w.revision, f"{client_id} may no longer call {service}")

    def add_group(self, caller: Caller, group_id: str) -> Change:
        caller.require_operator("add groups")
        group = check_group_id(group_id)
        with self.store.write(caller.name) as w:
            if w.group(group) is not None:
                raise _client_error(AlreadyExists, f"group {group} already exists")
            w.add_group(group)
            w.note("group.add", group, "", "", group)
        return Change(w.revision, f"group {group} added")

    def add_group_member(self, caller: Caller, group_id: str, subsystem_id: str) -> Change:
        caller.require_operator("change groups")
        group = check_group_id(group_id)
        subsystem = str(SubsystemId.parse(subsystem_id))
        with self.store.write(caller.name) as w:
            before = w.group(group)
            if before is None:
                raise _client_error(NotFound, f"group {group} does not exist")
            if w.subsystem(subsystem) is None:
                raise _client_error(NotFound, f"subsystem {subsystem} is not registered")
            if subsystem in before.members:
                raise _client_error(AlreadyExists, f"{subsystem} is already in {group}")
            w.add_group_member(group, subsystem)
            w.note("group.add-member", group, "", summary(before), summary(w.group(group)))
        return Change(w.revision, f"{subsystem} added to {group}")

    def remove_group_member(self, caller: Caller, group_id: str, subsystem_id: str) -> Change:
        caller.require_operator("change groups")
        group = check_group_id(group_id)
        subsystem = str(SubsystemId.parse(subsystem_id))
        with self.store.write(caller.name) as w:
            before = w.group(group)
            if before is None or subsystem not in before.members:
                raise _client_error(NotFound, f"{subsystem} is not in {group}")
            w.remove_group_member(group, subsystem)
            w.note("group.remove-member", group, "", summary(before), summary(w.group(group)))
        return Change(w.revision, f"{subsystem} removed from {group}")

    # --- legal bases ------------------------------------------------------------------------

    def add_legal_basis(
        self, caller: Caller, basis: globalconf_pb2.LegalBasis
    ) -> tuple[globalconf_pb2.LegalBasis, int]:
        service = ServiceId.parse(basis.service)
        caller.require_member(service.member, "register legal bases for the services")
        client = str(SubsystemId.parse(basis.client))
        record = globalconf_pb2.LegalBasis()
        record.CopyFrom(basis)
        record.id = f"lb-{uuid.uuid4().hex[:16]}"
        record.client = client
        record.service = str(service)
        record.law_reference = check_text("law reference", basis.law_reference, limit=500)
        record.description = check_text(
            "description", basis.description, required=False, limit=1000
        )
        if (
            record.HasField("valid_from")
            and record.HasField("valid_until")
            and record.valid_until.ToNanoseconds() <= record.valid_from.ToNanoseconds()
        ):
            raise InvalidRequest("a legal basis must end after it starts (valid_until)")
        with self.store.write(caller.name) as w:
            self._service_of(w, record.service)
            if w.subsystem(client) is None:
                raise _client_error(NotFound, f"client subsystem {client} is not registered")
            w.put_legal_basis(record)
            w.note("legal-basis.add", record.id, str(service.member), "", summary(record))
        return record, w.revision

    def remove_legal_basis(self, caller: Caller, basis_id: str) -> Change:
        with self.store.write(caller.name) as w:
            before = w.legal_basis(basis_id)
            if before is None:
                caller.require_operator("remove unknown legal bases")
                raise _client_error(NotFound, f"legal basis {basis_id!r} does not exist")
            member = ServiceId.parse(before.service).member
            caller.require_member(member, "remove legal bases for the services")
            w.remove_legal_basis(basis_id)
            w.note("legal-basis.remove", basis_id, str(member), summary(before), "")
        return Change(w.revision, f"legal basis {basis_id} removed")

    # --- certificates -----------------------------------------------------------------------

    def revoke_certificate(self, caller: Caller, serial_hex: str, reason: str) -> Change:
        try:
            serial = int(serial_hex.strip().lower().removeprefix("0x"), 16)
        except ValueError:
            raise InvalidRequest(f"serial {serial_hex!r} is not a hexadecimal number") from None
        why = check_text("reason", reason or "unspecified", limit=200)
        with self._ca_lock:
            issued = {int(e["serial"], 16): e for e in self.ca.issued()}
        entry = issued.get(serial)
        if entry is None:
            raise _client_error(NotFound, f"certificate {serial:x} was not issued by this registry")
        if not caller.owns_certificate_name(entry["name"]):
            caller.require_member(entry["name"], "revoke certificates")
        if serial in self._protected:
            raise FailedPrecondition(
                f"certificate {serial:x} is the registry's own; issue and install a new one "
                "before revoking it",
                origin=Origin.CLIENT,
            )
        serial_bytes = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
        record = globalconf_pb2.RevokedCertificate(serial=serial_bytes, reason=why)
        record.revoked_at.FromDatetime(dt.datetime.now(dt.UTC))
        member = _member_of_name(entry["name"])
        with self.store.write(caller.name) as w:
            if w.revocation(serial_bytes) is not None:
                raise _client_error(AlreadyExists, f"certificate {serial:x} is already revoked")
            w.add_revocation(record)
            w.note(
                "certificate.revoke",
                f"{serial:x}",
                member,
                f"{entry['role']} {entry['name']}",
                f"revoked: {why}",
            )
            with self._ca_lock:
                self.ca.revoke(serial, why)
        return Change(w.revision, f"certificate {serial:x} ({entry['name']}) revoked")

    def issue_admin_certificate(
        self, caller: Caller, name: str, csr: bytes
    ) -> tuple[x509.Certificate, int]:
        caller.require_operator("issue admin certificates")
        if name != OPERATOR:
            name = str(MemberId.parse(name))
        _load_csr(csr, "admin")
        with self.store.write(caller.name) as w:
            if name != OPERATOR:
                self._require_member(w, MemberId.parse(name))
            with self._ca_lock:
                cert = self.ca.issue_from_csr(Role.ADMIN, name, csr)
            w.note(
                "admin-certificate.issue",
                name,
                "" if name == OPERATOR else name,
                "",
                f"serial={cert.serial_number:x}",
            )
        return cert, w.revision

    # --- bus-wide settings -----------------------------------------------------------------

    def set_consent_service(self, caller: Caller, address: str, certificate: bytes) -> Change:
        caller.require_operator("set the consent service")
        check_address(address)
        try:
            cert = load_certificate(certificate)
            identity = TrustAnchor([self.ca.certificate]).validate(cert, role=Role.CONSENT)
        except GovbusError as exc:
            raise InvalidRequest(
                f"the consent service certificate is not usable: {exc.code}: {exc.message} "
                "(issue it with `govbus pki issue consent …` from the registry CA)"
            ) from None
        der = certificate_der(cert)
        with self.store.write(caller.name) as w:
            before_address = (w.setting("consent_service_address") or b"").decode()
            before_cert = w.setting("consent_service_certificate") or b""
            w.set_setting("consent_service_address", address.strip().encode())
            w.set_setting("consent_service_certificate", der)
            w.note(
                "consent-service.set",
                "consent-service",
                "",
                f"{before_address} cert={_fingerprint(before_cert)}",
                f"{address.strip()} cert={_fingerprint(der)} ({identity.name})",
            )
        return Change(w.revision, f"consent service at {address.strip()}")

    # --- reading ----------------------------------------------------------------------------

    def audit_trail(self, caller: Caller, limit: int, before_seq: int) -> list[AuditEntry]:
        member = None if caller.is_operator else caller.name
        return self.store.audit_trail(limit, before_seq, member)

    # --- helpers -----------------------------------------------------------------------------

    def _require_member(self, w: RegistryWriter, member: MemberId) -> None:
        if w.member(str(member)) is None:
            raise _client_error(
                NotFound, f"member {member} is not registered; the operator adds it first"
            )


def _load_csr(data: bytes, what: str) -> x509.CertificateSigningRequest:
    if not data:
        raise InvalidRequest(f"the {what} certificate request is missing")
    try:
        csr = x509.load_pem_x509_csr(data)
        valid = csr.is_signature_valid
    except (ValueError, TypeError):
        raise CertificateInvalid(f"the {what} certificate request is not a valid PEM CSR") from None
    if not valid:
        raise CertificateInvalid(f"the {what} certificate request's signature does not verify")
    return csr


def _policies(spec: ServiceSettings) -> tuple[int, int]:
    """The consent policy and stale-feed mode, defaulted and consistent with personal data."""
    policy = spec.consent_policy or (
        globalconf_pb2.CONSENT_REQUIRED
        if spec.personal_data
        else globalconf_pb2.CONSENT_NOT_REQUIRED
    )
    if policy not in globalconf_pb2.ConsentPolicy.values():
        raise InvalidRequest(f"unknown consent policy {policy}")
    if spec.personal_data and policy not in _PERSONAL_POLICIES:
        raise InvalidRequest(
            "a service that returns personal data must require consent "
            "(consent policy required or consent-or-legal-basis)"
        )
    if not spec.personal_data and policy in _PERSONAL_POLICIES:
        raise InvalidRequest(
            "a service that returns no personal data cannot require consent; "
            "pass --personal-data if it does return personal data"
        )
    stale = spec.stale_feed_mode or globalconf_pb2.FAIL_CLOSED
    if stale not in globalconf_pb2.StaleFeedMode.values():
        raise InvalidRequest(f"unknown stale-feed mode {stale}")
    return policy, stale


def _limits(spec: ServiceSettings) -> tuple[int, int]:
    """The default deadline (ms) and maximum message size (bytes), defaulted and bounded."""
    deadline = spec.default_deadline_ms or DEFAULT_DEADLINE_MS
    if not 1 <= deadline <= MAX_DEADLINE_MS:
        raise InvalidRequest(f"default deadline must be 1-{MAX_DEADLINE_MS} ms, got {deadline}")
    max_bytes = spec.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    if not 1 <= max_bytes <= MAX_MESSAGE_BYTES:
        raise InvalidRequest(
            f"maximum message size must be 1-{MAX_MESSAGE_BYTES} bytes, got {max_bytes}"
        )
    return deadline, max_bytes


def _check_breaker(settings: globalconf_pb2.BreakerSettings) -> None:
    for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
        value = getattr(settings, name)
        if not 0.0 <= value <= 1.0:
            raise InvalidRequest(f"breaker {name} must be between 0 and 1, got {value}")
    if (
        settings.minimum_calls
        and settings.window_size
        and (settings.minimum_calls > settings.window_size)
    ):
        raise InvalidRequest("breaker minimum_calls cannot exceed window_size")


def _member_of_name(name: str) -> str:
    parts = name.split("/")
    if len(parts) >= 3:
        try:
            return str(MemberId.parse("/".join(parts[:3])))
        except GovbusError:
            return ""
    return ""


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16] if der else "-"
