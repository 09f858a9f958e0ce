"""A bus on localhost for end-to-end tests and benchmarks: CA, global
configuration, security servers and adapters as real processes.

The global configuration is signed with a real registry key and distributed as
a file (one of the sources a security server accepts), so these tests exercise
the security servers without a registry process; the registry's own tests run it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2

from govbus.crypto.keys import atomic_write, save_private_key
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

__all__ = ["DIAG_METHODS", "PASSPHRASE", "Bus", "Server"]

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


class Bus:
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
    ) -> globalconf_pb2.Service:
        service = self.conf.services.add(
            id=service_id,
            grpc_service=grpc_service,
            personal_data=personal_data,
            consent_policy=globalconf_pb2.CONSENT_REQUIRED
            if personal_data
            else globalconf_pb2.CONSENT_NOT_REQUIRED,
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

    def revoke_certificate(self, serial: int) -> None:
        self.conf.revoked.add(serial=serial.to_bytes((serial.bit_length() + 7) // 8, "big"))

    def write_conf(self) -> int:
        """Sign and publish the next version; returns it."""
        now = time.time()
        self.conf.version += 1
        self.conf.generated_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now)))
        self.conf.expires_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now + self.conf_ttl)))
        raw = sign_global_conf(
            self.conf, self.registry_key.signer(), certificate_der(self.registry_key.certificate)
        )
        atomic_write(self.conf_path, raw)
        return self.conf.version

    # --- processes -------------------------------------------------------------------

    def start_diagnostics(self) -> str:
        process = GovbusProcess("ss", "diagnostics", "--port", "0").start()
        self.processes.append(process)
        return f"127.0.0.1:{process.info['port']}"

    def start_server(self, server_id: str, *, extra: str = "") -> Server:
        server = self.servers[server_id]
        adapters = "\n".join(
            f'"{service}" = "{address}"' for service, address in server.adapters.items()
        )
        config = server.folder / "ss.toml"
        # A restarted server keeps its provider address: the configuration names it.
        listen = f'[listen]\nprovider = "{server.address}"\n' if server.address else ""
        config.write_text(
            f'''server_id = "{server_id}"
state_dir = "state"

{listen}
[keys]
ca_certificate = "{self.ca.directory / "ca.cert.pem"}"
tls_key = "tls.key.pem"
tls_certificate = "tls.cert.pem"
signing_key = "signing.key.pem"
signing_certificate = "signing.cert.pem"

[globalconf]
source = "file:{self.conf_path}"
interval_s = {self.poll_s}

[exchange]
freshness_s = 30

{extra}

[adapters]
{adapters}
'''
        )
        process = GovbusProcess(
            "ss",
            "serve",
            "--config",
            str(config),
            env={"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()},
        ).start()
        self.processes.append(process)
        server.process = process
        server.address = f"127.0.0.1:{process.info['provider']}"
        for entry in self.conf.security_servers:
            if entry.id == server_id:
                entry.address = server.address
        return server

    def wait_for_conf(self, version: int, timeout: float = 20.0) -> None:
        """Block until every running security server has `version` in force."""
        asyncio.run(self._wait_for_conf(version, time.monotonic() + timeout))

    async def _wait_for_conf(self, version: int, end: float) -> None:
        for server in self.servers.values():
            if (
                server.process is None
                or server.process.proc is None
                or server.process.proc.poll() is not None
            ):
                continue
            async with grpc.aio.insecure_channel(server.consumer_address) as channel:
                stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
                while True:
                    reply = await stub.Status(security_server_pb2.StatusRequest(), timeout=5)
                    if reply.conf_version >= version:
                        break
                    if time.monotonic() > end:
                        raise TimeoutError(
                            f"{server.id} still on conf v{reply.conf_version}, want v{version}"
                        )
                    await asyncio.sleep(0.05)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.close()
        self.processes.clear()
