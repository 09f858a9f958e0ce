"""`govbus registry serve`: the registry process and its two listeners.

- *public* (TLS, server authenticated): `GlobalConfService`, `Discovery`, health,
  reflection, and whatever extensions add (the audit-log witness);
- *admin* (mutual TLS, admin certificates from the registry CA): `RegistryAdmin`
  and health.

Extensions are the integration point for services the registry hosts without
owning them: a callable `(server, context) -> service names` that registers its
servicers on the public server, given a `RegistryContext` (the registry's
signing key and certificate, the CA, the configuration in force, the state
directory). `--extension module:function` names one on the command line;
`DEFAULT_EXTENSIONS` lists those loaded when their module is installed.

This module wires parts together; it holds no rules of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from cryptography import x509

from govbus.crypto.keys import Signer
from govbus.crypto.pki import certificate_der
from govbus.errors import ConfigInvalid
from govbus.globalconf import GlobalConfView
from govbus.pb.govbus.v1 import (
    globalconf_pb2,
    globalconf_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from govbus.serving import (
    DEFAULT_OPTIONS,
    add_health_and_reflection,
    run_until_signalled,
    write_ready_file,
)
from registry.admin import AdminServicer
from registry.confbuild import ConfSettings
from registry.operations import RegistryOperations
from registry.public import DiscoveryServicer, GlobalConfServicer
from registry.publisher import ConfPublisher
from registry.rules import check_address
from registry.state import RegistryKeys, RegistryPaths, init_state, load_keys
from registry.store import SqlRegistryStore, open_store

__all__ = [
    "DEFAULT_EXTENSIONS",
    "RegistryContext",
    "RegistryExtension",
    "ServeOptions",
    "load_extension",
    "serve",
]

log = logging.getLogger("govbus.registry")

#: Extensions loaded when their module can be imported ("module:function"): the
#: audit-log witness (audit_log.bus_witness, docs/adr/0002-audit-log.md).
DEFAULT_EXTENSIONS: tuple[str, ...] = ("audit_log.bus_witness:registry_witness",)

GLOBALCONF_SERVICE = globalconf_pb2.DESCRIPTOR.services_by_name["GlobalConfService"].full_name
DISCOVERY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["Discovery"].full_name
ADMIN_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryAdmin"].full_name


@dataclass(frozen=True)
class RegistryContext:
    """What an extension hosted by the registry gets."""

    state_dir: Path
    signer: Signer  # role registry: the key that signs the configuration and cosignatures
    signing_certificate: bytes  # DER
    ca_certificate: x509.Certificate
    current_conf: Callable[[], GlobalConfView]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The registry's own database: a postgresql:// URL (extensions keep their state
    # there, in a schema of their own) or None/a SQLite path (they use state_dir).
    database: str | None = None
    db_schema: str = "govbus_registry"


class RegistryExtension(Protocol):
    def __call__(self, server: grpc.aio.Server, context: RegistryContext) -> Sequence[str]:
        """Register servicers on the public server; return their full service names."""
        ...


def load_extension(spec: str) -> RegistryExtension:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigInvalid(f"extension {spec!r} must look like package.module:function")
    try:
        module = importlib.import_module(module_name)
        found: RegistryExtension = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigInvalid(f"cannot load registry extension {spec}: {exc}") from None
    return found


def _default_extensions() -> list[RegistryExtension]:
    loaded = []
    for spec in DEFAULT_EXTENSIONS:
        try:
            loaded.append(load_extension(spec))
        except ConfigInvalid as exc:
            log.info("extension %s not loaded: %s", spec, exc.message)
    return loaded


@dataclass(frozen=True)
class ServeOptions:
    state_dir: Path
    pki_dir: Path | None = None
    database: str | None = None  # postgresql://… or a SQLite path; default <state>/registry.db
    db_schema: str = "govbus_registry"
    listen: str = "127.0.0.1:0"
    admin_listen: str = "127.0.0.1:0"
    advertise: str | None = None  # the public address written into the configuration
    conf_ttl: float = 600.0
    min_interval: float = 2.0
    resign_interval: float = 60.0
    instance: str = "KZ"
    init: bool = False
    hosts: tuple[str, ...] = ()

    def check(self) -> None:
        check_address(self.listen, listen=True)
        check_address(self.admin_listen, listen=True)
        if self.advertise:
            check_address(self.advertise)
        if not 1.0 <= self.conf_ttl <= 7 * 24 * 3600:
            raise ConfigInvalid("--conf-ttl must be between 1 s and 7 days")
        if not 0.05 <= self.min_interval <= 3600:
            raise ConfigInvalid("--regen-interval must be between 0.05 s and 1 h")
        if not self.min_interval <= self.resign_interval < self.conf_ttl:
            raise ConfigInvalid(
                "--resign-interval must be at least --regen-interval and shorter than "
                "--conf-ttl, or copies would expire between two signings"
            )


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials) -> str:
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigInvalid(f"cannot listen on {address}: {exc}") from None
    if not port:
        raise ConfigInvalid(f"cannot listen on {address}")
    host = address.rpartition(":")[0]
    return f"{host}:{port}"


async def serve(
    options: ServeOptions,
    passphrase: bytes,
    *,
    ready_file: Path | None = None,
    extensions: Sequence[RegistryExtension] = (),
    stop: asyncio.Event | None = None,
) -> None:
    options.check()
    paths = RegistryPaths.of(options.state_dir, options.pki_dir)
    if options.init and not paths.initialised():
        init_state(options.state_dir, passphrase, pki_dir=options.pki_dir, hosts=options.hosts)
        log.info("initialised registry state in %s", options.state_dir)
    keys = load_keys(paths, passphrase)
    store = open_store(options.database or paths.database, schema=options.db_schema)
    try:
        await _serve(options, paths, keys, store, ready_file, extensions, stop)
    finally:
        store.close()


async def _serve(
    options: ServeOptions,
    paths: RegistryPaths,
    keys: RegistryKeys,
    store: SqlRegistryStore,
    ready_file: Path | None,
    extensions: Sequence[RegistryExtension],
    stop: asyncio.Event | None,
) -> None:
    tls_serial = x509.load_pem_x509_certificate(keys.tls_cert_pem).serial_number
    operations = RegistryOperations(
        store, keys.ca, protected_serials=(tls_serial, keys.signing_cert.serial_number)
    )
    public = grpc.aio.server(options=DEFAULT_OPTIONS)
    admin = grpc.aio.server(options=DEFAULT_OPTIONS)
    public_address = _bind(
        public,
        options.listen,
        grpc.ssl_server_credentials([(keys.tls_key_pem, keys.tls_cert_pem)]),
    )
    admin_address = _bind(
        admin,
        options.admin_listen,
        grpc.ssl_server_credentials(
            [(keys.tls_key_pem, keys.tls_cert_pem)],
            root_certificates=keys.ca_pem,
            require_client_auth=True,
        ),
    )
    settings = ConfSettings(
        ttl=options.conf_ttl,
        instance=options.instance,
        registry_address=options.advertise or public_address,
        ca_certificates=(certificate_der(keys.ca.certificate),),
        witness_certificate=keys.signing_cert_der,
    )
    publisher = ConfPublisher(
        store,
        keys.signer,
        keys.signing_cert_der,
        [keys.ca.certificate],
        settings,
        min_interval=options.min_interval,
        resign_interval=options.resign_interval,
        extra_revoked=keys.ca.revoked_serials,
    )
    await publisher.publish()
    publisher.start()

    globalconf_pb2_grpc.add_GlobalConfServiceServicer_to_server(
        GlobalConfServicer(publisher), public
    )
    registry_pb2_grpc.add_DiscoveryServicer_to_server(DiscoveryServicer(publisher), public)
    registry_pb2_grpc.add_RegistryAdminServicer_to_server(
        AdminServicer(operations, publisher), admin
    )
    context = RegistryContext(
        state_dir=options.state_dir,
        signer=keys.signer,
        signing_certificate=keys.signing_cert_der,
        ca_certificate=keys.ca.certificate,
        current_conf=lambda: publisher.current.view,
        database=options.database,
        db_schema=options.db_schema,
    )
    public_names = [GLOBALCONF_SERVICE, DISCOVERY_SERVICE]
    chosen: list[RegistryExtension] = []
    for extension in [*_default_extensions(), *extensions]:
        # A default also named with --extension is loaded once (same function object).
        if extension not in chosen:
            chosen.append(extension)
    for extension in chosen:
        public_names.extend(extension(public, context))
    public_health = add_health_and_reflection(public, public_names)
    add_health_and_reflection(admin, [ADMIN_SERVICE])
    await public.start()
    await admin.start()
    log.info("registry serving: public %s, admin %s", public_address, admin_address)
    write_ready_file(
        ready_file,
        {
            "public": public_address,
            "admin": admin_address,
            "pid": os.getpid(),
            "state": str(paths.root),
            "ca_cert": str(paths.ca_cert),
            "operator_cert": str(paths.operator_cert),
            "operator_key": str(paths.operator_key),
            "conf_version": publisher.current.version,
        },
    )

    async def stop_admin() -> None:
        await admin.stop(1.0)

    try:
        await run_until_signalled(
            public,
            health_servicer=public_health,
            stop=stop,
            on_stop=[stop_admin, publisher.stop, *context.on_stop],
        )
    finally:
        await publisher.stop()
