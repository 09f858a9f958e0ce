"""The signed global configuration, as security servers and tools see it.

`sign_global_conf` (registry side) and `verify_global_conf` (everyone else) are
pure functions. `GlobalConfView` is the verified, immutable, indexed snapshot
the hot path reads; a new configuration is a new view, swapped in atomically.
`GlobalConfClient` polls a source, verifies every download against the trust
anchor configured out of band, refuses older versions and same-version
rewrites, keeps the last good copy on disk, and serves on it until its
`expires_at`; from then on `current()` raises `GlobalConfExpired`.

The registry being down must never stop exchanges before the copy expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509

from govbus.crypto.keys import Signer, atomic_write
from govbus.crypto.pki import Role, TrustAnchor, certificate_der, load_certificate
from govbus.errors import (
    AccessDenied,
    GlobalConfExpired,
    GlobalConfInvalid,
    GovbusError,
    UnknownMethod,
    UnknownService,
)
from govbus.pb.govbus.v1 import globalconf_pb2, globalconf_pb2_grpc

__all__ = [
    "Fetch",
    "GlobalConfClient",
    "GlobalConfView",
    "file_source",
    "grpc_source",
    "sign_global_conf",
    "verify_global_conf",
]

log = logging.getLogger("govbus.globalconf")

Fetch = Callable[[], Awaitable[bytes]]


def sign_global_conf(
    conf: globalconf_pb2.GlobalConf, signer: Signer, signer_certificate: bytes
) -> bytes:
    """Serialize and sign a configuration; returns the `SignedGlobalConf` bytes."""
    body = conf.SerializeToString(deterministic=True)
    signed = globalconf_pb2.SignedGlobalConf(
        conf=body, signature=signer.sign(body), signer_certificate=signer_certificate
    )
    return signed.SerializeToString(deterministic=True)


def _ts(value: dt.datetime) -> float:
    return value.timestamp()


@dataclass(frozen=True, eq=False)
class GlobalConfView:
    """A verified configuration with the indexes the exchange path needs."""

    conf: globalconf_pb2.GlobalConf
    raw: bytes  # the SignedGlobalConf bytes it came from
    anchor: TrustAnchor  # CA certificates + revoked serials of this version
    services: dict[str, globalconf_pb2.Service] = field(repr=False)
    servers: dict[str, globalconf_pb2.SecurityServer] = field(repr=False)
    methods: dict[tuple[str, str], globalconf_pb2.Method] = field(repr=False)
    _access: dict[str, frozenset[str]] = field(repr=False)
    _groups_of: dict[str, frozenset[str]] = field(repr=False)
    _legal: dict[tuple[str, str], tuple[globalconf_pb2.LegalBasis, ...]] = field(repr=False)
    _legal_by_id: dict[str, globalconf_pb2.LegalBasis] = field(repr=False)

    @property
    def version(self) -> int:
        return self.conf.version

    @property
    def expires_at(self) -> float:
        return self.conf.expires_at.seconds + self.conf.expires_at.nanos / 1e9

    @property
    def generated_at(self) -> float:
        return self.conf.generated_at.seconds + self.conf.generated_at.nanos / 1e9

    @classmethod
    def build(
        cls, conf: globalconf_pb2.GlobalConf, raw: bytes, anchor_cas: Sequence[x509.Certificate]
    ) -> GlobalConfView:
        revoked = [int.from_bytes(r.serial, "big") for r in conf.revoked]
        cas: list[x509.Certificate] = list(anchor_cas)
        known = {certificate_der(c) for c in cas}
        for der in conf.ca_certificates:
            if der not in known:
                # A CA listed in the configuration is trusted only because the
                # configuration itself was signed under the configured anchor.
                cas.append(load_certificate(der))
                known.add(der)
        groups_of: dict[str, set[str]] = {}
        for group in conf.groups:
            for member in group.members:
                groups_of.setdefault(member, set()).add(group.id)
        access: dict[str, set[str]] = {}
        for right in conf.access_rights:
            access.setdefault(right.service, set()).add(right.client)
        legal: dict[tuple[str, str], list[globalconf_pb2.LegalBasis]] = {}
        for basis in conf.legal_bases:
            legal.setdefault((basis.client, basis.service), []).append(basis)
        return cls(
            conf=conf,
            raw=raw,
            anchor=TrustAnchor(cas, revoked),
            services={s.id: s for s in conf.services},
            servers={s.id: s for s in conf.security_servers},
            methods={(s.id, m.name): m for s in conf.services for m in s.methods},
            _access={k: frozenset(v) for k, v in access.items()},
            _groups_of={k: frozenset(v) for k, v in groups_of.items()},
            _legal={k: tuple(v) for k, v in legal.items()},
            _legal_by_id={b.id: b for b in conf.legal_bases},
        )

    # --- questions the exchange path asks ----------------------------------------

    def check_fresh(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if now >= self.expires_at:
            expired = dt.datetime.fromtimestamp(self.expires_at, dt.UTC)
            raise GlobalConfExpired(
                f"global configuration v{self.version} expired at {expired:%Y-%m-%d %H:%M:%S} UTC "
                "and no newer one could be downloaded; check the registry connection",
                retry_after=5.0,
            )

    def service(self, service_id: str) -> globalconf_pb2.Service:
        try:
            return self.services[service_id]
        except KeyError:
            raise UnknownService(
                f"service {service_id} is not published in the global configuration"
            ) from None

    def method(self, service_id: str, method: str) -> globalconf_pb2.Method:
        found = self.methods.get((service_id, method))
        if found is None:
            service = self.service(service_id)
            raise UnknownMethod(
                f"service {service_id} ({service.grpc_service}) has no method {method}"
            )
        return found

    def may_call(self, client: str, service_id: str) -> bool:
        allowed = self._access.get(service_id)
        if not allowed:
            return False
        if client in allowed:
            return True
        return not allowed.isdisjoint(self._groups_of.get(client, ()))

    def check_access(self, client: str, service_id: str) -> None:
        if not self.may_call(client, service_id):
            raise AccessDenied(f"{client} has no access right to {service_id}")

    def legal_bases(self, client: str, service_id: str) -> tuple[globalconf_pb2.LegalBasis, ...]:
        return self._legal.get((client, service_id), ())

    def legal_basis(self, basis_id: str) -> globalconf_pb2.LegalBasis | None:
        return self._legal_by_id.get(basis_id)

    def servers_of(self, service_id: str) -> list[globalconf_pb2.SecurityServer]:
        """The security servers that serve `service_id` and can be called (have an address)."""
        service = self.service(service_id)
        return [
            self.servers[s]
            for s in service.servers
            if s in self.servers and self.servers[s].address
        ]


def verify_global_conf(
    raw: bytes,
    anchor_cas: Sequence[x509.Certificate],
    *,
    previous: GlobalConfView | None = None,
    now: float | None = None,
) -> GlobalConfView:
    """Verify downloaded bytes; raise `GlobalConfInvalid` saying why they are refused.

    Checks: parses; signer certificate chains to the configured anchor with role
    `registry` and is not revoked (by this or the previous version); the
    signature covers the exact configuration bytes; the version is not lower
    than the previous one, nor equal with different content.
    """
    signed = globalconf_pb2.SignedGlobalConf()
    try:
        signed.ParseFromString(raw)
        conf = globalconf_pb2.GlobalConf()
        conf.ParseFromString(signed.conf)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError or others on garbage
        raise GlobalConfInvalid(
            "global configuration is not a valid SignedGlobalConf (damaged download?)"
        ) from None
    if not signed.conf or not signed.signature.value:
        raise GlobalConfInvalid("global configuration is unsigned")
    at = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    revoked = {int.from_bytes(r.serial, "big") for r in conf.revoked}
    if previous is not None:
        revoked |= previous.anchor.revoked
    try:
        identity = TrustAnchor(anchor_cas, revoked).validate(
            signed.signer_certificate, role=Role.REGISTRY, at=at
        )
        identity.verifier().verify(signed.signature, signed.conf)
    except GovbusError as exc:
        raise GlobalConfInvalid(
            f"global configuration refused: {exc.code}: {exc.message}"
        ) from None
    if previous is not None:
        if conf.version < previous.version:
            raise GlobalConfInvalid(
                f"global configuration v{conf.version} is older than the one in force "
                f"(v{previous.version})"
            )
        if conf.version == previous.version and raw != previous.raw:
            raise GlobalConfInvalid(
                f"global configuration v{conf.version} differs from the one in force "
                "with the same version"
            )
    try:
        return GlobalConfView.build(conf, raw, anchor_cas)
    except GovbusError as exc:
        raise GlobalConfInvalid(f"global configuration is inconsistent: {exc.message}") from None


def file_source(path: Path) -> Fetch:
    async def fetch() -> bytes:
        return await asyncio.to_thread(path.read_bytes)

    return fetch


def grpc_source(
    address: str, ca_pem: bytes, timeout: float = 10.0, *, reconnect_backoff: float = 5.0
) -> Fetch:
    """Download from the registry's `GlobalConfService` over TLS (server authenticated).

    `reconnect_backoff` caps gRPC's reconnection back-off (default up to 120 s), so a
    registry that comes back is reached again within about that time, not minutes later.
    """
    backoff_ms = max(100, int(reconnect_backoff * 1000))
    channel = grpc.aio.secure_channel(
        address,
        grpc.ssl_channel_credentials(root_certificates=ca_pem),
        options=(
            ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(1000, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ),
    )
    stub = globalconf_pb2_grpc.GlobalConfServiceStub(channel)

    async def fetch() -> bytes:
        answer = await stub.Get(globalconf_pb2.GetGlobalConfRequest(), timeout=timeout)
        data: bytes = answer.SerializeToString(deterministic=True)
        return data

    return fetch


class GlobalConfClient:
    """Keeps a verified, current global configuration for one security server."""

    def __init__(
        self,
        anchor_cas: Sequence[x509.Certificate],
        fetch: Fetch,
        cache_path: Path | None = None,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not anchor_cas:
            raise GlobalConfInvalid("no trust anchor configured for the global configuration")
        self._anchor = list(anchor_cas)
        self._fetch = fetch
        self._cache = cache_path
        self.interval = interval
        self._clock = clock
        self._view: GlobalConfView | None = None
        self._listeners: list[Callable[[GlobalConfView], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None
        if cache_path is not None and cache_path.exists():
            try:
                self._view = verify_global_conf(
                    cache_path.read_bytes(), self._anchor, now=self._clock()
                )
            except GlobalConfInvalid as exc:
                log.warning("cached global configuration %s refused: %s", cache_path, exc.message)

    def on_change(self, listener: Callable[[GlobalConfView], None]) -> None:
        self._listeners.append(listener)
        if self._view is not None:
            listener(self._view)

    @property
    def view(self) -> GlobalConfView | None:
        """The copy in force, expired or not (for status pages)."""
        return self._view

    def current(self) -> GlobalConfView:
        """The copy in force; raises `GlobalConfExpired` when there is none usable."""
        view = self._view
        if view is None:
            raise GlobalConfExpired("no global configuration downloaded yet", retry_after=5.0)
        view.check_fresh(self._clock())
        return view

    def accept(self, raw: bytes) -> bool:
        """Verify `raw` and put it in force. True if it changed the copy in force."""
        view = verify_global_conf(raw, self._anchor, previous=self._view, now=self._clock())
        if self._view is not None and view.version == self._view.version:
            return False
        if self._cache is not None:
            atomic_write(self._cache, raw)
        self._view = view
        for listener in self._listeners:
            listener(view)
        return True

    async def refresh(self) -> bool:
        """One download; errors are recorded and raised (the copy in force stays)."""
        try:
            raw = await self._fetch()
            changed = self.accept(raw)
        except GovbusError as exc:
            self.last_error = str(exc)
            raise
        except (grpc.RpcError, OSError) as exc:
            self.last_error = f"download failed: {exc}"
            raise GlobalConfInvalid(self.last_error, retry_after=self.interval) from None
        self.last_error = None
        self.last_success = self._clock()
        return changed

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except GovbusError:
                pass  # recorded in last_error; the copy in force stays
            except Exception:
                # Without this, one unexpected error would end polling silently and the
                # server would run into GLOBAL_CONF_EXPIRED with the registry up.
                log.exception("global configuration download failed unexpectedly")
                self.last_error = "download failed unexpectedly (see the log)"
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="globalconf-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
