"""The security server's side of the witness: its audit log's checkpoints go to the
registry named by the global configuration, and the outcome is visible in metrics.

- `witness_endpoint(mode, view)` (pure) says where checkpoints go: nowhere when
  `[audit] witness = false`; else the configuration's `registry_address` with its
  `witness_certificate` (by default only when the configuration names them, so a
  bus distributed as a file with no registry keeps plain local checkpoints).
- `LogWitnessing` keeps `AuditLog.start_checkpointing` pointed at that endpoint —
  a TLS channel checked against the bus CA, and the witness key to check each
  cosignature with — and switches when a new configuration names another one.
- `AuditLogCollector` exports the log size and the witness's progress and refusals
  (`govbus_audit_witness_failures_total{code=…}`) as Prometheus metrics.

It never judges a checkpoint itself: the witness does, and the log checks the
cosignature it gets back. A refusal is logged by the log and counted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audit_log.bus_witness import witness_key
from audit_log.log import AuditLog
from audit_log.note import NoteKey
from govbus.errors import ConfigInvalid, GovbusError
from govbus.globalconf import GlobalConfView

__all__ = ["AuditLogCollector", "LogWitnessing", "WitnessEndpoint", "witness_endpoint"]

log = logging.getLogger("govbus.ss")

# As the global-configuration client: a registry that comes back is reached within ~5 s.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 1000),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    address: str  # host:port of the registry's public (TLS) port
    certificate: bytes  # DER of the witness (registry signing) certificate


def witness_endpoint(mode: bool | None, view: GlobalConfView | None) -> WitnessEndpoint | None:
    """Where checkpoints go under `view`, or None for local checkpoints only. Raises
    `ConfigInvalid` when the witness is required but the configuration names none."""
    if mode is False or view is None:
        return None
    conf = view.conf
    if conf.registry_address and conf.witness_certificate:
        return WitnessEndpoint(conf.registry_address, conf.witness_certificate)
    if mode:
        raise ConfigInvalid(
            f"[audit] witness = true, but global configuration v{view.version} names no "
            "registry_address and witness_certificate; checkpoints stay local"
        )
    return None


@dataclass(frozen=True, slots=True)
class _Wanted:
    endpoint: WitnessEndpoint | None
    key: NoteKey | None


class LogWitnessing:
    """Runs the log's checkpointing with the witness the configuration names."""

    def __init__(
        self,
        audit: AuditLog,
        interval: float,
        mode: bool | None,
        ca_pem: bytes,
        *,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self._log = audit
        self._interval = interval
        self._mode = mode
        self._ca_pem = ca_pem
        self._wanted = _Wanted(None, None)
        self._running: _Wanted | None = None
        self._channel: grpc.aio.Channel | None = None
        self._switch: asyncio.Task[None] | None = None
        self._refused_version = 0
        self._closed = False
        if metrics is not None:
            metrics.register(AuditLogCollector(audit, self))

    @property
    def endpoint(self) -> WitnessEndpoint | None:
        """The witness checkpoints are being submitted to (None: local checkpoints)."""
        return self._running.endpoint if self._running is not None else None

    def start(self, view: GlobalConfView | None) -> None:
        """Begin checkpointing, with the witness `view` names if any."""
        self.apply(view)
        if self._switch is None:
            # Nothing to switch to: checkpoints stay local until a configuration says more.
            self._log.start_checkpointing(self._interval)
            self._running = self._wanted

    def apply(self, view: GlobalConfView | None) -> None:
        """A configuration is in force: switch witness if it names another one."""
        if self._closed:
            return
        try:
            endpoint = witness_endpoint(self._mode, view)
            key = witness_key(view) if endpoint is not None and view is not None else None
        except GovbusError as exc:
            version = view.version if view is not None else 0
            if version != self._refused_version:
                self._refused_version = version
                log.error("audit witness: %s", exc)
            return
        wanted = _Wanted(endpoint, key)
        if wanted.endpoint == self._wanted.endpoint:
            return
        self._wanted = wanted
        if self._switch is None or self._switch.done():
            self._switch = asyncio.get_running_loop().create_task(
                self._follow(), name="audit-witness-switch"
            )

    async def _follow(self) -> None:
        try:
            await self._switch_until_current()
        except GovbusError as exc:  # the log closed under us: nothing left to checkpoint
            log.warning("audit witness not switched: %s", exc)

    async def _switch_until_current(self) -> None:
        while not self._closed and (
            self._running is None or self._running.endpoint != self._wanted.endpoint
        ):
            wanted = self._wanted
            await self._log.stop_checkpointing()
            await self._close_channel()
            if wanted.endpoint is None:
                self._log.start_checkpointing(self._interval)
                log.info("audit checkpoints of %s stay local (no witness)", self._log.origin)
            else:
                self._channel = grpc.aio.secure_channel(
                    wanted.endpoint.address,
                    grpc.ssl_channel_credentials(root_certificates=self._ca_pem),
                    options=_CHANNEL_OPTIONS,
                )
                self._log.start_checkpointing(self._interval, self._channel, witness_key=wanted.key)
                log.info(
                    "audit checkpoints of %s go to the witness at %s",
                    self._log.origin,
                    wanted.endpoint.address,
                )
            self._running = wanted

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        """Stop checkpointing and close the channel (the log itself stays open)."""
        self._closed = True
        if self._switch is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._switch
        await self._log.stop_checkpointing()
        await self._close_channel()


class AuditLogCollector(Collector):
    """The audit log's size and the witness's view of it, read at scrape time."""

    def __init__(self, audit: AuditLog, witnessing: LogWitnessing) -> None:
        self._log = audit
        self._witnessing = witnessing

    def collect(self) -> Iterator[Metric]:
        status = self._log.witness_status
        yield GaugeMetricFamily(
            "govbus_audit_log_size", "Durable records in the audit log", value=self._log.size
        )
        yield GaugeMetricFamily(
            "govbus_audit_witness_enabled",
            "1 when checkpoints are submitted to the registry's witness",
            value=1 if self._witnessing.endpoint is not None else 0,
        )
        yield GaugeMetricFamily(
            "govbus_audit_witnessed_size",
            "Size of the newest checkpoint the witness co-signed (0: none yet)",
            value=status.witnessed_size or 0,
        )
        yield GaugeMetricFamily(
            "govbus_audit_witness_cosigned_timestamp_seconds",
            "When the newest cosignature arrived (0: none since start)",
            value=status.cosigned_at_ms / 1000,
        )
        yield GaugeMetricFamily(
            "govbus_audit_witness_ok",
            "1 unless the latest checkpoint submission failed",
            value=0 if status.last_error is not None else 1,
        )
        failures = CounterMetricFamily(
            "govbus_audit_witness_failures",
            "Checkpoint submissions that failed, by govbus error code (PROOF_INVALID: refused "
            "as a fork or rollback)",
            labels=["code"],
        )
        for code, count in status.failures:
            failures.add_metric([code], count)
        yield failures
