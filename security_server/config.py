"""Configuration of one security server, read from a TOML file.

Relative paths are relative to the file's folder. Every problem is a
`CONFIG_INVALID` error naming the key, never a traceback.

Example:

    server_id = "KZ/GOV/990140000017/ss1"
    state_dir = "state"                       # cache, audit log, keys

    [listen]
    consumer = "127.0.0.1:0"                  # local clients (plaintext, loopback)
    provider = "127.0.0.1:0"                  # remote security servers (mutual TLS)
    metrics = ""                              # e.g. "127.0.0.1:9464" for /metrics

    [keys]
    ca_certificate = "../pki/ca.cert.pem"     # trust anchor, configured out of band
    tls_key = "tls.key.pem"
    tls_certificate = "tls.cert.pem"
    signing_key = "signing.key.pem"
    signing_certificate = "signing.cert.pem"
    passphrase_file = ""                      # else $GOVBUS_KEY_PASSPHRASE

    [globalconf]
    source = "grpcs://127.0.0.1:7001"         # or "file:/path/to/conf.bin"
    interval_s = 60

    [audit]
    url = ""                                  # default: sqlite in state_dir
    pseudonym_key = "pseudonym.key"
    data_key = "data.key"
    store_bodies = false
    checkpoint_interval_s = 10
    witness = true                            # submit checkpoints to the registry's witness;
                                              # default: when the global conf names a registry

    [exchange]
    freshness_s = 60

    [consent]
    staleness_s = 5

    [resilience]
    enabled = true                            # false: no breakers, bulkheads, retries
                                              # (a drill that shows what they prevent)

    [telemetry]
    traces_file = ""                          # e.g. "traces.jsonl": OpenTelemetry spans

    [adapters]                                # provider side: service id -> adapter
    "KZ/GOV/040340123459/gbdfl/person/v1" = "127.0.0.1:50051"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govbus.errors import ConfigInvalid, InvalidIdentifier
from govbus.ids import ServerId, ServiceId

__all__ = ["SsConfig", "write_ss_config"]


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigInvalid(f"[{name}] must be a table")
    return value


def _get(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigInvalid(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class SsConfig:
    server_id: str
    member_id: str
    base: Path
    state_dir: Path
    consumer_listen: str
    provider_listen: str
    metrics_listen: str
    ca_certificate: Path
    tls_key: Path
    tls_certificate: Path
    signing_key: Path
    signing_certificate: Path
    passphrase_file: Path | None
    conf_source: str
    conf_interval_s: float
    audit_url: str
    pseudonym_key: Path
    data_key: Path
    store_bodies: bool
    checkpoint_interval_s: float
    freshness_s: float
    consent_staleness_s: float
    traces_file: Path | None = None
    resilience: bool = True
    adapters: dict[str, str] = field(default_factory=dict)
    # [audit] witness: as configured, or None = when the global configuration names a registry.
    witness: bool | None = None

    @classmethod
    def load(cls, path: Path) -> SsConfig:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigInvalid(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigInvalid(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(data, path.parent.resolve())

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path) -> SsConfig:
        def rel(value: str) -> Path:
            p = Path(value)
            return p if p.is_absolute() else base / p

        try:
            server = ServerId.parse(_get(data, "server_id", str, "", "config"))
        except InvalidIdentifier as exc:
            raise ConfigInvalid(f"server_id: {exc.message}") from None
        state_dir = rel(_get(data, "state_dir", str, "state", "config"))
        listen, keys = _section(data, "listen"), _section(data, "keys")
        conf, audit = _section(data, "globalconf"), _section(data, "audit")
        exchange, consent = _section(data, "exchange"), _section(data, "consent")
        traces = _get(_section(data, "telemetry"), "traces_file", str, "", "telemetry")
        adapters: dict[str, str] = {}
        for service, address in _section(data, "adapters").items():
            try:
                ServiceId.parse(service)
            except InvalidIdentifier as exc:
                raise ConfigInvalid(f"[adapters] {exc.message}") from None
            if not isinstance(address, str) or ":" not in address:
                raise ConfigInvalid(f"[adapters] {service} must be host:port, got {address!r}")
            adapters[service] = address

        def key_path(name: str) -> Path:
            value = _get(keys, name, str, "", "keys")
            if not value:
                raise ConfigInvalid(f"keys.{name} is required")
            return rel(value)

        source = _get(conf, "source", str, "", "globalconf")
        if not source.startswith(("grpcs://", "file:")):
            raise ConfigInvalid("globalconf.source must be grpcs://host:port or file:/path")
        passphrase = _get(keys, "passphrase_file", str, "", "keys")
        audit_url = _get(audit, "url", str, "", "audit") or f"sqlite:///{state_dir / 'audit.db'}"
        witness = audit.get("witness")
        if witness is not None and not isinstance(witness, bool):
            raise ConfigInvalid(f"audit.witness must be true or false, got {witness!r}")
        return cls(
            server_id=str(server),
            member_id=str(server.member),
            base=base,
            state_dir=state_dir,
            consumer_listen=_get(listen, "consumer", str, "127.0.0.1:0", "listen"),
            provider_listen=_get(listen, "provider", str, "127.0.0.1:0", "listen"),
            metrics_listen=_get(listen, "metrics", str, "", "listen"),
            ca_certificate=key_path("ca_certificate"),
            tls_key=key_path("tls_key"),
            tls_certificate=key_path("tls_certificate"),
            signing_key=key_path("signing_key"),
            signing_certificate=key_path("signing_certificate"),
            passphrase_file=rel(passphrase) if passphrase else None,
            conf_source=source,
            conf_interval_s=_get(conf, "interval_s", float, 60.0, "globalconf"),
            audit_url=audit_url,
            pseudonym_key=rel(_get(audit, "pseudonym_key", str, "pseudonym.key", "audit")),
            data_key=rel(_get(audit, "data_key", str, "data.key", "audit")),
            store_bodies=_get(audit, "store_bodies", bool, False, "audit"),
            checkpoint_interval_s=_get(audit, "checkpoint_interval_s", float, 10.0, "audit"),
            freshness_s=_get(exchange, "freshness_s", float, 60.0, "exchange"),
            consent_staleness_s=_get(consent, "staleness_s", float, 5.0, "consent"),
            traces_file=rel(traces) if traces else None,
            resilience=_get(_section(data, "resilience"), "enabled", bool, True, "resilience"),
            adapters=adapters,
            witness=witness,
        )


def write_ss_config(
    folder: Path,
    server_id: str,
    *,
    ca_certificate: Path,
    conf_source: str,
    poll_s: float,
    adapters: dict[str, str],
    listen: dict[str, str] | None = None,
    extra: str = "",
) -> Path:
    """Write `folder/ss.toml` for a server whose keys are `folder/{tls,signing}.{key,cert}.pem`.

    `listen` sets `[listen]` addresses (consumer, provider, metrics); `extra` is TOML
    appended as it is (further sections, e.g. `[audit]` or `[resilience]`).
    """
    lines = "\n".join(f'"{service}" = "{address}"' for service, address in adapters.items())
    bound = "".join(f'{key} = "{value}"\n' for key, value in (listen or {}).items() if value)
    config = folder / "ss.toml"
    config.write_text(
        f'''server_id = "{server_id}"
state_dir = "state"

{f"[listen]{chr(10)}{bound}" if bound else ""}
[keys]
ca_certificate = "{ca_certificate}"
tls_key = "tls.key.pem"
tls_certificate = "tls.cert.pem"
signing_key = "signing.key.pem"
signing_certificate = "signing.cert.pem"

[globalconf]
source = "{conf_source}"
interval_s = {poll_s}

[exchange]
freshness_s = 30

{extra}

[adapters]
{lines}
'''
    )
    return config
