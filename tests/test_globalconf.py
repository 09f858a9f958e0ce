"""Signed global configuration: verification, version rules, cache, expiry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from govbus.crypto.pki import CertificateAuthority, IssuedKey, Role, certificate_der
from govbus.errors import GlobalConfExpired, GlobalConfInvalid, UnknownService
from govbus.globalconf import GlobalConfClient, file_source, sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from tests.conftest import PASSPHRASE

SERVICE = "KZ/GOV/040340123459/gbdfl/person/v1"
CLIENT = "KZ/GOV/990140000017/con"


def _conf(version: int, ttl: float = 600, now: float | None = None) -> globalconf_pb2.GlobalConf:
    now = time.time() if now is None else now
    conf = globalconf_pb2.GlobalConf(version=version, instance="KZ")
    conf.generated_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now)))
    conf.expires_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(now + ttl)))
    conf.services.add(id=SERVICE, grpc_service="kz.gov.gbdfl.v1.PersonRegistry")
    conf.groups.add(id="group:tson", members=[CLIENT])
    conf.access_rights.add(service=SERVICE, client="group:tson")
    return conf


@pytest.fixture
def registry_key(ca: CertificateAuthority) -> IssuedKey:
    return ca.issue_key(Role.REGISTRY, "registry")


def _sign(conf: globalconf_pb2.GlobalConf, key: IssuedKey) -> bytes:
    return sign_global_conf(conf, key.signer(), certificate_der(key.certificate))


def test_valid_conf_verifies_and_answers(ca: CertificateAuthority, registry_key: IssuedKey) -> None:
    view = verify_global_conf(_sign(_conf(1), registry_key), [ca.certificate])
    assert view.version == 1
    assert view.may_call(CLIENT, SERVICE)  # through the group
    assert not view.may_call("KZ/GOV/990140000017/other", SERVICE)
    with pytest.raises(UnknownService):
        view.service("KZ/GOV/040340123459/gbdfl/nothing/v1")


def test_every_single_byte_flip_is_refused(
    ca: CertificateAuthority, registry_key: IssuedKey
) -> None:
    raw = _sign(_conf(1), registry_key)
    for position in range(0, len(raw), max(1, len(raw) // 97)):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        with pytest.raises(GlobalConfInvalid):
            verify_global_conf(bytes(tampered), [ca.certificate])


def test_other_key_and_wrong_role_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    impostor = CertificateAuthority.init(tmp_path / "impostor", PASSPHRASE)
    with pytest.raises(GlobalConfInvalid, match="CERTIFICATE_INVALID"):
        verify_global_conf(
            _sign(_conf(1), impostor.issue_key(Role.REGISTRY, "registry")), [ca.certificate]
        )
    with pytest.raises(GlobalConfInvalid, match="role"):
        verify_global_conf(
            _sign(_conf(1), ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")), [ca.certificate]
        )


def test_client_keeps_good_copy_on_bad_downloads(
    ca: CertificateAuthority, registry_key: IssuedKey, tmp_path: Path
) -> None:
    source = tmp_path / "conf.bin"
    cache = tmp_path / "cache" / "globalconf.bin"
    client = GlobalConfClient([ca.certificate], file_source(source), cache)

    async def scenario() -> None:
        source.write_bytes(_sign(_conf(5), registry_key))
        assert await client.refresh()
        good = cache.read_bytes()
        bad_downloads = [
            _sign(_conf(4), registry_key),  # older version
            _sign(_conf(5, ttl=601), registry_key),  # same version, other content
            _sign(
                _conf(6),
                CertificateAuthority.init(tmp_path / "x", PASSPHRASE).issue_key(Role.REGISTRY, "r"),
            ),
            _sign(_conf(6), registry_key)[:-3] + b"abc",  # tampered signature
        ]
        for raw in bad_downloads:
            source.write_bytes(raw)
            with pytest.raises(GlobalConfInvalid):
                await client.refresh()
            assert client.current().version == 5
            assert cache.read_bytes() == good
        source.write_bytes(_sign(_conf(6), registry_key))
        assert await client.refresh()
        assert client.current().version == 6

    asyncio.run(scenario())
    restarted = GlobalConfClient([ca.certificate], file_source(source), cache)
    assert restarted.current().version == 6


def test_expired_copy_refuses(
    ca: CertificateAuthority, registry_key: IssuedKey, tmp_path: Path
) -> None:
    now = [time.time()]
    client = GlobalConfClient(
        [ca.certificate], file_source(tmp_path / "none"), clock=lambda: now[0]
    )
    with pytest.raises(GlobalConfExpired):
        client.current()
    client.accept(_sign(_conf(1, ttl=60, now=now[0]), registry_key))
    assert client.current().version == 1
    now[0] += 61
    with pytest.raises(GlobalConfExpired, match="expired"):
        client.current()
