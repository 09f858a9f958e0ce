"""The witness as the bus wires it, in one process with real parts.

- `witnessed_logs`: which security servers' logs a configuration lets the witness
  co-sign, and why the others are left out (pure).
- `witness_endpoint` and `[audit] witness`: where a security server sends its
  checkpoints (pure, and the configuration parser).
- The registry extension on a real TLS gRPC server with a real `RegistryContext`,
  and `LogWitnessing` driving a real SQLite audit log: local checkpoints while the
  configuration names no registry, cosigned ones once it does, refusals once the
  log's signing certificate is revoked, and the metrics that show it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from prometheus_client import CollectorRegistry

from audit_log.bus_witness import (
    WITNESS_NAME,
    ConfLogs,
    log_origin,
    registry_witness,
    witness_key,
    witness_store_url,
    witnessed_logs,
)
from audit_log.log import AuditLog, open_log
from audit_log.note import verify_checkpoint
from audit_log.testing import sample_record
from govbus.crypto.keys import private_key_pem
from govbus.crypto.pki import (
    CertificateAuthority,
    IssuedKey,
    Role,
    certificate_der,
    certificate_pem,
)
from govbus.errors import CertificateInvalid, ConfigInvalid, NotFound
from govbus.globalconf import GlobalConfView, sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.server import RegistryContext
from security_server.config import SsConfig
from security_server.witnessing import LogWitnessing, WitnessEndpoint, witness_endpoint

MEMBER = "KZ/GOV/040340123459"
OTHER = "KZ/GOV/990140000017"
SS = f"{MEMBER}/ss1"


class World:
    """A CA, the registry's keys and one member's, and configurations signed with them."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self.registry = ca.issue_key(Role.REGISTRY, "registry")
        self.registry_tls = ca.issue_key(Role.SERVER, "registry", hosts=["127.0.0.1"])
        self.member = ca.issue_key(Role.SIGNING, MEMBER)
        self.version = 0

    def conf(self, *, address: str = "", revoked: tuple[int, ...] = ()) -> GlobalConfView:
        self.version += 1
        now = int(time.time())
        conf = globalconf_pb2.GlobalConf(
            version=self.version,
            instance="KZ",
            generated_at=timestamp_pb2.Timestamp(seconds=now),
            expires_at=timestamp_pb2.Timestamp(seconds=now + 600),
            ca_certificates=[certificate_der(self.ca.certificate)],
            registry_address=address,
            witness_certificate=certificate_der(self.registry.certificate) if address else b"",
        )
        conf.members.add(id=MEMBER, name="ГБД ФЛ")
        conf.security_servers.add(
            id=SS, owner=MEMBER, signing_certificate=certificate_der(self.member.certificate)
        )
        for serial in revoked:
            conf.revoked.add(serial=serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
        raw = sign_global_conf(
            conf, self.registry.signer(), certificate_der(self.registry.certificate)
        )
        return verify_global_conf(raw, [self.ca.certificate])


def _view(world: World, servers: list[tuple[str, str, IssuedKey | None]]) -> GlobalConfView:
    conf = globalconf_pb2.GlobalConf(
        version=1, ca_certificates=[certificate_der(world.ca.certificate)]
    )
    for server_id, owner, key in servers:
        conf.security_servers.add(
            id=server_id,
            owner=owner,
            signing_certificate=certificate_der(key.certificate) if key else b"",
        )
    return GlobalConfView.build(conf, b"", [world.ca.certificate])


# --- pure parts -----------------------------------------------------------------------


def test_witnessed_logs_take_valid_signing_certificates_of_the_owner(
    ca: CertificateAuthority,
) -> None:
    world = World(ca)
    other = ca.issue_key(Role.SIGNING, OTHER)
    tls = ca.issue_key(Role.SERVER, f"{MEMBER}/ss4")
    revoked = ca.issue_key(Role.SIGNING, MEMBER)
    view = _view(
        world,
        [
            (SS, MEMBER, world.member),
            (f"{MEMBER}/ss2", MEMBER, None),
            (f"{MEMBER}/ss3", MEMBER, other),
            (f"{MEMBER}/ss4", MEMBER, tls),
            (f"{MEMBER}/ss5", MEMBER, revoked),
        ],
    )
    serial = revoked.certificate.serial_number
    view.conf.revoked.add(serial=serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
    view = GlobalConfView.build(view.conf, b"", [ca.certificate])

    logs = witnessed_logs(view)
    assert list(logs.keys) == [log_origin(SS)]
    key = logs.keys[log_origin(SS)]
    assert key.name == "govbus/KZ/GOV/040340123459/ss1"
    assert key.public_key.public_numbers() == world.member.certificate.public_key().public_numbers()  # type: ignore[union-attr]
    assert "no signing certificate" in logs.left_out[f"{MEMBER}/ss2"]
    assert OTHER in logs.left_out[f"{MEMBER}/ss3"]
    assert "CERTIFICATE_INVALID" in logs.left_out[f"{MEMBER}/ss4"]
    assert "CERTIFICATE_REVOKED" in logs.left_out[f"{MEMBER}/ss5"]


def test_conf_logs_follow_the_configuration_version(ca: CertificateAuthority) -> None:
    world = World(ca)
    current = [world.conf()]
    logs = ConfLogs(lambda: current[0])
    assert set(logs()) == {log_origin(SS)}
    current[0] = world.conf(revoked=(world.member.certificate.serial_number,))
    assert logs() == {}


def test_witness_key_and_endpoint_from_the_configuration(ca: CertificateAuthority) -> None:
    world = World(ca)
    bare = world.conf()
    named = world.conf(address="127.0.0.1:7001")
    assert witness_key(bare) is None
    key = witness_key(named)
    assert key is not None and key.name == WITNESS_NAME and key.cosigner

    assert witness_endpoint(None, None) is None
    assert witness_endpoint(None, bare) is None
    assert witness_endpoint(False, named) is None
    expected = WitnessEndpoint("127.0.0.1:7001", certificate_der(world.registry.certificate))
    assert witness_endpoint(None, named) == expected
    assert witness_endpoint(True, named) == expected
    with pytest.raises(ConfigInvalid, match="names no registry_address"):
        witness_endpoint(True, bare)

    # A witness certificate that is not the registry's is refused, not trusted.
    tampered = globalconf_pb2.GlobalConf()
    tampered.CopyFrom(named.conf)
    tampered.witness_certificate = certificate_der(world.member.certificate)
    with pytest.raises(CertificateInvalid, match="not registry"):
        witness_key(GlobalConfView.build(tampered, b"", [ca.certificate]))


def _ss_config() -> dict[str, Any]:
    return {
        "server_id": SS,
        "keys": {
            name: f"{name}.pem"
            for name in (
                "ca_certificate",
                "tls_key",
                "tls_certificate",
                "signing_key",
                "signing_certificate",
            )
        },
        "globalconf": {"source": "file:/conf.bin"},
    }


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), ("unset", None)])
def test_audit_witness_setting(value: object, expected: bool | None, tmp_path: Path) -> None:
    data = _ss_config()
    if value != "unset":
        data["audit"] = {"witness": value}
    assert SsConfig.from_dict(data, tmp_path).witness is expected


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_audit_witness_must_be_a_boolean(value: object, tmp_path: Path) -> None:
    data = _ss_config()
    data["audit"] = {"witness": value}
    with pytest.raises(ConfigInvalid, match=r"audit\.witness must be true or false"):
        SsConfig.from_dict(data, tmp_path)


def test_witness_store_follows_the_registry_database(ca: CertificateAuthority) -> None:
    def context(database: str | None) -> RegistryContext:
        return RegistryContext(
            state_dir=Path("/var/lib/registry"),
            signer=World(ca).registry.signer(),
            signing_certificate=b"",
            ca_certificate=ca.certificate,
            current_conf=lambda: None,  # type: ignore[arg-type,return-value]
            database=database,
            db_schema="reg",
        )

    assert witness_store_url(context(None)) == "sqlite:////var/lib/registry/witness.db"
    assert witness_store_url(context("/elsewhere/registry.db")).endswith("registry/witness.db")
    assert (
        witness_store_url(context("postgresql://u@127.0.0.1:5432/db?sslmode=disable&schema=x"))
        == "postgresql://u@127.0.0.1:5432/db?sslmode=disable&schema=reg_witness"
    )


# --- the extension and a security server's log, in one process --------------------------


async def _until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = 20.0
) -> None:
    end = time.monotonic() + within
    while True:
        met = condition()
        if not isinstance(met, bool):
            met = await met
        if met:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


async def _checkpointed(log: AuditLog, size: int) -> bool:
    latest = await log.latest_checkpoint()
    return latest is not None and latest.size == size


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_log_switches_to_the_witness_the_configuration_names(
    ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(ca)

    async def scenario() -> None:
        current = [world.conf()]
        server = grpc.aio.server()
        context = RegistryContext(
            state_dir=tmp_path / "registry",
            signer=world.registry.signer(),
            signing_certificate=certificate_der(world.registry.certificate),
            ca_certificate=ca.certificate,
            current_conf=lambda: current[0],
        )
        assert registry_witness(server, context) == ["govbus.v1.WitnessService"]
        port = server.add_secure_port(
            "127.0.0.1:0",
            grpc.ssl_server_credentials(
                [
                    (
                        private_key_pem(world.registry_tls.key),
                        certificate_pem(world.registry_tls.certificate),
                    )
                ]
            ),
        )
        await server.start()
        log = await open_log(
            f"sqlite:///{tmp_path / 'audit.db'}",
            signer=world.member.signer(),
            origin=log_origin(SS),
            certificate=world.member.certificate,
        )
        metrics = CollectorRegistry()
        witnessing = LogWitnessing(
            log, 0.05, None, certificate_pem(ca.certificate), metrics=metrics
        )
        try:
            # No registry named: plain local checkpoints.
            witnessing.start(current[0])
            assert witnessing.endpoint is None
            for i in range(3):
                await log.append(sample_record(i))
            await _until(lambda: _checkpointed(log, 3), "a local checkpoint at 3")
            assert _sample(metrics, "govbus_audit_witness_enabled") == 0
            assert _sample(metrics, "govbus_audit_log_size") == 3

            # The configuration names the registry: checkpoints are co-signed.
            current[0] = world.conf(address=f"127.0.0.1:{port}")
            witnessing.apply(current[0])
            await _until(lambda: log.witness_status.witnessed_size == 3, "cosigned at 3")
            assert witnessing.endpoint == WitnessEndpoint(
                f"127.0.0.1:{port}", certificate_der(world.registry.certificate)
            )
            latest = await log.latest_checkpoint()
            assert latest is not None
            key = witness_key(current[0])
            assert key is not None
            _, _, names = verify_checkpoint(latest.note, log.log_key, [key])
            assert names == [WITNESS_NAME]
            assert _sample(metrics, "govbus_audit_witness_enabled") == 1
            assert _sample(metrics, "govbus_audit_witnessed_size") == 3
            assert _sample(metrics, "govbus_audit_witness_ok") == 1

            # The member's signing certificate is revoked: the witness no longer knows it.
            current[0] = world.conf(
                address=f"127.0.0.1:{port}", revoked=(world.member.certificate.serial_number,)
            )
            witnessing.apply(current[0])
            await log.append(sample_record(3))
            await _until(
                lambda: isinstance(log.witness_status.last_error, NotFound), "a NOT_FOUND refusal"
            )
            assert log.witness_status.witnessed_size == 3
            assert (
                _sample(metrics, "govbus_audit_witness_failures_total", code="NOT_FOUND") or 0
            ) >= 1
            assert _sample(metrics, "govbus_audit_witness_ok") == 0
        finally:
            await witnessing.close()
            await log.close()
            await server.stop(None)
            for callback in context.on_stop:
                await callback()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("go to the witness at 127.0.0.1:" in m for m in messages)
    assert any("witness refused a checkpoint of log 'govbus/" in m for m in messages)
    assert any("not witnessed: CERTIFICATE_REVOKED" in m for m in messages)


def test_witness_off_or_required_without_a_registry(
    ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(ca)

    async def scenario(mode: bool, view: GlobalConfView) -> LogWitnessing:
        log = await open_log(
            f"sqlite:///{tmp_path / f'{mode}.db'}",
            signer=world.member.signer(),
            origin=log_origin(SS),
            certificate=world.member.certificate,
        )
        witnessing = LogWitnessing(log, 0.05, mode, certificate_pem(ca.certificate))
        try:
            witnessing.start(view)
            await log.append(sample_record(0))
            await _until(lambda: _checkpointed(log, 1), "a local checkpoint")
        finally:
            await witnessing.close()
            await log.close()
        return witnessing

    off = asyncio.run(scenario(False, world.conf(address="127.0.0.1:1")))
    assert off.endpoint is None
    with caplog.at_level(logging.ERROR):
        required = asyncio.run(scenario(True, world.conf()))
    assert required.endpoint is None
    assert any("names no registry_address" in r.getMessage() for r in caplog.records)
