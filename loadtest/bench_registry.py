"""How long the registry takes to make one global configuration for a large bus, and a
security server to verify it.

A bus the size of a country's (300 members, 900 subsystems, 120 security servers,
600 services of 6 methods, 4,000 access rights, 300 legal bases) is written to a
SQLite store; then, per version: read the snapshot, build, sign, and verify it as a
security server does. Figures are ratios against serializing the same configuration
once (the least any version costs), measured in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from govbus.crypto.pki import CertificateAuthority, Role, certificate_der
from govbus.globalconf import verify_global_conf
from govbus.ids import Bin
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.confbuild import ConfSettings, build_global_conf
from registry.publisher import ConfPublisher
from registry.store import SqlRegistryStore, open_store

__all__ = ["main"]

PASSPHRASE = b"bench-passphrase"


def _members(count: int) -> list[str]:
    found: list[str] = []
    serial = 0
    while len(found) < count:
        serial += 1
        made = Bin.build(2020, 1 + serial % 12, serial)
        if made is not None:
            found.append(f"KZ/GOV/{made}")
    return found


def _fill(store: SqlRegistryStore, tls_der: bytes) -> None:
    members = _members(300)
    with store.write("bench") as w:
        for i, member in enumerate(members):
            w.put_member(globalconf_pb2.Member(id=member, name=f"Agency {i}"))
            for sub in ("app", "data", "portal"):
                w.put_subsystem(globalconf_pb2.Subsystem(id=f"{member}/{sub}", name=sub), member)
        for member in members[:120]:
            w.put_server(
                globalconf_pb2.SecurityServer(
                    id=f"{member}/ss1",
                    owner=member,
                    address="ss1.example.kz:7001",
                    tls_certificate=tls_der,
                    signing_certificate=tls_der,
                ),
                tls_der,
            )
        for n in range(600):
            member = members[n % 120]
            service_id = f"{member}/data/svc{n}/v1"
            methods = [
                globalconf_pb2.Method(name=f"/kz.gov.a{n}.v1.Svc/Method{m}", idempotent=m % 2 == 0)
                for m in range(6)
            ]
            w.put_service(
                globalconf_pb2.Service(
                    id=service_id,
                    grpc_service=f"kz.gov.a{n}.v1.Svc",
                    methods=methods,
                    personal_data=True,
                    consent_policy=globalconf_pb2.CONSENT_REQUIRED,
                    default_deadline_ms=3000,
                    servers=[f"{member}/ss1"],
                    descriptor_sha256=b"\x00" * 32,
                ),
                f"{member}/data",
                member,
                b"descriptor" * 100,
            )
            for client in range(7):
                w.add_access(service_id, f"{members[(n + client * 37) % 300]}/app")
            if n % 2 == 0:
                w.put_legal_basis(
                    globalconf_pb2.LegalBasis(
                        id=f"lb-{n}",
                        client=f"{members[(n + 1) % 300]}/app",
                        service=service_id,
                        law_reference="Закон РК, ст. 1",
                    )
                )
        w.note("bench.fill", "all", "", "", "")


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ca = CertificateAuthority.init(root / "pki", PASSPHRASE)
        signing = ca.issue_key(Role.REGISTRY, "registry")
        tls = ca.issue_key(Role.SERVER, "KZ/GOV/000000000000/ss1")
        store = open_store(root / "registry.db")
        _fill(store, certificate_der(tls.certificate))
        settings = ConfSettings(ca_certificates=(certificate_der(ca.certificate),))

        def read() -> object:
            with store.read() as r:
                return r.content()

        with store.read() as r:
            content = r.content()
        conf = build_global_conf(content, settings, version=1, now=time.time())
        baseline = _median_ms(lambda: conf.SerializeToString(deterministic=True), 20)
        read_ms = _median_ms(read, 5)
        build_ms = _median_ms(
            lambda: build_global_conf(content, settings, version=1, now=time.time()), 5
        )
        publisher = ConfPublisher(
            store,
            signing.signer(),
            certificate_der(signing.certificate),
            [ca.certificate],
            settings,
        )

        async def versions(count: int) -> tuple[bytes, float]:
            await publisher.publish()  # warm up the worker threads
            times = []
            for _ in range(count):
                started = time.perf_counter()
                publication = await publisher.publish()
                times.append(time.perf_counter() - started)
            return publication.raw, statistics.median(times) * 1000

        raw, publish_ms = asyncio.run(versions(5))
        verify_ms = _median_ms(lambda: verify_global_conf(raw, [ca.certificate]), 5)
        store.close()

    print(
        f"bus: {len(content.members)} members, {len(content.subsystems)} subsystems, "
        f"{len(content.services)} services, {len(content.access_rights)} access rights; "
        f"signed configuration {len(raw) / 1024:.0f} KiB"
    )
    print(f"baseline: serialize the configuration once      {baseline:8.2f} ms  = 1.0x")
    for name, value in (
        ("read the snapshot from SQLite", read_ms),
        ("build the GlobalConf message", build_ms),
        ("one version end to end (read, build, sign, self-verify)", publish_ms),
        ("security server: verify and index one download", verify_ms),
    ):
        print(f"{name:<56} {value:8.2f} ms = {value / baseline:6.1f}x")


if __name__ == "__main__":
    main()
