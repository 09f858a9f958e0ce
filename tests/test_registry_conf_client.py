"""The security servers' `GlobalConfClient` against a real `govbus registry serve`.

- Damaged, foreign-signed, older and same-version-rewritten configurations are
  refused, and the last good copy (in memory and on disk) stays in force.
- With the registry SIGKILLed the client keeps serving its copy; from
  `expires_at` on it refuses with GLOBAL_CONF_EXPIRED; when the registry comes
  back on the same port and state it recovers by itself, without being recreated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from govbus.crypto.keys import KeySigner, load_private_key
from govbus.crypto.pki import (
    CertificateAuthority,
    Role,
    cert_fingerprint,
    certificate_der,
    load_certificate,
)
from govbus.errors import GlobalConfExpired, GlobalConfInvalid
from govbus.globalconf import GlobalConfClient, file_source, grpc_source, sign_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from govbus.process import GovbusProcess
from registry.bootstrap import serve_args
from registry.client import AdminClient, DiscoveryClient
from tests.conftest import PASSPHRASE

ENV = {"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()}
MEMBER = "KZ/GOV/040340123459"


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll a condition (never a guessed sleep); fail with `what` when it does not come."""
    end = time.monotonic() + within
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


def _current_version(client: GlobalConfClient) -> int:
    try:
        return client.current().version
    except GlobalConfExpired:
        return 0


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[GovbusProcess]:
    with GovbusProcess(*serve_args(tmp_path / "state", regen_interval=0.1), env=ENV) as process:
        yield process


def test_bad_configurations_are_refused_and_the_good_copy_stays(
    registry: GovbusProcess, tmp_path: Path
) -> None:
    ca = load_certificate(Path(registry.info["ca_cert"]))
    operator = AdminClient.operator(registry.info, PASSPHRASE)
    discovery = DiscoveryClient.from_files(
        registry.info["public"], ca=Path(registry.info["ca_cert"])
    )
    operator.add_member(MEMBER, "ГБД ФЛ")
    operator.wait_published()
    older = discovery.signed_conf()
    operator.add_member("KZ/GOV/990140000017", "ЦОН")
    operator.wait_published()
    good = discovery.signed_conf()

    download = tmp_path / "download.bin"
    cache = tmp_path / "ss" / "globalconf.bin"
    client = GlobalConfClient([ca], file_source(download), cache)
    download.write_bytes(good)
    assert asyncio.run(client.refresh())
    in_force = client.current().version
    assert cache.read_bytes() == good

    # 1. One byte changed, inside the signed body (a letter of a member's name).
    damaged = bytearray(good)
    damaged[good.index("ЦОН".encode()) + 1] ^= 0x01
    # 2. The same content, a newer version, signed by a registry key of another CA.
    conf = globalconf_pb2.GlobalConf()
    signed = globalconf_pb2.SignedGlobalConf.FromString(good)
    conf.ParseFromString(signed.conf)
    conf.version += 1
    impostor = CertificateAuthority.init(tmp_path / "impostor", PASSPHRASE).issue_key(
        Role.REGISTRY, "registry"
    )
    foreign = sign_global_conf(conf, impostor.signer(), certificate_der(impostor.certificate))
    # 3. A same-version rewrite, even signed with the registry's real key.
    state = Path(registry.info["state"])
    real_cert = load_certificate(state / "registry-signing.cert.pem")
    real_key = load_private_key(state / "registry-signing.key.pem", PASSPHRASE)
    rewritten_conf = globalconf_pb2.GlobalConf()
    rewritten_conf.ParseFromString(signed.conf)
    rewritten_conf.members.add(id="KZ/GOV/050140000011", name="smuggled in")
    rewrite = sign_global_conf(
        rewritten_conf, KeySigner(real_key, cert_fingerprint(real_cert)), certificate_der(real_cert)
    )
    refusals = {
        "damaged": (bytes(damaged), "SIGNATURE_INVALID"),
        "other key": (foreign, "CERTIFICATE_INVALID"),
        "older": (older, "older"),
        "same version, other content": (rewrite, "differs"),
    }
    for name, (raw, reason) in refusals.items():
        download.write_bytes(raw)
        with pytest.raises(GlobalConfInvalid, match=reason):
            asyncio.run(client.refresh())
        assert client.current().version == in_force, name
        assert cache.read_bytes() == good, name
        assert client.last_error and reason in client.last_error

    # A restarted security server starts from the good copy on disk.
    restarted = GlobalConfClient([ca], file_source(download), cache)
    assert restarted.current().version == in_force
    operator.close()
    discovery.close()


def test_client_outlives_the_registry_expires_and_recovers_without_restart(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    fast = {"conf_ttl": 3.0, "resign_interval": 1.0, "regen_interval": 0.1}
    processes = contextlib.ExitStack()
    first = processes.enter_context(
        GovbusProcess(*serve_args(state, **fast), env=ENV)  # type: ignore[arg-type]
    )
    public = first.info["public"]
    ca_path = Path(first.info["ca_cert"])
    ca = load_certificate(ca_path)
    cache = tmp_path / "ss" / "globalconf.bin"
    ca_pem = ca_path.read_bytes()

    async def scenario() -> None:
        client = GlobalConfClient(
            [ca],
            grpc_source(public, ca_pem, timeout=2.0, reconnect_backoff=0.3),
            cache,
            interval=0.2,
        )
        client.start()
        try:
            await until(lambda: _current_version(client) > 0, 15, "a first configuration")
            seen = client.current().version
            # Re-signing keeps producing new versions that the client takes in.
            await until(lambda: _current_version(client) > seen, 15, "a re-signed version")

            first.kill()  # SIGKILL: no goodbye
            killed_at = time.time()
            # The copy in force keeps serving exchanges, and refuses only from its expires_at.
            while True:
                view = client.view
                assert view is not None
                try:
                    client.current()
                except GlobalConfExpired:
                    assert time.time() >= view.expires_at
                    break
                assert time.time() < killed_at + 10, "the copy never expired"
                await asyncio.sleep(0.05)
            last = view
            assert (
                last.expires_at - killed_at > 1.0
            )  # it served for a while after the registry died
            with pytest.raises(GlobalConfExpired, match="expired"):
                client.current()
            assert client.last_error is not None

            processes.enter_context(
                GovbusProcess(
                    *serve_args(state, listen=public, **fast),  # type: ignore[arg-type]
                    env=ENV,
                )
            )
            await until(
                lambda: _current_version(client) > last.version, 20, "recovery after restart"
            )
            assert client.last_error is None
        finally:
            await client.stop()
        on_disk = GlobalConfClient([ca], file_source(cache), cache)
        assert on_disk.view is not None and on_disk.view.version >= client.current().version - 1

    with processes:
        asyncio.run(scenario())


def test_regression_an_unexpected_fetch_error_does_not_end_polling(tmp_path: Path) -> None:
    """A poller that died on one unexpected exception would let the copy expire with the
    registry up; it must log, record and go on."""
    ca = CertificateAuthority.init(tmp_path / "pki", PASSPHRASE)
    key = ca.issue_key(Role.REGISTRY, "registry")
    conf = globalconf_pb2.GlobalConf(version=1, instance="KZ")
    conf.expires_at.seconds = int(time.time()) + 600
    good = sign_global_conf(conf, key.signer(), certificate_der(key.certificate))
    calls = 0

    async def flaky() -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a download path")
        return good

    async def scenario() -> None:
        client = GlobalConfClient([ca.certificate], flaky, interval=0.01)
        client.start()
        try:
            await until(lambda: _current_version(client) == 1, 5, "polling to go on")
        finally:
            await client.stop()

    asyncio.run(scenario())
    assert calls >= 2
