"""The registry's witness with real processes: a `govbus registry serve` (which hosts the
witness by default) and a `govbus ss serve` that lives on its configuration.

- The security server's checkpoints are co-signed by the registry over TLS: the
  cosignature is in the log (`govbus audit checkpoint`), and `govbus audit verify
  --witness-cert` accepts the log, with and without the checkpoint fetched from the
  witness (`govbus audit witnessed`); a wrong witness certificate is refused.
- A security server restarted on an old copy of its log (a rollback) that appends other
  records (a fork) gets its next checkpoint refused by the witness: the registry logs
  the refusal, the server counts it in its metrics, the witness's checkpoint stays
  where it was, and `govbus audit verify --witness-cert --checkpoint <witnessed>`
  fails on the forked log while the honest copy still verifies.
- With the registry on PostgreSQL, the witness keeps its state there.

The security server serves the diagnostics service and reaches it through itself
(consumer side -> its own provider side over mutual TLS -> adapter).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_log.bus_witness import WITNESS_NAME, log_origin
from audit_log.note import Checkpoint, parse_note
from audit_log.witness import get_witnessed
from govbus import errors
from govbus.client import Bus as Client
from govbus.pb.govbus.v1 import (
    diagnostics_pb2,
    diagnostics_pb2_grpc,
    security_server_pb2,
    security_server_pb2_grpc,
)
from loadtest.harness import RegisteredServer, RegistryBus
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

MEMBER = "KZ/GOV/040340123459"
SS = f"{MEMBER}/ss1"
CLIENT = f"{MEMBER}/tson"
SERVICE = f"{MEMBER}/diag/echo/v1"
ORIGIN = log_origin(SS)
FAST_CHECKPOINTS = """
[listen]
metrics = "127.0.0.1:0"

[audit]
checkpoint_interval_s = 0.1
"""


def until(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Poll a condition (never a guessed sleep); fail saying `what` did not happen."""
    end = time.monotonic() + within
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryBus]:
    bus = RegistryBus(tmp_path_factory.mktemp("witness-bus")).start()
    try:
        bus.member(MEMBER, "ГБД ФЛ")
        bus.subsystem(CLIENT)
        bus.subsystem(f"{MEMBER}/diag")
        server = bus.server(SS, extra=FAST_CHECKPOINTS)
        server.adapters[SERVICE] = bus.start_diagnostics()
        bus.publish(SERVICE, "govbus.v1.Diagnostics", diagnostics_pb2.DESCRIPTOR, [SS])
        bus.grant(CLIENT, SERVICE)
        bus.start_server(SS)
        bus.wait_for_conf(bus.admin.wait_published())
        yield bus
    finally:
        bus.stop()


# --- helpers --------------------------------------------------------------------------


def restart(bus: RegistryBus) -> RegisteredServer:
    """Start the server again and wait until it lives on the conf with its new address."""
    server = bus.start_server(SS)
    bus.wait_for_conf(bus.admin.wait_published())
    return server


def exchange(bus: RegistryBus, count: int, payload: bytes) -> None:
    async def run() -> None:
        async with Client(bus.servers[SS].consumer_address, CLIENT, initiator="op-1") as client:
            stub = client.stub(diagnostics_pb2_grpc.DiagnosticsStub, SERVICE)
            for _ in range(count):
                reply = await stub.Echo(diagnostics_pb2.EchoRequest(payload=payload))
                assert reply.payload == payload

    asyncio.run(run())


def log_size(bus: RegistryBus) -> int:
    async def run() -> int:
        async with grpc.aio.insecure_channel(bus.servers[SS].consumer_address) as channel:
            stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
            reply = await stub.Status(security_server_pb2.StatusRequest(), timeout=5)
            return int(reply.log_size)

    return asyncio.run(run())


def witnessed(bus: RegistryBus, origin: str = ORIGIN) -> str:
    """The witness's newest cosigned checkpoint of `origin`, straight from the registry."""

    async def run() -> str:
        credentials = grpc.ssl_channel_credentials(bus.ca_certificate.read_bytes())
        async with grpc.aio.secure_channel(bus.public_address, credentials) as channel:
            return await get_witnessed(channel, origin)

    return asyncio.run(run())


def witnessed_size(bus: RegistryBus) -> int:
    note = witnessed(bus)
    return Checkpoint.parse_text(parse_note(note).text).size if note else -1


def metrics(server: RegisteredServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert server.process is not None
    url = f"http://127.0.0.1:{server.process.info['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def store_url(server: RegisteredServer) -> str:
    return f"sqlite:///{server.folder / 'state' / 'audit.db'}"


def copy_log(source: Path, target: Path) -> None:
    """Copy a stopped server's SQLite log, with its write-ahead log if one is left."""
    for suffix in ("", "-wal"):
        origin, copy = Path(f"{source}{suffix}"), Path(f"{target}{suffix}")
        copy.unlink(missing_ok=True)
        if origin.exists():
            shutil.copyfile(origin, copy)
    Path(f"{target}-shm").unlink(missing_ok=True)


def verify_args(bus: RegistryBus, server: RegisteredServer, store: str) -> list[str]:
    return [
        "audit",
        "verify",
        "--store",
        store,
        "--cert",
        str(server.credentials.signing_cert),
        "--ca",
        str(bus.ca_certificate),
        "--witness-cert",
        str(bus.witness_certificate),
        "--quiet",
    ]


# --- tests ----------------------------------------------------------------------------


def test_checkpoints_are_cosigned_by_the_registry(bus: RegistryBus, tmp_path: Path) -> None:
    server = bus.servers[SS]
    exchange(bus, 3, b"hello")
    size = log_size(bus)
    assert size >= 6  # consumer request + response and provider request + response, each
    until(lambda: witnessed_size(bus) == size, f"the witness co-signs size {size}")
    until(lambda: metrics(server)[("govbus_audit_witnessed_size", ())] == size, "metrics")
    assert metrics(server)[("govbus_audit_witness_enabled", ())] == 1

    shown = run_cli("audit", "checkpoint", "--store", store_url(server)).stdout
    assert f"— {WITNESS_NAME} " in shown
    assert shown.splitlines()[0] == ORIGIN

    # From the cosignatures stored in the log...
    result = run_cli(*verify_args(bus, server, store_url(server)))
    assert f"cosigned by {WITNESS_NAME} at size {size:,}" in result.stdout

    # ... and from the checkpoint the auditor fetches from the witness itself.
    held = tmp_path / "witnessed.txt"
    run_cli(
        "audit",
        "witnessed",
        "--registry",
        bus.public_address,
        "--ca",
        str(bus.ca_certificate),
        "--store",
        store_url(server),
        "--out",
        str(held),
    )
    assert held.read_text() == witnessed(bus)
    result = run_cli(*verify_args(bus, server, store_url(server)), "--checkpoint", str(held))
    assert f"cosigned by {WITNESS_NAME}" in result.stdout

    # A certificate that is not the witness's finds no cosignature to accept.
    wrong = [*verify_args(bus, server, store_url(server))]
    wrong[wrong.index("--witness-cert") + 1] = str(server.credentials.tls_cert)
    refused = run_cli(*wrong, "--checkpoint", str(held), check=False)
    assert refused.returncode == 1
    assert "SIGNATURE_INVALID" in refused.stderr
    refused = run_cli(*wrong, check=False)
    assert refused.returncode == 1
    assert "NOT_FOUND" in refused.stderr
    assert "no checkpoint of log" in refused.stderr


def test_unknown_log_gets_no_checkpoint_from_the_witness(bus: RegistryBus) -> None:
    with pytest.raises(errors.NotFound):
        witnessed(bus, log_origin(f"{MEMBER}/not-registered"))


def test_a_rolled_back_and_forked_log_is_refused(bus: RegistryBus, tmp_path: Path) -> None:
    server = bus.servers[SS]
    db = server.folder / "state" / "audit.db"

    exchange(bus, 1, b"before the backup")
    until(lambda: witnessed_size(bus) == log_size(bus), "the witness catches up")
    bus.stop_server(SS)
    backup = tmp_path / "backup.db"
    copy_log(db, backup)

    # The honest history grows and is co-signed.
    restart(bus)
    exchange(bus, 2, b"honest")
    honest_size = log_size(bus)
    until(lambda: witnessed_size(bus) == honest_size, f"the witness co-signs {honest_size}")
    honest_note = witnessed(bus)
    bus.stop_server(SS)
    honest = tmp_path / "honest.db"
    copy_log(db, honest)

    # Restored from the backup, the server writes another history, longer than the honest
    # one, so that the witness is asked to accept it with a consistency proof.
    copy_log(backup, db)
    server = restart(bus)
    exchange(bus, 4, b"forked")
    assert log_size(bus) > honest_size
    registry = bus.registry
    assert registry is not None
    refusal = f"witness REFUSED a checkpoint of log {ORIGIN!r}"
    until(lambda: refusal in registry.output(), "the registry logs the refusal")
    until(
        lambda: (
            metrics(server).get(
                ("govbus_audit_witness_failures_total", (("code", "PROOF_INVALID"),)), 0
            )
            >= 1
        ),
        "the security server counts the refusal",
    )
    assert metrics(server)[("govbus_audit_witness_ok", ())] == 0
    assert witnessed(bus) == honest_note  # the witness did not move
    output = bus.stop_server(SS)
    assert f"audit checkpoint of {ORIGIN} REFUSED" in output

    held = tmp_path / "witnessed.txt"
    held.write_text(honest_note)
    forked = run_cli(
        *verify_args(bus, server, f"sqlite:///{db}"), "--checkpoint", str(held), check=False
    )
    assert forked.returncode == 1, forked.stdout
    assert "AUDIT_LOG_CORRUPT" in forked.stderr
    assert "different roots" in forked.stderr or "do not reproduce" in forked.stderr
    kept = run_cli(*verify_args(bus, server, f"sqlite:///{honest}"), "--checkpoint", str(held))
    assert f"cosigned by {WITNESS_NAME} at size {honest_size:,}" in kept.stdout


@pytest.mark.postgres
def test_witness_state_lives_in_the_registry_postgres(pg_dsn: str, tmp_path: Path) -> None:
    import psycopg

    schema = f"reg_{uuid.uuid4().hex[:10]}"
    bus = RegistryBus(tmp_path, database=pg_dsn, db_schema=schema).start()
    try:
        bus.member(MEMBER)
        bus.subsystem(CLIENT)
        bus.server(SS, extra=FAST_CHECKPOINTS)
        bus.start_server(SS)
        bus.wait_for_conf(bus.admin.wait_published())

        # Refusals are logged too: two calls of a service that does not exist.
        async def refused() -> None:
            async with Client(bus.servers[SS].consumer_address, CLIENT) as client:
                stub = client.stub(diagnostics_pb2_grpc.DiagnosticsStub, f"{MEMBER}/x/y/v1")
                for _ in range(2):
                    with pytest.raises(errors.GovbusError):
                        await stub.Echo(diagnostics_pb2.EchoRequest())

        asyncio.run(refused())
        size = log_size(bus)
        assert size == 2
        until(lambda: witnessed_size(bus) == size, "the witness co-signs")
        with psycopg.connect(pg_dsn) as db:
            row = db.execute(
                f'SELECT size FROM "{schema}_witness".witness_latest WHERE origin = %s', (ORIGIN,)
            ).fetchone()
        assert row == (size,)
        assert not (Path(bus.registry.info["state"]) / "witness.db").exists()  # type: ignore[union-attr]
    finally:
        bus.stop()
