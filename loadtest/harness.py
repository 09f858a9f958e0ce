"""A bus on localhost for end-to-end tests and benchmarks: CA, global
configuration, security servers, adapters and the consent service as real
processes.

`Bus`: the global configuration is signed with a real registry key and
distributed as a file (one of the sources a security server accepts), so these
tests exercise the security servers without a registry process.

`RegistryBus`: the same around a real `govbus registry serve` process. Members,
servers and services are registered through its admin API (keys made on this
side, certificates issued by the registry), and the security servers download
the signed configuration from it — so they also find its audit-log witness.

The consent service (`govbus consent serve`) signs with a consent-role key of the
bus CA, serves TLS with a server-role certificate, follows the same configuration
file, and is named in it (`consent_service_address`), so every security server
follows its revocation feed. It is stopped or killed only by its own pid.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import timestamp_pb2

from consent.client import ConsentClient, consent_channel
from govbus.crypto.keys import atomic_write, private_key_pem, save_private_key
from govbus.crypto.pki import (
    CertificateAuthority,
    IssuedKey,
    Role,
    certificate_der,
    certificate_pem,
)
from govbus.globalconf import sign_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2, security_server_pb2, security_server_pb2_grpc
from govbus.process import GovbusProcess
from registry.bootstrap import ServerCredentials, register_server, serve_args
from registry.client import AdminClient
from security_server.config import write_ss_config

__all__ = [
    "DIAG_METHODS",
    "PASSPHRASE",
    "Bus",
    "ConsentServiceProcess",
    "RegisteredServer",
    "RegistryBus",
    "Server",
    "ss_process",
    "start_all",
    "start_ss",
    "wait_for_conf",
]

PASSPHRASE = b"local-bus-passphrase"

DIAG_METHODS = {
    "/govbus.v1.Diagnostics/Echo": False,
    "/govbus.v1.Diagnostics/EchoStream": True,
}


@dataclass
class Server:
    id: str
    member: str
    folder: Path
    tls: IssuedKey
    signing: IssuedKey
    adapters: dict[str, str] = field(default_factory=dict)
    process: GovbusProcess | None = None
    address: str = ""

    @property
    def consumer_address(self) -> str:
        assert self.process is not None
        return f"127.0.0.1:{self.process.info['consumer']}"


@dataclass
class ConsentServiceProcess:
    """The consent service of a bus: its keys, state folder and current process."""

    folder: Path
    signing: IssuedKey  # role consent: signs artefacts, feed pages, citizen tokens
    tls: IssuedKey  # role server: its TLS ports, and its client identity towards providers
    process: GovbusProcess | None = None
    port: int = 0
    operator_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def operator_address(self) -> str:
        return f"127.0.0.1:{self.operator_port}"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def outbox(self) -> Path:
        """The SMS outbox: the citizens' phones, for reading one-time codes."""
        return self.state_dir / "sms-outbox.jsonl"

    @property
    def running(self) -> bool:
        return (
            self.process is not None
            and self.process.proc is not None
            and self.process.proc.poll() is None
        )


def ss_process(config: Path) -> GovbusProcess:
    """`govbus ss serve --config CONFIG`, not started yet."""
    return GovbusProcess(
        "ss", "serve", "--config", str(config), env={"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()}
    )


def start_ss(config: Path) -> GovbusProcess:
    """`govbus ss serve --config CONFIG`, started and ready."""
    return ss_process(config).start()


def start_all(processes: Sequence[GovbusProcess]) -> list[GovbusProcess]:
    """Start processes side by side (their imports and key loading overlap) and return
    them once every one is ready; if one fails, the others are stopped and it raises."""
    if len(processes) <= 1:
        return [p.start() for p in processes]
    with ThreadPoolExecutor(max_workers=min(len(processes), 32)) as pool:
        futures = [pool.submit(p.start) for p in processes]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        for process in processes:
            process.close()
        raise failed[0]
    return list(processes)


def _running(process: GovbusProcess | None) -> bool:
    return process is not None and process.proc is not None and process.proc.poll() is None


def wait_for_conf(consumer_addresses: list[str], version: int, timeout: float = 20.0) -> None:
    """Block until the security servers at these consumer addresses have `version` in force."""
    asyncio.run(_wait_for_conf(consumer_addresses, version, time.monotonic() + timeout))


async def _wait_for_conf(addresses: list[str], version: int, end: float) -> None:
    for address in addresses:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
            while True:
                reply = await stub.Status(security_server_pb2.StatusRequest(), timeout=5)
                if reply.conf_version >= version:
                    break
                if time.monotonic() > end:
                    raise TimeoutError(
                        f"{reply.server_id} still on conf v{reply.conf_version}, want v{version}"
                    )
                await asyncio.sleep(0.05)


class _SecurityServer(Protocol):
    process: GovbusProcess | None

    @property
    def consumer_address(self) -> str: ...


ServerT = TypeVar("ServerT", bound=_SecurityServer)


class _Fleet(Generic[ServerT]):
    """What both test buses do with the processes they start."""

    servers: dict[str, ServerT]
    processes: list[GovbusProcess]

    def start_diagnostics(self) -> str:
        """The diagnostics adapter (`govbus.v1.Diagnostics`); returns its address."""
        process = GovbusProcess("ss", "diagnostics", "--port", "0").start()
        self.processes.append(process)
        return f"127.0.0.1:{process.info['port']}"

    def stop_server(self, server_id: str) -> str:
        """SIGTERM one security server and wait for it (its log is flushed and closed);
        returns what it printed. It stays registered at its address: `start_server` starts
        it again there."""
        server = self.servers[server_id]
        process, server.process = server.process, None
        if process is None:
            return ""
        process.stop()
        output = process.output()
        process.close()
        self.processes.remove(process)
        return output

    def wait_for_conf(self, version: int, timeout: float = 20.0) -> None:
        """Block until every running security server has `version` in force."""
        wait_for_conf(
            [s.consumer_address for s in self.servers.values() if _running(s.process)],
            version,
            timeout,
        )

    def _close_processes(self) -> None:
        for process in reversed(self.processes):
            process.close()
        self.processes.clear()


class Bus(_Fleet[Server]):
    def __init__(self, root: Path, *, conf_ttl: float = 600.0, poll_s: float = 0.2) -> None:
        self.root = root
        self.ca = CertificateAuthority.init(root / "pki", PASSPHRASE)
        self.registry_key = self.ca.issue_key(Role.REGISTRY, "registry")
        self.conf_path = root / "globalconf.bin"
        self.conf = globalconf_pb2.GlobalConf(instance="KZ")
        self.conf.ca_certificates.append(certificate_der(self.ca.certificate))
        self.conf_ttl = conf_ttl
        self.poll_s = poll_s
        self.servers: dict[str, Server] = {}
        self.processes: list[GovbusProcess] = []
        self.consent: ConsentServiceProcess | None = None
        self._operator: IssuedKey | None = None
        self._citizens: dict[str, IssuedKey] = {}

    # --- the configuration -----------------------------------------------------------

    def member(self, member_id: str, name: str = "") -> None:
        self.conf.members.add(id=member_id, name=name or member_id)

    def subsystem(self, subsystem_id: str) -> None:
        self.conf.subsystems.add(id=subsystem_id, name=subsystem_id)

    def server(self, server_id: str) -> Server:
        member = "/".join(server_id.split("/")[:3])
        folder = self.root / server_id.replace("/", "_")
        folder.mkdir(parents=True)
        tls = self.ca.issue_key(Role.SERVER, server_id, hosts=["localhost", "127.0.0.1", "::1"])
        signing = self.ca.issue_key(Role.SIGNING, member)
        for name, issued in (("tls", tls), ("signing", signing)):
            save_private_key(folder / f"{name}.key.pem", issued.key, PASSPHRASE)
            atomic_write(folder / f"{name}.cert.pem", certificate_pem(issued.certificate))
        server = Server(server_id, member, folder, tls, signing)
        self.servers[server_id] = server
        self.conf.security_servers.add(
            id=server_id, owner=member, address="", tls_certificate=certificate_der(tls.certificate)
        )
        return server

    def publish(
        self,
        service_id: str,
        grpc_service: str,
        methods: dict[str, bool],
        servers: list[str],
        *,
        personal_data: bool = False,
        max_bytes: int = 1 << 20,
        deadline_ms: int = 5000,
        idempotent: tuple[str, ...] = (),
        consent_policy: globalconf_pb2.ConsentPolicy | None = None,
        stale_feed_mode: globalconf_pb2.StaleFeedMode = globalconf_pb2.STALE_FEED_MODE_UNSPECIFIED,
    ) -> globalconf_pb2.Service:
        """Publish a service; personal data needs a consent unless `consent_policy` says
        otherwise (e.g. CONSENT_OR_LEGAL_BASIS)."""
        if consent_policy is None:
            consent_policy = (
                globalconf_pb2.CONSENT_REQUIRED
                if personal_data
                else globalconf_pb2.CONSENT_NOT_REQUIRED
            )
        service = self.conf.services.add(
            id=service_id,
            grpc_service=grpc_service,
            personal_data=personal_data,
            consent_policy=consent_policy,
            stale_feed_mode=stale_feed_mode,
            default_deadline_ms=deadline_ms,
            max_message_bytes=max_bytes,
            servers=servers,
        )
        for name, streaming in methods.items():
            service.methods.add(
                name=name, server_streaming=streaming, idempotent=name in idempotent
            )
        return service

    def grant(self, client: str, service_id: str) -> None:
        self.conf.access_rights.add(client=client, service=service_id)

    def legal_basis(
        self,
        basis_id: str,
        client: str,
        service_id: str,
        law_reference: str,
        *,
        valid_from: float | None = None,
        valid_until: float | None = None,
        hidden_until: float | None = None,
    ) -> globalconf_pb2.LegalBasis:
        """Register a legal basis (times in unix seconds; None = unbounded / never hidden)."""
        basis = self.conf.legal_bases.add(
            id=basis_id, client=client, service=service_id, law_reference=law_reference
        )
        for name, value in (
            ("valid_from", valid_from),
            ("valid_until", valid_until),
            ("hidden_until", hidden_until),
        ):
            if value is not None:
                getattr(basis, name).CopyFrom(_timestamp(value))
        return basis

    def revoke_certificate(self, serial: int) -> None:
        self.conf.revoked.add(serial=serial.to_bytes((serial.bit_length() + 7) // 8, "big"))

    def write_conf(self) -> int:
        """Sign and publish the next version; returns it."""
        now = time.time()
        self.conf.version += 1
        self.conf.generated_at.CopyFrom(_timestamp(int(now)))
        self.conf.expires_at.CopyFrom(_timestamp(int(now + self.conf_ttl)))
        raw = sign_global_conf(
            self.conf, self.registry_key.signer(), certificate_der(self.registry_key.certificate)
        )
        atomic_write(self.conf_path, raw)
        return self.conf.version

    # --- processes -------------------------------------------------------------------

    def start_server(
        self,
        server_id: str,
        *,
        extra: str = "",
        consent_staleness_s: float | None = None,
        metrics: bool = False,
    ) -> Server:
        """Start a security server; `consent_staleness_s` bounds how old its copy of the
        consent revocation feed may be before a service's stale-feed mode applies;
        `metrics` serves its Prometheus /metrics on a free port (`info["metrics"]`)."""
        return self.start_servers(
            [server_id], extra=extra, consent_staleness_s=consent_staleness_s, metrics=metrics
        )[0]

    def start_servers(
        self,
        server_ids: Sequence[str],
        *,
        extra: str | Mapping[str, str] = "",
        consent_staleness_s: float | None = None,
        metrics: bool = False,
    ) -> list[Server]:
        """Start several security servers at once (their start-ups overlap), each ready
        when this returns; `extra` is one TOML text for all, or one per server id."""
        configs = []
        for server_id in server_ids:
            server = self.servers[server_id]
            text = extra if isinstance(extra, str) else extra.get(server_id, "")
            if consent_staleness_s is not None:
                text = f"{text}\n[consent]\nstaleness_s = {float(consent_staleness_s)}\n"
            configs.append(
                write_ss_config(
                    server.folder,
                    server_id,
                    ca_certificate=self.ca.directory / "ca.cert.pem",
                    conf_source=f"file:{self.conf_path}",
                    poll_s=self.poll_s,
                    adapters=server.adapters,
                    listen={
                        # A restarted server keeps its provider address: the
                        # configuration names it.
                        "provider": server.address,
                        "metrics": "127.0.0.1:0" if metrics else "",
                    },
                    extra=text,
                )
            )
        processes = start_all([ss_process(config) for config in configs])
        started = []
        for server_id, process in zip(server_ids, processes, strict=True):
            server = self.servers[server_id]
            self.processes.append(process)
            server.process = process
            server.address = f"127.0.0.1:{process.info['provider']}"
            for entry in self.conf.security_servers:
                if entry.id == server_id:
                    entry.address = server.address
            started.append(server)
        return started

    def status(self, server_id: str) -> security_server_pb2.StatusReply:
        """A running security server's own status (conf version, consent feed age, …)."""
        return asyncio.run(self.status_async(server_id))

    async def status_async(self, server_id: str) -> security_server_pb2.StatusReply:
        async with grpc.aio.insecure_channel(self.servers[server_id].consumer_address) as channel:
            stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
            reply: security_server_pb2.StatusReply = await stub.Status(
                security_server_pb2.StatusRequest(), timeout=5
            )
            return reply

    def wait_for_feed(
        self, server_ids: list[str], *, after_ms: int = 0, timeout: float = 20.0
    ) -> None:
        """Block until each security server holds a consent revocation feed snapshot
        taken after `after_ms` (unix ms; 0 = any snapshot at all).

        A snapshot's time is when the poll that reached the feed's head started, so
        one taken after a revocation was committed holds that revocation.
        """
        end = time.monotonic() + timeout
        for server_id in server_ids:
            while True:
                asked_ms = int(time.time() * 1000)
                age = self.status(server_id).consent_feed_age_ms
                # The server read its clock after `asked_ms`: its snapshot is at least this new.
                if age >= 0 and asked_ms - age > after_ms:
                    break
                if time.monotonic() > end:
                    raise TimeoutError(
                        f"{server_id} has no consent feed snapshot newer than {after_ms} "
                        f"(feed age {age} ms)"
                    )
                time.sleep(0.05)

    # --- the consent service -----------------------------------------------------------

    def start_consent_service(self) -> ConsentServiceProcess:
        """Start `govbus consent serve` and name it in the configuration (write it next).

        The first start issues its keys and takes free ports; a later start (after
        `kill_consent_service`) runs on the same state, keys and ports.
        """
        consent = self.consent
        if consent is None:
            folder = self.root / "consent"
            folder.mkdir(parents=True)
            consent = ConsentServiceProcess(
                folder,
                self.ca.issue_key(Role.CONSENT, "consent-service"),
                self.ca.issue_key(
                    Role.SERVER, "consent-service", hosts=["localhost", "127.0.0.1", "::1"]
                ),
            )
            for name, issued in (("signing", consent.signing), ("tls", consent.tls)):
                save_private_key(folder / f"{name}.key.pem", issued.key, PASSPHRASE)
                atomic_write(folder / f"{name}.cert.pem", certificate_pem(issued.certificate))
            self.consent = consent
        elif consent.running:
            raise RuntimeError("the consent service is already running")
        folder = consent.folder
        process = GovbusProcess(
            "consent",
            "serve",
            "--state-dir",
            str(consent.state_dir),
            "--ca",
            str(self.ca.directory / "ca.cert.pem"),
            "--signing-key",
            str(folder / "signing.key.pem"),
            "--signing-cert",
            str(folder / "signing.cert.pem"),
            "--tls-key",
            str(folder / "tls.key.pem"),
            "--tls-cert",
            str(folder / "tls.cert.pem"),
            "--port",
            str(consent.port),
            "--operator-port",
            str(consent.operator_port),
            "--globalconf",
            str(self.conf_path),
            env={"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()},
        ).start()
        self.processes.append(process)
        consent.process = process
        consent.port, consent.operator_port = process.info["port"], process.info["operator_port"]
        self.conf.consent_service_address = consent.address
        self.conf.consent_service_certificate = certificate_der(consent.signing.certificate)
        return consent

    def kill_consent_service(self) -> None:
        """SIGKILL the consent service (by its own pid): no chance to finish anything."""
        if self.consent is None or self.consent.process is None:
            raise RuntimeError("no consent service was started")
        self.consent.process.kill()

    @property
    def operator(self) -> IssuedKey:
        """A service-centre operator's key (role operator, mutual TLS)."""
        if self._operator is None:
            self._operator = self.ca.issue_key(Role.OPERATOR, "operator-001")
        return self._operator

    def citizen(self, iin: str) -> IssuedKey:
        """The citizen's own EDS key (role citizen, certificate name = IIN)."""
        if iin not in self._citizens:
            self._citizens[iin] = self.ca.issue_key(Role.CITIZEN, iin)
        return self._citizens[iin]

    def consent_client(self, *, operator: bool = False) -> ConsentClient:
        """A client of the consent service: the public port, or with `operator` the
        operator port over mutual TLS with the operator's key."""
        if self.consent is None:
            raise RuntimeError("no consent service was started")
        ca_pem = certificate_pem(self.ca.certificate)
        if not operator:
            return ConsentClient(consent_channel(self.consent.address, ca_pem))
        return ConsentClient(
            consent_channel(
                self.consent.operator_address,
                ca_pem,
                client_key_pem=private_key_pem(self.operator.key),
                client_cert_pem=certificate_pem(self.operator.certificate),
            )
        )

    def stop(self) -> None:
        self._close_processes()


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    whole = int(seconds // 1)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


@dataclass
class RegisteredServer:
    """A security server registered with a real registry."""

    credentials: ServerCredentials
    adapters: dict[str, str] = field(default_factory=dict)
    extra: str = ""
    process: GovbusProcess | None = None

    @property
    def id(self) -> str:
        return self.credentials.server_id

    @property
    def folder(self) -> Path:
        return self.credentials.directory

    @property
    def consumer_address(self) -> str:
        assert self.process is not None
        return f"127.0.0.1:{self.process.info['consumer']}"

    @property
    def address(self) -> str:
        """Its provider (mutual TLS) address."""
        assert self.process is not None
        return f"127.0.0.1:{self.process.info['provider']}"


class RegistryBus(_Fleet[RegisteredServer]):
    """A registry process and security servers that live on its configuration.

    ```python
    bus = RegistryBus(tmp).start()
    bus.member(PROVIDER); bus.subsystem(f"{PROVIDER}/diag")
    bus.server(f"{PROVIDER}/ss1")
    bus.publish(SERVICE, "govbus.v1.Diagnostics", diagnostics_pb2.DESCRIPTOR, [f"{PROVIDER}/ss1"])
    bus.start_server(f"{PROVIDER}/ss1")        # registers its provider address too
    bus.wait_for_conf(bus.admin.wait_published())
    ```
    """

    def __init__(
        self,
        root: Path,
        *,
        poll_s: float = 0.2,
        regen_interval: float = 0.1,
        conf_ttl: float | None = None,
        resign_interval: float | None = None,
        database: str | None = None,
        db_schema: str | None = None,
    ) -> None:
        self.root = root
        self.poll_s = poll_s
        self.regen_interval = regen_interval
        self.conf_ttl = conf_ttl
        self.resign_interval = resign_interval
        self.database = database
        self.db_schema = db_schema
        self.servers: dict[str, RegisteredServer] = {}
        self.processes: list[GovbusProcess] = []
        self.registry: GovbusProcess | None = None
        self._admin: AdminClient | None = None

    def start(self) -> RegistryBus:
        """Start the registry; after `kill_registry`, start it again on the same state
        and the same ports (security servers keep polling that address)."""
        before = self.registry.info if self.registry is not None else None
        if self.registry is not None:
            self.registry.close()
        self.registry = GovbusProcess(
            *serve_args(
                self.root / "registry",
                listen=before["public"] if before else "127.0.0.1:0",
                admin_listen=before["admin"] if before else "127.0.0.1:0",
                regen_interval=self.regen_interval,
                conf_ttl=self.conf_ttl,
                resign_interval=self.resign_interval,
                database=self.database,
                db_schema=self.db_schema,
            ),
            env={"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()},
        ).start()
        if self._admin is not None:
            self._admin.close()
        self._admin = AdminClient.operator(self.registry.info, PASSPHRASE)
        return self

    def kill_registry(self) -> None:
        """SIGKILL the registry process (by its own pid)."""
        assert self.registry is not None
        self.registry.kill()

    @property
    def admin(self) -> AdminClient:
        """The registry operator's admin client."""
        assert self._admin is not None, "start() the bus first"
        return self._admin

    @property
    def public_address(self) -> str:
        assert self.registry is not None
        return str(self.registry.info["public"])

    @property
    def ca_certificate(self) -> Path:
        assert self.registry is not None
        return Path(self.registry.info["ca_cert"])

    @property
    def witness_certificate(self) -> Path:
        """The registry's signing certificate: it signs the configuration and cosignatures."""
        assert self.registry is not None
        return Path(self.registry.info["state"]) / "registry-signing.cert.pem"

    # --- the configuration, through the admin API ---------------------------------------

    def member(self, member_id: str, name: str = "") -> None:
        self.admin.add_member(member_id, name or member_id)

    def subsystem(self, subsystem_id: str) -> None:
        self.admin.add_subsystem(subsystem_id, subsystem_id)

    def server(self, server_id: str, *, extra: str = "") -> RegisteredServer:
        """Make the server's keys and register it; its address is set when it starts."""
        folder = self.root / server_id.replace("/", "_")
        folder.mkdir(parents=True)
        # The provider port is known only once the server runs (port 0): a placeholder
        # until start_server registers the real one.
        credentials = register_server(self.admin, server_id, "127.0.0.1:1", folder, PASSPHRASE)
        server = RegisteredServer(credentials, extra=extra)
        self.servers[server_id] = server
        return server

    def publish(
        self,
        service_id: str,
        grpc_service: str,
        descriptor: pb_descriptor.FileDescriptor,
        servers: Sequence[str],
        **options: object,
    ) -> None:
        self.admin.publish_service(service_id, grpc_service, descriptor, servers, **options)  # type: ignore[arg-type]

    def grant(self, client: str, service_id: str) -> None:
        self.admin.grant(service_id, client)

    # --- processes -----------------------------------------------------------------------

    def start_server(self, server_id: str, *, extra: str | None = None) -> RegisteredServer:
        """Start (or restart) a registered server and register its provider address."""
        server = self.servers[server_id]
        config = write_ss_config(
            server.folder,
            server_id,
            ca_certificate=server.credentials.ca_cert,
            conf_source=f"grpcs://{self.public_address}",
            poll_s=self.poll_s,
            adapters=server.adapters,
            extra=server.extra if extra is None else extra,
        )
        process = start_ss(config)
        self.processes.append(process)
        server.process = process
        self.admin.set_server_address(server_id, server.address)
        return server

    def stop(self) -> None:
        self._close_processes()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.registry is not None:
            self.registry.close()
            self.registry = None
