"""The registry's commands: `govbus registry|member|subsystem|server|service|access|group|
legal-basis|cert|conf|discover …`.

Admin commands reach the registry's admin port with an admin certificate:
`--registry host:port --cert F --key F --ca F` or `$GOVBUS_REGISTRY_ADMIN`,
`$GOVBUS_ADMIN_CERT`, `$GOVBUS_ADMIN_KEY`, `$GOVBUS_CA`; the key's passphrase comes
from `$GOVBUS_KEY_PASSPHRASE` or `--passphrase-file`. Public commands (`conf`,
`discover`) need only the public address (`$GOVBUS_REGISTRY`) and the CA.

Commands print what changed; errors end as `error: CODE (ORIGIN): message`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.table import Table

from govbus.crypto.keys import atomic_write, passphrase_from_env
from govbus.crypto.pki import load_certificate
from govbus.errors import ConfigInvalid, InvalidRequest
from govbus.globalconf import GlobalConfView, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.bootstrap import make_server_keys, request_admin_certificate
from registry.client import AdminClient, DiscoveryClient

__all__ = ["register"]

# Outside a terminal (pipes, logs, tests) keep ids whole instead of wrapping at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)

registry_app = typer.Typer(help="Run and administer the central registry.", no_args_is_help=True)
member_app = typer.Typer(help="Members of the bus (operator).", no_args_is_help=True)
subsystem_app = typer.Typer(help="Subsystems of a member.", no_args_is_help=True)
server_app = typer.Typer(help="Security servers: keys, registration.", no_args_is_help=True)
service_app = typer.Typer(help="Services published by provider subsystems.", no_args_is_help=True)
access_app = typer.Typer(help="Who may call which service.", no_args_is_help=True)
group_app = typer.Typer(help="Groups of client subsystems (operator).", no_args_is_help=True)
legal_app = typer.Typer(help="Legal bases for access without consent.", no_args_is_help=True)
cert_app = typer.Typer(help="Certificates issued by the registry CA.", no_args_is_help=True)
conf_app = typer.Typer(help="The signed global configuration.", no_args_is_help=True)
discover_app = typer.Typer(help="What is published, for consumer developers.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
    app.add_typer(member_app, name="member")
    app.add_typer(subsystem_app, name="subsystem")
    app.add_typer(server_app, name="server")
    app.add_typer(service_app, name="service")
    app.add_typer(access_app, name="access")
    app.add_typer(group_app, name="group")
    app.add_typer(legal_app, name="legal-basis")
    app.add_typer(cert_app, name="cert")
    app.add_typer(conf_app, name="conf")
    app.add_typer(discover_app, name="discover")


# --- shared options ---------------------------------------------------------------------------

AdminAddress = Annotated[
    str,
    typer.Option(
        "--registry", envvar="GOVBUS_REGISTRY_ADMIN", help="registry admin port host:port"
    ),
]
AdminCert = Annotated[
    Path, typer.Option("--cert", envvar="GOVBUS_ADMIN_CERT", help="admin certificate (PEM)")
]
AdminKey = Annotated[
    Path, typer.Option("--key", envvar="GOVBUS_ADMIN_KEY", help="admin key (encrypted PEM)")
]
CaFile = Annotated[
    Path, typer.Option("--ca", envvar="GOVBUS_CA", help="registry CA certificate (PEM)")
]
PassFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="file with the key passphrase (default: $GOVBUS_KEY_PASSPHRASE)"
    ),
]
PublicAddress = Annotated[
    str, typer.Option("--registry", envvar="GOVBUS_REGISTRY", help="registry public port host:port")
]


def _admin(
    registry: str, cert: Path, key: Path, ca: Path, passphrase_file: Path | None
) -> AdminClient:
    return AdminClient.from_files(
        registry, ca=ca, cert=cert, key=key, passphrase=passphrase_from_env(passphrase_file)
    )


def _discovery(registry: str, ca: Path) -> DiscoveryClient:
    return DiscoveryClient.from_files(registry, ca=ca)


def _changed(summary: str, revision: int) -> None:
    console.print(f"{summary} [dim](revision {revision})[/]", highlight=False)


def _date(text: str | None, what: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{what} {text!r} is not an ISO date (2026-12-31 or with time)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _ts(value: timestamp_pb2.Timestamp) -> str:
    if not (value.seconds or value.nanos):
        return ""
    return f"{value.ToDatetime(tzinfo=dt.UTC):%Y-%m-%d %H:%M}"


# --- registry ---------------------------------------------------------------------------------


@registry_app.command("init")
def init(
    state: Annotated[Path, typer.Option(help="state directory")],
    pki: Annotated[Path | None, typer.Option(help="CA directory (default STATE/pki)")] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="extra DNS name or IP of the registry (repeatable)")
    ] = None,
    passphrase_file: PassFile = None,
) -> None:
    """Create the registry's CA (unless --pki has one), keys and the operator's admin key."""
    from registry.state import init_state

    paths = init_state(state, passphrase_from_env(passphrase_file), pki_dir=pki, hosts=host or ())
    console.print(f"registry initialised in {paths.root}")
    console.print(f"CA certificate:        {paths.ca_cert}")
    console.print(f"operator admin cert:   {paths.operator_cert}")
    console.print(f"operator admin key:    {paths.operator_key}")


@registry_app.command("serve")
def serve(
    state: Annotated[Path, typer.Option(help="state directory")],
    pki: Annotated[Path | None, typer.Option(help="CA directory (default STATE/pki)")] = None,
    db: Annotated[
        str | None, typer.Option(help="postgresql://… or a SQLite file (default STATE/registry.db)")
    ] = None,
    db_schema: Annotated[str, typer.Option(help="PostgreSQL schema")] = "govbus_registry",
    listen: Annotated[str, typer.Option(help="public port (TLS)")] = "127.0.0.1:0",
    admin_listen: Annotated[str, typer.Option(help="admin port (mutual TLS)")] = "127.0.0.1:0",
    advertise: Annotated[
        str | None, typer.Option(help="public address written into the configuration")
    ] = None,
    conf_ttl: Annotated[float, typer.Option(help="seconds a configuration stays valid")] = 600.0,
    regen_interval: Annotated[
        float, typer.Option(help="at most one new version per this many seconds")
    ] = 2.0,
    resign_interval: Annotated[
        float, typer.Option(help="re-sign (new version) at least this often, seconds")
    ] = 60.0,
    init: Annotated[bool, typer.Option("--init", help="initialise STATE if it is empty")] = False,
    host: Annotated[
        list[str] | None, typer.Option(help="extra DNS name or IP for --init (repeatable)")
    ] = None,
    extension: Annotated[
        list[str] | None, typer.Option(help="module:function adding public services (repeatable)")
    ] = None,
    ready_file: Annotated[
        Path | None, typer.Option(help="write the bound addresses here when ready")
    ] = None,
    passphrase_file: PassFile = None,
) -> None:
    """Run the registry until SIGTERM."""
    from registry.server import ServeOptions, load_extension
    from registry.server import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = ServeOptions(
        state_dir=state,
        pki_dir=pki,
        database=db,
        db_schema=db_schema,
        listen=listen,
        admin_listen=admin_listen,
        advertise=advertise,
        conf_ttl=conf_ttl,
        min_interval=regen_interval,
        resign_interval=resign_interval,
        init=init,
        hosts=tuple(host or ()),
    )
    extensions = [load_extension(spec) for spec in extension or ()]
    asyncio.run(
        run_server(
            options,
            passphrase_from_env(passphrase_file),
            ready_file=ready_file,
            extensions=extensions,
        )
    )


@registry_app.command("whoami")
def whoami(
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Who the registry takes your admin certificate for."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.whoami()
    console.print(f"{answer.name} ({answer.role})")


@registry_app.command("wait-published")
def wait_published(
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    timeout: Annotated[float, typer.Option(help="seconds to wait at most")] = 30.0,
    passphrase_file: PassFile = None,
) -> None:
    """Wait until every change made so far is in a published configuration (for scripts)."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        version = admin.wait_published(timeout=timeout)
    console.print(f"global configuration v{version} covers every change so far")


@registry_app.command("set-consent-service")
def set_consent_service(
    address: Annotated[str, typer.Option(help="consent service host:port")],
    consent_cert: Annotated[
        Path, typer.Option("--consent-cert", help="its certificate (PEM, role consent)")
    ],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Carry the consent service's address and certificate in the configuration (operator)."""
    data = _read_file(consent_cert, "consent service certificate")
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.set_consent_service(address, data)
    _changed(answer.summary, answer.revision)


@registry_app.command("admin-cert")
def admin_cert(
    name: Annotated[str, typer.Argument(help='"operator" or a member id KZ/GOV/<BIN>')],
    out: Annotated[Path, typer.Option(help="writes OUT.key.pem (encrypted) and OUT.cert.pem")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Issue an admin certificate (operator): for another operator or a member administrator."""
    passphrase = passphrase_from_env(passphrase_file)
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        key_path, cert_path = request_admin_certificate(admin, name, out, passphrase)
    console.print(f"admin certificate for {name}: {cert_path} (key {key_path})")


@registry_app.command("audit-trail")
def audit_trail(
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    limit: Annotated[int, typer.Option(help="how many entries")] = 50,
    before: Annotated[int, typer.Option(help="only entries before this sequence number")] = 0,
    passphrase_file: PassFile = None,
) -> None:
    """Every change made to the registry: who, what, when, before and after."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        entries = admin.audit_trail(limit, before)
    table = Table("seq", "when (UTC)", "who", "action", "target", "before", "after", "rev")
    for entry in entries:
        table.add_row(
            str(entry.seq),
            f"{entry.at.ToDatetime(tzinfo=dt.UTC):%Y-%m-%d %H:%M:%S}",
            entry.actor,
            entry.action,
            entry.target,
            _clip(entry.before),
            _clip(entry.after),
            str(entry.revision),
        )
    console.print(table)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- members, subsystems, servers ----------------------------------------------------------------


@member_app.command("add")
def member_add(
    member_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>")],
    name: Annotated[str, typer.Option(help="the organisation's name")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Register a member (operator)."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.add_member(member_id, name)
    _changed(answer.summary, answer.revision)


@subsystem_app.command("add")
def subsystem_add(
    subsystem_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<code>")],
    name: Annotated[str, typer.Option(help="what the subsystem is")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Register a subsystem of a member."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.add_subsystem(subsystem_id, name)
    _changed(answer.summary, answer.revision)


@server_app.command("csr")
def server_csr(
    server_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<server code>")],
    out: Annotated[Path, typer.Option(help="directory for the keys and requests")],
    passphrase_file: PassFile = None,
) -> None:
    """Make a security server's TLS and signing keys (encrypted) and their requests, locally."""
    files = make_server_keys(server_id, out, passphrase_from_env(passphrase_file))
    console.print(f"keys: {files.tls_key}, {files.signing_key}")
    console.print(f"requests: {files.tls_csr}, {files.signing_csr}")


@server_app.command("register")
def server_register(
    server_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<server code>")],
    address: Annotated[str, typer.Option(help="host:port of its provider endpoint")],
    tls_csr: Annotated[Path, typer.Option(help="TLS certificate request (PEM)")],
    signing_csr: Annotated[Path, typer.Option(help="signing certificate request (PEM)")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    out: Annotated[
        Path | None,
        typer.Option(help="where to write the certificates (default: next to the TLS CSR)"),
    ] = None,
    replace: Annotated[bool, typer.Option(help="re-key an already registered server")] = False,
    passphrase_file: PassFile = None,
) -> None:
    """Register a security server: the registry CA issues its TLS and signing certificates."""
    tls_request = _read_file(tls_csr, "TLS certificate request")
    signing_request = _read_file(signing_csr, "signing certificate request")
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.register_server(
            server_id, address, tls_request, signing_request, replace=replace
        )
    directory = out or tls_csr.parent
    atomic_write(directory / "tls.cert.pem", answer.tls_certificate)
    atomic_write(directory / "signing.cert.pem", answer.signing_certificate)
    atomic_write(directory / "ca.cert.pem", answer.ca_certificate)
    tls_serial = load_certificate(answer.tls_certificate).serial_number
    signing_serial = load_certificate(answer.signing_certificate).serial_number
    _changed(
        f"security server {answer.server.id} registered at {answer.server.address}", answer.revision
    )
    console.print(
        f"TLS certificate {tls_serial:x} and signing certificate {signing_serial:x} in {directory}"
    )


@server_app.command("set-address")
def server_set_address(
    server_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<server code>")],
    address: Annotated[str, typer.Argument(help="host:port")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Move a security server to another address."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.set_server_address(server_id, address)
    _changed(answer.summary, answer.revision)


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigInvalid(f"cannot read the {what} {path}: {exc.strerror}") from None


# --- services and rights ---------------------------------------------------------------------


@service_app.command("publish")
def service_publish(
    service_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<subsystem>/<service>/<version>")],
    grpc_service: Annotated[str, typer.Option(help="fully qualified gRPC service")],
    descriptor_set: Annotated[
        Path, typer.Option(help="FileDescriptorSet (protoc --descriptor_set_out --include_imports)")
    ],
    server: Annotated[list[str], typer.Option(help="security server id serving it (repeatable)")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    personal_data: Annotated[
        bool, typer.Option("--personal-data/--no-personal-data", help="returns personal data")
    ] = False,
    consent_policy: Annotated[
        str | None, typer.Option(help="required | not-required | consent-or-legal-basis")
    ] = None,
    stale_feed: Annotated[str, typer.Option(help="fail-closed | fail-open")] = "fail-closed",
    deadline_ms: Annotated[int, typer.Option(help="default deadline (0 = 5000)")] = 0,
    max_bytes: Annotated[int, typer.Option(help="maximum message size (0 = 4 MiB)")] = 0,
    idempotent: Annotated[
        list[str] | None, typer.Option(help="method that may be retried (repeatable)")
    ] = None,
    fields: Annotated[
        list[str] | None, typer.Option(help="Method=field,field a consent may scope (repeatable)")
    ] = None,
    description: Annotated[str, typer.Option(help="what the service gives")] = "",
    breaker_window: Annotated[int, typer.Option(help="breaker: calls in the window")] = 0,
    breaker_min_calls: Annotated[int, typer.Option(help="breaker: calls before judging")] = 0,
    breaker_failure_rate: Annotated[float, typer.Option(help="breaker: opens at this rate")] = 0.0,
    breaker_slow_rate: Annotated[float, typer.Option(help="breaker: slow-call rate")] = 0.0,
    breaker_slow_ms: Annotated[int, typer.Option(help="breaker: a call slower is slow")] = 0,
    breaker_open_ms: Annotated[int, typer.Option(help="breaker: time open")] = 0,
    breaker_probes: Annotated[int, typer.Option(help="breaker: half-open probes")] = 0,
    max_in_flight: Annotated[int, typer.Option(help="bulkhead: calls in flight")] = 0,
    max_queue: Annotated[int, typer.Option(help="bulkhead: calls waiting")] = 0,
    replace: Annotated[bool, typer.Option(help="update an already published service")] = False,
    passphrase_file: PassFile = None,
) -> None:
    """Publish a service: the registry checks the descriptor and derives its methods."""
    data = _read_file(descriptor_set, "descriptor set")
    scoped: dict[str, list[str]] = {}
    for item in fields or ():
        method, sep, names = item.partition("=")
        if not sep or not method or not names:
            raise InvalidRequest(f"--fields {item!r} must look like Method=field,field")
        scoped.setdefault(method, []).extend(n.strip() for n in names.split(",") if n.strip())
    breaker = globalconf_pb2.BreakerSettings(
        window_size=breaker_window,
        minimum_calls=breaker_min_calls,
        failure_rate_threshold=breaker_failure_rate,
        slow_call_rate_threshold=breaker_slow_rate,
        slow_call_ms=breaker_slow_ms,
        open_ms=breaker_open_ms,
        half_open_probes=breaker_probes,
        max_in_flight=max_in_flight,
        max_queue=max_queue,
    )
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.publish_service(
            service_id,
            grpc_service,
            data,
            server,
            personal_data=personal_data,
            consent_policy=consent_policy or 0,
            stale_feed_mode=stale_feed,
            deadline_ms=deadline_ms,
            max_bytes=max_bytes,
            idempotent=idempotent or (),
            fields=scoped,
            resilience=breaker if breaker.ByteSize() else None,
            description=description,
            replace=replace,
        )
    _changed(f"service {answer.service.id} published", answer.revision)
    _print_methods(answer.service)


def _print_methods(service: globalconf_pb2.Service) -> None:
    table = Table("method", "kind", "retry", "consent fields", title=service.grpc_service)
    for method in service.methods:
        table.add_row(
            method.name,
            "server-streaming" if method.server_streaming else "unary",
            "yes" if method.idempotent else "",
            ", ".join(method.fields),
        )
    console.print(table)


Client = Annotated[str, typer.Option(help="client subsystem KZ/GOV/<BIN>/<code> or group:<name>")]
ServiceOpt = Annotated[str, typer.Option(help="service id")]


@access_app.command("grant")
def access_grant(
    service: ServiceOpt,
    client: Client,
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Allow a client subsystem (or group) to call a service."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.grant(service, client)
    _changed(answer.summary, answer.revision)


@access_app.command("revoke")
def access_revoke(
    service: ServiceOpt,
    client: Client,
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Take a client's access right to a service away."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.revoke(service, client)
    _changed(answer.summary, answer.revision)


@group_app.command("add")
def group_add(
    group_id: Annotated[str, typer.Argument(help="group:<name>")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Create a group of client subsystems."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.add_group(group_id)
    _changed(answer.summary, answer.revision)


@group_app.command("add-member")
def group_add_member(
    group_id: Annotated[str, typer.Argument(help="group:<name>")],
    subsystem_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<code>")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Put a subsystem in a group."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.add_group_member(group_id, subsystem_id)
    _changed(answer.summary, answer.revision)


@group_app.command("remove-member")
def group_remove_member(
    group_id: Annotated[str, typer.Argument(help="group:<name>")],
    subsystem_id: Annotated[str, typer.Argument(help="KZ/GOV/<BIN>/<code>")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Take a subsystem out of a group."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.remove_group_member(group_id, subsystem_id)
    _changed(answer.summary, answer.revision)


@legal_app.command("add")
def legal_add(
    client: Annotated[str, typer.Option(help="consumer subsystem KZ/GOV/<BIN>/<code>")],
    service: ServiceOpt,
    law: Annotated[str, typer.Option(help="the law and article that allow the access")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    description: Annotated[str, typer.Option(help="case, scope")] = "",
    valid_from: Annotated[str | None, typer.Option(help="ISO date")] = None,
    valid_until: Annotated[str | None, typer.Option(help="ISO date")] = None,
    hidden_until: Annotated[
        str | None, typer.Option(help="hide exchanges from the citizen until this ISO date")
    ] = None,
    passphrase_file: PassFile = None,
) -> None:
    """Register a legal basis: the client may get the service's personal data without consent."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.add_legal_basis(
            client,
            service,
            law,
            description=description,
            valid_from=_date(valid_from, "--valid-from"),
            valid_until=_date(valid_until, "--valid-until"),
            hidden_until=_date(hidden_until, "--hidden-until"),
        )
    _changed(f"legal basis {answer.basis.id} added", answer.revision)


@legal_app.command("remove")
def legal_remove(
    basis_id: Annotated[str, typer.Argument(help="lb-…")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    passphrase_file: PassFile = None,
) -> None:
    """Remove a legal basis."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.remove_legal_basis(basis_id)
    _changed(answer.summary, answer.revision)


@cert_app.command("revoke")
def cert_revoke(
    serial: Annotated[str, typer.Argument(help="hex serial number")],
    registry: AdminAddress,
    cert: AdminCert,
    key: AdminKey,
    ca: CaFile,
    reason: Annotated[str, typer.Option(help="why")] = "unspecified",
    passphrase_file: PassFile = None,
) -> None:
    """Revoke a certificate; every security server refuses it from the next configuration on."""
    with _admin(registry, cert, key, ca, passphrase_file) as admin:
        answer = admin.revoke_certificate(serial, reason)
    _changed(answer.summary, answer.revision)


# --- the global configuration ------------------------------------------------------------------


def _verified(raw: bytes, ca: Path) -> GlobalConfView:
    return verify_global_conf(raw, [load_certificate(ca)])


@conf_app.command("export")
def conf_export(
    out: Annotated[Path, typer.Option(help="file to write the SignedGlobalConf to")],
    registry: PublicAddress,
    ca: CaFile,
) -> None:
    """Download the signed configuration, verify it, and write it to a file."""
    with _discovery(registry, ca) as client:
        raw = client.signed_conf()
    view = _verified(raw, ca)
    atomic_write(out, raw)
    console.print(f"global configuration v{view.version} written to {out} ({len(raw)} bytes)")


@conf_app.command("show")
def conf_show(
    ca: CaFile,
    file: Annotated[Path | None, typer.Option(help="read from this file, not the registry")] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", envvar="GOVBUS_REGISTRY", help="registry public port"),
    ] = None,
) -> None:
    """Verify and show a global configuration, from the registry or from a file."""
    if file is not None:
        raw = _read_file(file, "global configuration")
    elif registry:
        with _discovery(registry, ca) as client:
            raw = client.signed_conf()
    else:
        raise ConfigInvalid("give --file or --registry (or $GOVBUS_REGISTRY)")
    _print_conf(_verified(raw, ca))


_POLICY_WORDS: dict[int, str] = {
    globalconf_pb2.CONSENT_POLICY_UNSPECIFIED: "-",
    globalconf_pb2.CONSENT_NOT_REQUIRED: "not-required",
    globalconf_pb2.CONSENT_REQUIRED: "required",
    globalconf_pb2.CONSENT_OR_LEGAL_BASIS: "consent-or-legal-basis",
}


def _policy(value: int) -> str:
    return _POLICY_WORDS.get(value, str(value))


def _print_conf(view: GlobalConfView) -> None:
    conf = view.conf
    stamp = "%Y-%m-%d %H:%M:%S UTC"
    generated = dt.datetime.fromtimestamp(view.generated_at, dt.UTC)
    expires = dt.datetime.fromtimestamp(view.expires_at, dt.UTC)
    head = Table(show_header=False, box=None, title="global configuration (signature verified)")
    head.add_row("version", str(conf.version))
    head.add_row("instance", conf.instance)
    head.add_row("generated", f"{generated:{stamp}}")
    expired = " [red](expired)[/]" if expires < dt.datetime.now(dt.UTC) else ""
    head.add_row("expires", f"{expires:{stamp}}{expired}")
    head.add_row("registry", conf.registry_address)
    head.add_row("consent service", conf.consent_service_address or "-")
    head.add_row("revoked certificates", ", ".join(r.serial.hex() for r in conf.revoked) or "-")
    console.print(head)
    members = Table("member", "name", title="members")
    for m in conf.members:
        members.add_row(m.id, m.name)
    console.print(members)
    subsystems = Table("subsystem", "name", title="subsystems")
    for s in conf.subsystems:
        subsystems.add_row(s.id, s.name)
    console.print(subsystems)
    servers = Table("security server", "owner", "address", title="security servers")
    for server in conf.security_servers:
        servers.add_row(server.id, server.owner, server.address)
    console.print(servers)
    services = Table(
        "service",
        "gRPC service",
        "methods",
        "personal",
        "consent",
        "deadline",
        "servers",
        title="services",
    )
    for svc in conf.services:
        services.add_row(
            svc.id,
            svc.grpc_service,
            str(len(svc.methods)),
            "yes" if svc.personal_data else "no",
            _policy(svc.consent_policy),
            f"{svc.default_deadline_ms} ms",
            ", ".join(svc.servers),
        )
    console.print(services)
    rights = Table("service", "client", title="access rights")
    for right in conf.access_rights:
        rights.add_row(right.service, right.client)
    console.print(rights)
    if conf.groups:
        groups = Table("group", "members", title="groups")
        for group in conf.groups:
            groups.add_row(group.id, ", ".join(group.members))
        console.print(groups)
    bases = Table(
        "id", "client", "service", "law", "valid until", "hidden until", title="legal bases"
    )
    for basis in conf.legal_bases:
        bases.add_row(
            basis.id,
            basis.client,
            basis.service,
            basis.law_reference,
            _ts(basis.valid_until),
            _ts(basis.hidden_until),
        )
    console.print(bases)


# --- discovery ---------------------------------------------------------------------------------


@discover_app.command("members")
def discover_members(registry: PublicAddress, ca: CaFile) -> None:
    """Members of the bus."""
    with _discovery(registry, ca) as client:
        members = client.members()
    table = Table("member", "name")
    for m in members:
        table.add_row(m.id, m.name)
    console.print(table)


@discover_app.command("subsystems")
def discover_subsystems(
    registry: PublicAddress,
    ca: CaFile,
    member: Annotated[str, typer.Option(help="only this member's")] = "",
) -> None:
    """Subsystems (of one member)."""
    with _discovery(registry, ca) as client:
        subsystems = client.subsystems(member)
    table = Table("subsystem", "name")
    for s in subsystems:
        table.add_row(s.id, s.name)
    console.print(table)


@discover_app.command("services")
def discover_services(
    registry: PublicAddress,
    ca: CaFile,
    provider: Annotated[str, typer.Option(help="member or subsystem id")] = "",
) -> None:
    """Published services (of one provider)."""
    with _discovery(registry, ca) as client:
        services = client.services(provider)
    table = Table("service", "gRPC service", "methods", "personal data", "consent")
    for svc in services:
        table.add_row(
            svc.id,
            svc.grpc_service,
            str(len(svc.methods)),
            "yes" if svc.personal_data else "no",
            _policy(svc.consent_policy),
        )
    console.print(table)


@discover_app.command("methods")
def discover_methods(
    service: Annotated[str, typer.Argument(help="service id")], registry: PublicAddress, ca: CaFile
) -> None:
    """The methods of a service."""
    with _discovery(registry, ca) as client:
        found = client.service(service)
    _print_methods(found)


@discover_app.command("allowed")
def discover_allowed(
    client_id: Annotated[str, typer.Argument(help="client subsystem KZ/GOV/<BIN>/<code>")],
    registry: PublicAddress,
    ca: CaFile,
) -> None:
    """What a client subsystem may call, and through which right."""
    with _discovery(registry, ca) as client:
        allowed = client.allowed(client_id)
    table = Table("service", "method", "kind", "right held by")
    for item in allowed:
        for method in item.service.methods:
            table.add_row(
                item.service.id,
                method.name,
                "server-streaming" if method.server_streaming else "unary",
                ", ".join(item.via),
            )
    console.print(table)


@discover_app.command("descriptor")
def discover_descriptor(
    service: Annotated[str, typer.Argument(help="service id")],
    out: Annotated[Path, typer.Option(help="write the FileDescriptorSet here (grpcurl -protoset)")],
    registry: PublicAddress,
    ca: CaFile,
) -> None:
    """Save a service's descriptor set, to build requests with grpcurl-style tools."""
    with _discovery(registry, ca) as client:
        answer = client.descriptor(service)
    atomic_write(out, answer.descriptor_set)
    console.print(
        f"{answer.grpc_service}: {len(answer.descriptor_set)} bytes written to {out} "
        f"(sha256 {answer.descriptor_sha256.hex()[:16]}…)"
    )
