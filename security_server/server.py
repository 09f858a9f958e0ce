"""One security server process: consumer side, provider side, status, metrics.

Wires the pieces together and owns their life cycle: loads keys, starts the
global-configuration client, opens the audit log (its checkpoints go to the
registry's witness, security_server.witnessing), follows the consent
revocation feed, keeps the resilience guards in step with the configuration,
serves local clients on the consumer port and remote security servers on the
mutual-TLS provider port, and on SIGTERM stops taking calls, lets in-flight
exchanges finish and flushes the log.
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

from audit_log import keys as log_keys
from audit_log import open_log
from audit_log.bus_witness import log_origin
from audit_log.log import AuditLog
from consent.client import consent_channel
from consent.feed import RevocationFeedFollower, grpc_feed_source
from consent.usage import AccessHistoryServicer
from consent.verifier import ConsentVerifier, RevocationState
from govbus.crypto.keys import KeySigner, load_private_key, passphrase_from_env, private_key_pem
from govbus.crypto.pki import (
    cert_fingerprint,
    certificate_der,
    load_certificate,
    load_certificates,
)
from govbus.errors import ConfigInvalid, GovbusError
from govbus.globalconf import Fetch, GlobalConfClient, GlobalConfView, file_source, grpc_source
from govbus.pb.govbus.v1 import (
    audit_pb2,
    security_server_pb2,
    security_server_pb2_grpc,
    usage_pb2_grpc,
)
from govbus.serving import DEFAULT_OPTIONS, add_health_and_reflection, write_ready_file
from govbus.telemetry import Tracing
from security_server.channels import ChannelPool
from security_server.config import SsConfig
from security_server.consumer import ConsumerSide
from security_server.metrics import SsMetrics
from security_server.provider import ProviderSide
from security_server.records import RecordFactory
from security_server.resilience import (
    BulkheadConfig,
    Endpoint,
    ExchangeGuard,
    LoadShedder,
    settings_of_view,
)
from security_server.witnessing import LogWitnessing

__all__ = ["SecurityServer", "serve"]

log = logging.getLogger("govbus.ss")


class _Status(security_server_pb2_grpc.SecurityServerAdminServicer):
    def __init__(self, server: SecurityServer) -> None:
        self._server = server

    async def Status(
        self, request: security_server_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> security_server_pb2.StatusReply:
        return self._server.status()


class _LogUsage:
    """The audit log as the source of a citizen's access history."""

    def __init__(self, audit: AuditLog) -> None:
        self._log = audit

    async def find(
        self, pseudonym: bytes, since_ms: int, until_ms: int
    ) -> list[audit_pb2.ExchangeRecord]:
        found = await self._log.find_by_subject(pseudonym, since_ms, until_ms)
        return [entry.record for entry in found]


class SecurityServer:
    def __init__(self, config: SsConfig) -> None:
        self.config = config
        passphrase = passphrase_from_env(config.passphrase_file)
        self.anchor_cas = load_certificates(config.ca_certificate)
        signing_key = load_private_key(config.signing_key, passphrase)
        signing_cert = load_certificate(config.signing_certificate)
        self.signing_cert_der = certificate_der(signing_cert)
        self.signer = KeySigner(signing_key, cert_fingerprint(signing_cert))
        self._tls_key_pem = private_key_pem(load_private_key(config.tls_key, passphrase))
        self._tls_cert_pem = config.tls_certificate.read_bytes()
        self._ca_pem = config.ca_certificate.read_bytes()
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.registry = CollectorRegistry()
        self.metrics = SsMetrics(self.registry)
        self.tracing = Tracing(f"govbus-ss {config.server_id}", config.traces_file)
        self._channels = ChannelPool(
            ChannelPool.mutual_tls(self._ca_pem, self._tls_key_pem, self._tls_cert_pem)
        )
        self._adapter_channels = ChannelPool()
        self.guard = ExchangeGuard(metrics=self.registry, channel_factory=self._endpoint_channel)
        # With resilience off the provider sheds nothing either (limits beyond reach).
        self.shedder = (
            LoadShedder()
            if config.resilience
            else LoadShedder(BulkheadConfig(1_000_000, 1_000_000))
        )
        self.consent = ConsentVerifier(staleness_ms=int(config.consent_staleness_s * 1000))
        self._follower: RevocationFeedFollower | None = None
        self._consent_address = ""
        self.conf = GlobalConfClient(
            self.anchor_cas,
            self._conf_source(),
            config.state_dir / "globalconf.bin",
            interval=config.conf_interval_s,
        )
        self.consumer: ConsumerSide | None = None
        self.provider: ProviderSide | None = None
        self.ports: dict[str, int] = {}
        self._log: AuditLog | None = None
        self._witnessing: LogWitnessing | None = None
        self._servers: list[grpc.aio.Server] = []

    def _conf_source(self) -> Fetch:
        source = self.config.conf_source
        if source.startswith("file:"):
            return file_source(Path(source.removeprefix("file:")))
        return grpc_source(source.removeprefix("grpcs://"), self._ca_pem)

    def _endpoint_channel(self, endpoint: Endpoint) -> grpc.aio.Channel:
        # Health checks own their channels (they close one that failed); exchanges keep
        # the pooled ones.
        return self._channels.fresh(endpoint.address)

    def _conf_changed(self, view: GlobalConfView) -> None:
        """A new configuration is in force: bring guards, shedding and the feed in step."""
        self.metrics.conf_version.set(view.version)
        self.metrics.conf_expires.set(view.expires_at)
        try:
            settings = settings_of_view(view)
            self.guard.apply(settings)
            if self.config.resilience:
                self.shedder.configure({sid: s.provider for sid, s in settings.items()})
        except GovbusError as exc:
            # The configuration itself stays in force; the previous settings stay too.
            log.error("resilience settings of conf v%d refused: %s", view.version, exc)
        if self._witnessing is not None:
            self._witnessing.apply(view)
        address = view.conf.consent_service_address
        if address and address != self._consent_address:
            self._consent_address = address
            old, self._follower = self._follower, self._new_follower(address)
            if old is not None:
                asyncio.get_running_loop().create_task(old.stop())

    def _new_follower(self, address: str) -> RevocationFeedFollower:
        channel = consent_channel(address, self._ca_pem)
        follower = RevocationFeedFollower(
            grpc_feed_source(channel), anchor=lambda: self.conf.current().anchor, interval=1.0
        )
        follower.start()
        return follower

    def feed_state(self) -> RevocationState:
        follower = self._follower
        return follower.state if follower is not None else _NO_FEED

    async def start(self) -> None:
        config = self.config
        with contextlib.suppress(GovbusError):
            await self.conf.refresh()
        self.conf.on_change(self._conf_changed)
        self.conf.start()
        self.guard.start()
        pseudonymizer = log_keys.Pseudonymizer(_key(config.pseudonym_key))
        cipher = log_keys.RecordCipher(_key(config.data_key))
        self._log = await open_log(
            config.audit_url,
            signer=self.signer,
            origin=log_origin(config.server_id),
            store_bodies=config.store_bodies,
            certificate=self.signing_cert_der,
            cipher=cipher,
        )
        self._witnessing = LogWitnessing(
            self._log,
            config.checkpoint_interval_s,
            config.witness,
            self._ca_pem,
            metrics=self.registry,
        )
        self._witnessing.start(self.conf.view)
        self.consumer = ConsumerSide(
            server_id=config.server_id,
            member_id=config.member_id,
            signer=self.signer,
            certificate_der=self.signing_cert_der,
            conf=self.conf,
            log=self._log,
            records=RecordFactory(config.server_id, audit_pb2.SIDE_CONSUMER, pseudonymizer),
            channels=self._channels,
            guard=self.guard if config.resilience else None,
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
            consent=self.consent,
            feed_state=self.feed_state,
            shedder=self.shedder,
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
        self._provider_health = add_health_and_reflection(
            provider_server, ["govbus.v1.Exchange", "govbus.v1.AccessHistory"]
        )
        provider_server.add_generic_rpc_handlers((self.provider.handler(),))
        usage_pb2_grpc.add_AccessHistoryServicer_to_server(
            AccessHistoryServicer(
                _LogUsage(self._log),
                pseudonymizer.pseudonym,
                lambda: self.conf.current().anchor,
                config.server_id,
            ),
            provider_server,
        )
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
        await self.guard.stop()
        await self.conf.stop()
        if self._follower is not None:
            await self._follower.stop()
        await self._channels.close()
        await self._adapter_channels.close()
        if self._witnessing is not None:
            await self._witnessing.close()
        if self._log is not None:
            # A last signed checkpoint, so that every record the server wrote is
            # covered by its signature when an auditor verifies the log at rest.
            with contextlib.suppress(GovbusError):
                await self._log.checkpoint()
            await self._log.close()
        self.tracing.shutdown()

    def status(self) -> security_server_pb2.StatusReply:
        view = self.conf.view
        consumer, provider = self.consumer, self.provider
        reply = security_server_pb2.StatusReply(
            server_id=self.config.server_id,
            conf_version=view.version if view else 0,
            conf_expires_at_ms=int(view.expires_at * 1000) if view else 0,
            conf_error=self.conf.last_error or "",
            exchanges=(consumer.exchanges if consumer else 0)
            + (provider.exchanges if provider else 0),
            refusals=(consumer.refusals if consumer else 0)
            + (provider.refusals if provider else 0),
            consumer_port=self.ports.get("consumer", 0),
            provider_port=self.ports.get("provider", 0),
            log_size=self._log.size if self._log is not None else 0,
        )
        age = self.feed_state().age_ms(int(time.time() * 1000))
        reply.consent_feed_age_ms = age if age is not None else -1
        for row in self.guard.snapshot():
            breaker, bulkhead = row.breaker, row.bulkhead
            reply.services.add(
                service=row.service_id,
                servers=", ".join(f"{e.server_id} {e.health.value}" for e in row.endpoints),
                breaker=breaker.state.value,
                failure_rate=breaker.failure_rate,
                slow_call_rate=breaker.slow_call_rate,
                in_flight=bulkhead.in_flight,
                queued=bulkhead.queued,
                shed=bulkhead.shed,
                calls=breaker.calls,
            )
        return reply


_NO_FEED = RevocationState()


def _key(path: Path) -> bytes:
    """A log key file; created on first start (keys live outside the database)."""
    if path.exists():
        return log_keys.load_key_file(path)
    return log_keys.generate_key_file(path)


async def serve(config_path: Path, ready_file: Path | None) -> None:
    config = SsConfig.load(config_path)
    server = SecurityServer(config)
    await server.start()
    info: dict[str, Any] = {"pid": os.getpid(), **server.ports, "started": time.time()}
    write_ready_file(ready_file, info)
    log.info("security server %s serving on %s", config.server_id, server.ports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
