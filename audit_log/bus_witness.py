"""The witness on the bus: which logs the registry co-signs, and how servers find it.

Conventions both sides share, taken from the signed global configuration:

- a security server's audit log is named `govbus/<server id>` (`log_origin`) and
  signs its checkpoints with the member signing key whose certificate the registry
  issued with the server's registration (`SecurityServer.signing_certificate`);
- the registry co-signs as `WITNESS_NAME` with the key of
  `GlobalConf.witness_certificate` (`witness_key`), and is reached at
  `GlobalConf.registry_address` over server-authenticated TLS.

`witnessed_logs(view)` is the pure mapping from a configuration to the logs the
witness accepts: a server whose signing certificate is missing, invalid, revoked,
expired or issued to another member is left out (and said why), so a revoked key
can no longer extend its log's witnessed history. `registry_witness` is the
registry extension (loaded by name, see `registry.server.DEFAULT_EXTENSIONS`)
that serves `govbus.v1.WitnessService` on the registry's public port with those
logs, following the configuration in force, and its state in the registry's
state directory (SQLite) or PostgreSQL database.

This module never imports the registry: the registry hosts it through a
structural `WitnessHost`, and the auditor's tools stay free of servers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc

from audit_log.note import NoteKey
from audit_log.witness import SERVICE_NAME, Witness, add_witness_servicer, open_witness_store
from govbus.crypto.keys import Signer
from govbus.crypto.pki import Role, load_certificate
from govbus.errors import GovbusError
from govbus.globalconf import GlobalConfView

__all__ = [
    "WITNESS_NAME",
    "ConfLogs",
    "WitnessHost",
    "WitnessedLogs",
    "log_origin",
    "registry_witness",
    "witness_key",
    "witness_store_url",
    "witnessed_logs",
]

log = logging.getLogger("govbus.witness")

#: The key name of the registry's cosignatures (`--witness-name` of `govbus audit verify`).
WITNESS_NAME = "govbus/witness"
_ORIGIN_PREFIX = "govbus/"


def log_origin(server_id: str) -> str:
    """The origin (checkpoint key name) of a security server's audit log."""
    return _ORIGIN_PREFIX + server_id


@dataclass(frozen=True, slots=True)
class WitnessedLogs:
    """The logs one configuration lets the witness co-sign."""

    version: int
    keys: Mapping[str, NoteKey]  # origin -> the log's checkpoint key
    left_out: Mapping[str, str]  # server id -> why its log is not witnessed


def witnessed_logs(view: GlobalConfView) -> WitnessedLogs:
    """Every security server of `view` whose signing certificate is valid now (per the
    configuration's own trust anchor and revocations) and issued to its owner."""
    keys: dict[str, NoteKey] = {}
    left_out: dict[str, str] = {}
    for server in view.conf.security_servers:
        if not server.signing_certificate:
            left_out[server.id] = "no signing certificate in the configuration"
            continue
        try:
            identity = view.anchor.validate(server.signing_certificate, role=Role.SIGNING)
            if identity.name != server.owner:
                left_out[server.id] = (
                    f"its signing certificate speaks for {identity.name}, not {server.owner}"
                )
                continue
            origin = log_origin(server.id)
            keys[origin] = NoteKey(origin, identity.public_key)
        except GovbusError as exc:
            left_out[server.id] = f"{exc.code}: {exc.message}"
    return WitnessedLogs(view.version, keys, left_out)


def witness_key(view: GlobalConfView) -> NoteKey | None:
    """The verifier key of the registry's cosignatures named by `view` (None if it names
    none). Raises a `Certificate*` error if the certificate is not a valid registry one."""
    der = view.conf.witness_certificate
    if not der:
        return None
    identity = view.anchor.validate(der, role=Role.REGISTRY)
    return NoteKey(WITNESS_NAME, identity.public_key, cosigner=True)


class ConfLogs:
    """The witness's known logs, rebuilt when the configuration in force changes version
    (asked on every request, so a server is witnessed as soon as it is published)."""

    def __init__(self, current_conf: Callable[[], GlobalConfView]) -> None:
        self._current_conf = current_conf
        self._logs: WitnessedLogs | None = None

    def __call__(self) -> Mapping[str, NoteKey]:
        view = self._current_conf()
        logs = self._logs
        if logs is None or logs.version != view.version:
            logs = witnessed_logs(view)
            if self._logs is None or self._logs.left_out != logs.left_out:
                for server_id, why in sorted(logs.left_out.items()):
                    log.warning("witness: log of %s not witnessed: %s", server_id, why)
            self._logs = logs
        return logs.keys


class WitnessHost(Protocol):
    """What the witness needs from its host (the registry's `RegistryContext`)."""

    @property
    def state_dir(self) -> Path: ...
    @property
    def signer(self) -> Signer: ...
    @property
    def signing_certificate(self) -> bytes: ...
    @property
    def current_conf(self) -> Callable[[], GlobalConfView]: ...
    @property
    def on_stop(self) -> list[Callable[[], Awaitable[None]]]: ...
    @property
    def database(self) -> str | None: ...
    @property
    def db_schema(self) -> str: ...


def witness_store_url(host: WitnessHost) -> str:
    """The registry's PostgreSQL database (schema `<registry schema>_witness`) when it
    keeps its state there, else `witness.db` in its state directory."""
    database = host.database or ""
    if database.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(database)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        query = [(k, v) for k, v in query if k != "schema"]
        query.append(("schema", f"{host.db_schema}_witness"))
        return urlunsplit(parts._replace(query=urlencode(query)))
    return f"sqlite:///{host.state_dir.resolve() / 'witness.db'}"


def registry_witness(server: grpc.aio.Server, host: WitnessHost) -> Sequence[str]:
    """Registry extension: serve the witness on `server` (the registry's public port)."""
    certificate = load_certificate(host.signing_certificate)
    public_key = certificate.public_key()
    store = open_witness_store(witness_store_url(host))
    try:
        witness = Witness(
            WITNESS_NAME,
            host.signer,
            public_key,  # type: ignore[arg-type]  # checked by Witness: Ed25519 or P-256
            ConfLogs(host.current_conf),
            store,
        )
    except GovbusError:
        store.close()
        raise
    servicer = add_witness_servicer(server, witness)

    async def close() -> None:
        servicer.close()
        store.close()

    host.on_stop.append(close)
    log.info("witness %s serving (key ID %s)", WITNESS_NAME, witness.key.key_id.hex())
    return [SERVICE_NAME]
