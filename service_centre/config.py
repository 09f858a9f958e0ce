"""Configuration of the service-centre application, read from a TOML file.

    client = "KZ/GOV/030140100014/service-centre"   # the ЦОН's subsystem
    security_server = "127.0.0.1:8081"             # its own consumer security server
    operator = "operator-017"                      # default initiator of visits
    state_dir = "state"                            # visits and the queue (SQLite)

    [web]
    listen = "127.0.0.1:0"

    [consent]
    address = "127.0.0.1:7443"                     # the consent service, public port (TLS)
    operator_address = "127.0.0.1:7444"            # its operator port (mutual TLS)
    ca_certificate = "ca.cert.pem"
    operator_key = "operator.key.pem"              # role operator; passphrase from
    operator_certificate = "operator.cert.pem"     # $GOVBUS_KEY_PASSPHRASE or passphrase_file
    passphrase_file = ""

    [queue]
    max_backoff_s = 30                             # longest wait between two retries
    tick_s = 0.5

    [services]                                     # agency code -> published service id
    gbdfl = "KZ/GOV/010140100000/gbdfl/person-registry/v1"

Relative paths are relative to the file's folder. Every problem is a
`CONFIG_INVALID` error naming the key, never a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govbus.errors import ConfigInvalid, InvalidIdentifier
from govbus.ids import ServiceId, SubsystemId

__all__ = ["CentreConfig", "write_config"]


def _table(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigInvalid(f"[{name}] must be a table")
    return value


def _text(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise ConfigInvalid(f"{where}{key} must be a non-empty string, got {value!r}")
    return value


def _number(table: Mapping[str, Any], key: str, where: str, default: float, low: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise ConfigInvalid(f"{where}{key} must be a number >= {low}, got {value!r}")
    return float(value)


def _address(value: str, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigInvalid(f"{what} must be host:port, got {value!r}")
    return value


@dataclass(frozen=True)
class CentreConfig:
    client: str
    security_server: str
    operator: str
    state_dir: Path
    web_listen: str
    consent_address: str
    consent_operator_address: str
    ca_certificate: Path
    operator_key: Path
    operator_certificate: Path
    passphrase_file: Path | None
    max_backoff_s: float
    tick_s: float
    services: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> CentreConfig:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigInvalid(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigInvalid(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(data, path.parent.resolve())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Path) -> CentreConfig:
        def rel(value: str) -> Path:
            p = Path(value)
            return p if p.is_absolute() else base / p

        try:
            client = str(SubsystemId.parse(_text(data, "client", "")))
        except InvalidIdentifier as exc:
            raise ConfigInvalid(f"client: {exc.message}") from None
        web, consent, queue = _table(data, "web"), _table(data, "consent"), _table(data, "queue")
        services: dict[str, str] = {}
        for code, service in _table(data, "services").items():
            if not isinstance(service, str):
                raise ConfigInvalid(f"[services] {code} must be a service id")
            try:
                services[code] = str(ServiceId.parse(service))
            except InvalidIdentifier as exc:
                raise ConfigInvalid(f"[services] {code}: {exc.message}") from None
        passphrase = consent.get("passphrase_file", "")
        if not isinstance(passphrase, str):
            raise ConfigInvalid("consent.passphrase_file must be a path")
        return cls(
            client=client,
            security_server=_address(_text(data, "security_server", ""), "security_server"),
            operator=_text(data, "operator", "", "operator"),
            state_dir=rel(_text(data, "state_dir", "", "state")),
            web_listen=_address(_text(web, "listen", "web.", "127.0.0.1:0"), "web.listen"),
            consent_address=_address(_text(consent, "address", "consent."), "consent.address"),
            consent_operator_address=_address(
                _text(consent, "operator_address", "consent."), "consent.operator_address"
            ),
            ca_certificate=rel(_text(consent, "ca_certificate", "consent.")),
            operator_key=rel(_text(consent, "operator_key", "consent.")),
            operator_certificate=rel(_text(consent, "operator_certificate", "consent.")),
            passphrase_file=rel(passphrase) if passphrase else None,
            max_backoff_s=_number(queue, "max_backoff_s", "queue.", 30.0, 0.1),
            tick_s=_number(queue, "tick_s", "queue.", 0.5, 0.01),
            services=services,
        )


def _quoted(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def write_config(
    directory: Path,
    *,
    client: str,
    security_server: str,
    operator: str,
    ca_cert: Path,
    operator_key: Path,
    operator_cert: Path,
    consent_address: str,
    consent_operator_address: str,
    services: Mapping[str, str],
    max_backoff_s: float = 30.0,
    web_listen: str = "127.0.0.1:0",
) -> Path:
    """Write `directory/centre.toml` (the stack's way to configure the application)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"client = {_quoted(client)}",
        f"security_server = {_quoted(security_server)}",
        f"operator = {_quoted(operator)}",
        'state_dir = "state"',
        "",
        "[web]",
        f"listen = {_quoted(web_listen)}",
        "",
        "[consent]",
        f"address = {_quoted(consent_address)}",
        f"operator_address = {_quoted(consent_operator_address)}",
        f"ca_certificate = {_quoted(ca_cert)}",
        f"operator_key = {_quoted(operator_key)}",
        f"operator_certificate = {_quoted(operator_cert)}",
        "",
        "[queue]",
        f"max_backoff_s = {float(max_backoff_s)}",
        "",
        "[services]",
        *(f"{code} = {_quoted(service)}" for code, service in services.items()),
    ]
    path = directory / "centre.toml"
    path.write_text("\n".join(lines) + "\n")
    CentreConfig.load(path)  # what the application will read must parse
    return path
