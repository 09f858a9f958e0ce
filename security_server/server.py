"""One security server process: consumer side, provider side, status, metrics.

Wires the pieces together and owns their life cycle: loads keys, starts the
global-configuration client, opens the audit log, serves local clients on the
consumer port and remote security servers on the mutual-TLS provider port, and
on SIGTERM stops taking calls, lets in-flight exchanges finish, flushes the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, start_http_server

from govbus.crypto.keys import KeySigner, load_private_key, passphrase_from_env, private_key_pem
from govbus.crypto.pki import cert_fingerprint, certificate_der, load_certificate, load_certificates
from govbus.errors import ConfigInvalid
from govbus.globalconf import Fetch, GlobalConfClient, GlobalConfView, file_source, grpc_source
from govbus.pb.govbus.v1 import audit_pb2, security_server_pb2, security_server_pb2_grpc
from govbus.serving import DEFAULT_OPTIONS, add_health_and_reflection, write_ready_file
from govbus.telemetry import Tracing
from security_server.channels import ChannelPool
from security_server.config import SsConfig
from security_server.consumer import ConsumerSide
from security_server.metrics import SsMetrics
from security_server.provider import ConsentCheck, NoPersonalData, ProviderSide
from security_server.records import RecordFactory

__all__ = ["SecurityServer", "serve"]

log = logging.getLogger("govbus.ss")


class _Status(security_server_pb2_grpc.SecurityServerAdminServicer):
    def __init__(self, server: SecurityServer) -> None:
        self._server = server

    async def Status(
        self, request: security_server_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> security_server_pb2.StatusReply:
        return self._server.status()


class SecurityServer:
    def __init__(self, config: SsConfig, *, consent: ConsentCheck | None = None) -> None:
        self.config = config
        passphrase = passphrase_from_env(config.passphrase_file)
        self.anchor_cas = load_certificates(config.ca_certificate)
        signing_key = load_private_key(config.signing_key, passphrase)
        signing_cert = load_certificate(config.signing_certificate)
        self.signing_cert_der = certificate_der(signing_cert)
        self.signer = KeySigner(signing_key, cert_fingerprint(signing_cert))
        tls_key = load_private_key(config.tls_key, passphrase)
        self._tls_key_pem = private_key_pem(tls_key)
        self._tls_cert_pem = config.tls_certificate.read_bytes()
        self._ca_pem = config.ca_certificate.read_bytes()
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.conf = GlobalConfClient(
            self.anchor_cas,
            self._conf_source(),
            config.state_dir / "globalconf.bin",
            interval=config.conf_interval_s,
        )
        self.registry = CollectorRegistry()
        self.metrics = SsMetrics(self.registry)
        self.conf.on_change(self._conf_changed)
        self._consent = consent or NoPersonalData()
        self.tracing = Tracing(f"govbus-ss {config.server_id}", config.traces_file)
        self.consumer: ConsumerSide | None = None
        self.provider: ProviderSide | None = None
        self.ports: dict[str, int] = {}
        self._log: Any = None
        self._servers: list[grpc.aio.Server] = []
        self._channels = ChannelPool(
            ChannelPool.mutual_tls(self._ca_pem, self._tls_key_pem, self._tls_cert_pem)
        )
        self._adapter_channels = ChannelPool()

    def _conf_source(self) -> Fetch:
        source = self.config.conf_source
        if source.startswith("file:"):
            return file_source(Path(source.removeprefix("file:")))
        return grpc_source(source.removeprefix("grpcs://"), self._ca_pem)

    def _conf_changed(self, view: GlobalConfView) -> None:
        self.metrics.conf_version.set(view.version)
        self.metrics.conf_expires.set(view.expires_at)

    async def start(self) -> None:
        from audit_log import keys as log_keys
        from audit_log import open_log

        config = self.config
        with contextlib.suppress(Exception):
            await self.conf.refresh()
        self.conf.start()
        pseudonymizer = log_keys.Pseudonymizer(_key(log_keys, config.pseudonym_key))
        cipher = log_keys.RecordCipher(_key(log_keys, config.data_key))
        self._log = await open_log(
            config.audit_url,
            signer=self.signer,
            origin=f"govbus/{config.server_id}",
            store_bodies=config.store_bodies,
            certificate=self.signing_cert_der,
            cipher=cipher,
        )
        self._checkpoints = self._log.start_checkpointing(config.checkpoint_interval_s)
        self.consumer = ConsumerSide(
            server_id=config.server_id,
            member_id=config.member_id,
            signer=self.signer,
            certificate_der=self.signing_cert_der,
            conf=self.conf,
            log=self._log,
            records=RecordFactory(config.server_id, audit_pb2.SIDE_CONSUMER, pseudonymizer),
            channels=self._channels,
            metrics=self.metrics,
            tracing=self.tracing,
        )
        self.provider = ProviderSide(
            server_id=config.server_id,
            signer=self.signer,
            certificate_der=self.signing_cert_der,
            conf=self.conf,
            log=self._log,
            records=RecordFactory(config.server_id, audit_pb2.SIDE_PROVIDER, pseudonymizer),
            adapters=config.adapters,
            adapter_channels=self._adapter_channels,
            consent=self._consent,
            metrics=self.metrics,
            freshness_ms=int(config.freshness_s * 1000),
            tracing=self.tracing,
        )
        consumer_server = grpc.aio.server(options=DEFAULT_OPTIONS)
        self._health = add_health_and_reflection(consumer_server, ["govbus.v1.SecurityServerAdmin"])
        security_server_pb2_grpc.add_SecurityServerAdminServicer_to_server(
            _Status(self), consumer_server
        )
        consumer_server.add_generic_rpc_handlers((self.consumer.handler(),))
        self.ports["consumer"] = consumer_server.add_insecure_port(config.consumer_listen)
        provider_server = grpc.aio.server(options=DEFAULT_OPTIONS)
        self._provider_health = add_health_and_reflection(provider_server, ["govbus.v1.Exchange"])
        provider_server.add_generic_rpc_handlers((self.provider.handler(),))
        credentials = grpc.ssl_server_credentials(
            [(self._tls_key_pem, self._tls_cert_pem)],
            root_certificates=self._ca_pem,
            require_client_auth=True,
        )
        self.ports["provider"] = provider_server.add_secure_port(
            config.provider_listen, credentials
        )
        if 0 in self.ports.values():
            raise ConfigInvalid(
                f"could not bind {config.consumer_listen} / {config.provider_listen}"
            )
        if config.metrics_listen:
            host, _, port = config.metrics_listen.rpartition(":")
            http, _thread = start_http_server(int(port), addr=host, registry=self.registry)
            self.ports["metrics"] = http.server_port
        await consumer_server.start()
        await provider_server.start()
        self._servers = [consumer_server, provider_server]

    async def stop(self, grace: float = 5.0) -> None:
        for health in (self._health, self._provider_health):
            await health.enter_graceful_shutdown()
        await asyncio.gather(*(s.stop(grace) for s in self._servers))
        await self.conf.stop()
        await self._channels.close()
        await self._adapter_channels.close()
        if self._log is not None:
            await self._log.close()
        self.tracing.shutdown()

    def status(self) -> security_server_pb2.StatusReply:
        view = self.conf.view
        reply = security_server_pb2.StatusReply(
            server_id=self.config.server_id,
            conf_version=view.version if view else 0,
            conf_expires_at_ms=int(view.expires_at * 1000) if view else 0,
            conf_error=self.conf.last_error or "",
            exchanges=(self.consumer.exchanges if self.consumer else 0)
            + (self.provider.exchanges if self.provider else 0),
            refusals=(self.consumer.refusals if self.consumer else 0)
            + (self.provider.refusals if self.provider else 0),
            consumer_port=self.ports.get("consumer", 0),
            provider_port=self.ports.get("provider", 0),
        )
        size = getattr(self._log, "size", None)
        if isinstance(size, int):
            reply.log_size = size
        return reply


async def serve(config_path: Path, ready_file: Path | None) -> None:
    config = SsConfig.load(config_path)
    server = SecurityServer(config)
    await server.start()
    write_ready_file(ready_file, {"pid": os.getpid(), **server.ports, "started": time.time()})
    log.info("security server %s serving on %s", config.server_id, server.ports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def _key(log_keys: Any, path: Path) -> bytes:
    """A log key file; created on first start (keys live outside the database)."""
    key: bytes = log_keys.load_key_file(path) if path.exists() else log_keys.generate_key_file(path)
    return key
