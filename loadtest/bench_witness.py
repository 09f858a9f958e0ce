"""Witness benchmark: what a co-signed checkpoint costs a security server against a local
one (same run, same machine), and how many checkpoints one registry witness co-signs per
second when many logs submit at once.

The witness runs as the registry hosts it (`audit_log.bus_witness.registry_witness` on a
TLS gRPC server, SQLite state, logs from a signed configuration) in this process; the
logs are real SQLite audit logs that submit over loopback TLS.

`python -m loadtest.bench witness` runs only this.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2

from audit_log.bus_witness import log_origin, registry_witness, witness_key
from audit_log.log import AuditLog, open_log
from audit_log.note import NoteKey
from audit_log.testing import sample_record
from govbus.crypto.keys import private_key_pem
from govbus.crypto.pki import (
    CertificateAuthority,
    IssuedKey,
    Role,
    certificate_der,
    certificate_pem,
)
from govbus.globalconf import GlobalConfView, sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.server import RegistryContext

__all__ = ["main"]

MEMBER = "KZ/GOV/040340123459"
ROUNDS = 40
RECORDS_PER_ROUND = 10
CONCURRENT_LOGS = 50
PASSPHRASE = b"bench-witness-passphrase"


def _conf(
    ca: CertificateAuthority, registry: IssuedKey, member: IssuedKey, servers: int, address: str
) -> GlobalConfView:
    now = int(time.time())
    conf = globalconf_pb2.GlobalConf(
        version=1,
        generated_at=timestamp_pb2.Timestamp(seconds=now),
        expires_at=timestamp_pb2.Timestamp(seconds=now + 3600),
        ca_certificates=[certificate_der(ca.certificate)],
        registry_address=address,
        witness_certificate=certificate_der(registry.certificate),
    )
    for i in range(servers):
        conf.security_servers.add(
            id=f"{MEMBER}/ss{i}",
            owner=MEMBER,
            signing_certificate=certificate_der(member.certificate),
        )
    raw = sign_global_conf(conf, registry.signer(), certificate_der(registry.certificate))
    return verify_global_conf(raw, [ca.certificate])


async def _open(folder: Path, member: IssuedKey, index: int) -> AuditLog:
    return await open_log(
        f"sqlite:///{folder / f'ss{index}.db'}",
        signer=member.signer(),
        origin=log_origin(f"{MEMBER}/ss{index}"),
        certificate=member.certificate,
    )


async def _rounds(
    log: AuditLog, channel: grpc.aio.Channel | None, key: NoteKey | None, start: int
) -> list[float]:
    took = []
    for r in range(ROUNDS):
        for i in range(RECORDS_PER_ROUND):
            await log.append(sample_record(start + r * RECORDS_PER_ROUND + i))
        began = time.perf_counter()
        if channel is None:
            await log.checkpoint()
        else:
            await log.submit_to_witness(channel, witness_key=key)
        took.append(time.perf_counter() - began)
    return took


async def _run(folder: Path) -> None:
    ca = CertificateAuthority.init(folder / "pki", PASSPHRASE)
    registry = ca.issue_key(Role.REGISTRY, "registry")
    tls = ca.issue_key(Role.SERVER, "registry", hosts=["127.0.0.1"])
    member = ca.issue_key(Role.SIGNING, MEMBER)
    server = grpc.aio.server()
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(private_key_pem(tls.key), certificate_pem(tls.certificate))]),
    )
    view = _conf(ca, registry, member, CONCURRENT_LOGS + 1, f"127.0.0.1:{port}")
    context = RegistryContext(
        state_dir=folder / "registry",
        signer=registry.signer(),
        signing_certificate=certificate_der(registry.certificate),
        ca_certificate=ca.certificate,
        current_conf=lambda: view,
    )
    registry_witness(server, context)
    await server.start()
    key = witness_key(view)
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port}",
        grpc.ssl_channel_credentials(root_certificates=certificate_pem(ca.certificate)),
    )
    try:
        log = await _open(folder, member, 0)
        await log.submit_to_witness(channel, witness_key=key)  # connect, first checkpoint
        local = await _rounds(log, None, None, 0)
        witnessed = await _rounds(log, channel, key, ROUNDS * RECORDS_PER_ROUND)
        await log.close()
        base, cost = statistics.median(local), statistics.median(witnessed)
        print(f"checkpoint, local only:        {base * 1e3:7.2f} ms (median of {ROUNDS}; baseline)")
        print(
            f"checkpoint, co-signed:         {cost * 1e3:7.2f} ms = {cost / base:5.1f}x local "
            "(proof, TLS round trip, witness check and cosign, SQLite compare-and-set)"
        )

        logs = [await _open(folder, member, i + 1) for i in range(CONCURRENT_LOGS)]
        rates = []
        for target in (None, channel):
            began = time.perf_counter()
            await asyncio.gather(
                *(_rounds(lg, target, key, 0 if target is None else 10**6) for lg in logs)
            )
            rates.append(CONCURRENT_LOGS * ROUNDS / (time.perf_counter() - began))
        for lg in logs:
            await lg.close()
        print(
            f"{CONCURRENT_LOGS} logs at once, local only:  {rates[0]:7.0f} rounds/s "
            f"({RECORDS_PER_ROUND} appends + a checkpoint; baseline)"
        )
        print(
            f"{CONCURRENT_LOGS} logs at once, co-signed:   {rates[1]:7.0f} rounds/s = "
            f"{rates[1] / rates[0]:4.2f}x (one witness thread, one fsync per cosignature)"
        )
        print(
            f"  at one checkpoint per 10 s per server, one registry keeps up with "
            f"~{int(rates[1] * 10):,} security servers"
        )
    finally:
        await channel.close()
        await server.stop(None)
        for callback in context.on_stop:
            await callback()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="govbus-bench-witness-") as folder:
        asyncio.run(_run(Path(folder)))


if __name__ == "__main__":
    main()
