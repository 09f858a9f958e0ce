"""A real `govbus consent serve` process killed with SIGKILL.

Exchanges with valid consents go on without it, decided locally; a revocation
the follower saw before the kill stays enforced; one made just before the kill,
which the follower never saw, is enforced once the staleness bound passes — the
service fails closed and refuses every consent until the feed catches up, and a
fail-open service lets them through, flagged for the audit log. After a restart
on the same state the follower catches up and the revocation is refused as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from consent.client import ConsentClient, consent_channel
from consent.feed import RevocationFeedFollower, grpc_feed_source
from consent.sms import read_outbox
from consent.verifier import ConsentVerifier, ExchangeFacts
from govbus.crypto.keys import private_key_pem
from govbus.crypto.pki import certificate_der, certificate_pem
from govbus.errors import ConsentRevoked, ConsentStatusStale
from govbus.pb.govbus.v1 import audit_pb2, consent_pb2, usage_pb2
from govbus.process import GovbusProcess
from tests.conftest import PASSPHRASE
from tests.consent_world import ALICE, CLIENT, DAY_MS, PURPOSE, S_BIRTH, S_PERSON, World, until

pytestmark = pytest.mark.e2e

BOUND_MS = 2000
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
)


def serve_args(files: dict[str, Path], state: Path, port: int = 0) -> list[str]:
    return [
        "consent",
        "serve",
        "--state-dir",
        str(state),
        "--ca",
        str(files["ca"]),
        "--signing-key",
        str(files["consent.key"]),
        "--signing-cert",
        str(files["consent.cert"]),
        "--tls-key",
        str(files["tls.key"]),
        "--tls-cert",
        str(files["tls.cert"]),
        "--port",
        str(port),
    ]


def consent_id(raw: bytes) -> str:
    signed = consent_pb2.SignedConsent.FromString(raw)
    return consent_pb2.ConsentArtefact.FromString(signed.artefact).id


def exchange(raw: bytes, service: str = S_PERSON) -> ExchangeFacts:
    return ExchangeFacts(
        client=CLIENT,
        service=service,
        subject=ALICE,
        purpose=PURPOSE,
        consent_artefact=raw,
        now_ms=int(time.time() * 1000),
    )


async def give(client: ConsentClient, outbox: Path) -> bytes:
    asked = await client.request_consent(
        subject=ALICE,
        grantee=CLIENT,
        scopes=[(S_PERSON, []), (S_BIRTH, [])],
        purpose_code=PURPOSE,
        purpose_text="birth registration",
        expires_at_ms=int(time.time() * 1000) + DAY_MS,
        method=usage_pb2.CONSENT_METHOD_OTP,
    )
    record = await client.confirm_otp(asked.request_id, read_outbox(outbox)[-1].code or "")
    return record.signed_consent


def test_killed_consent_service(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    files = world.write_files(tmp_path / "keys")
    state = tmp_path / "state"
    env = {"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()}
    with GovbusProcess(*serve_args(files, state), env=env) as first:
        port, operator_port = first.info["port"], first.info["operator_port"]
        outbox = Path(first.info["outbox"])
        with contextlib.ExitStack() as stack:
            # started later by the scenario; its __exit__ stops it and cleans up either way
            second = GovbusProcess(*serve_args(files, state, port), env=env)
            stack.push(second)
            asyncio.run(scenario(world, first, second, port, operator_port, outbox))


async def scenario(
    world: World,
    process: GovbusProcess,
    restart: GovbusProcess,
    port: int,
    operator_port: int,
    outbox: Path,
) -> None:
    view = world.view()
    verifier = ConsentVerifier(staleness_ms=BOUND_MS)
    address = f"127.0.0.1:{port}"
    client = ConsentClient(consent_channel(address, world.ca_pem))
    operator = ConsentClient(
        consent_channel(
            f"127.0.0.1:{operator_port}",
            world.ca_pem,
            client_key_pem=private_key_pem(world.operator_key.key),
            client_cert_pem=certificate_pem(world.operator_key.certificate),
        )
    )
    feed_channel = consent_channel(address, world.ca_pem, options=FAST_RECONNECT)
    follower = RevocationFeedFollower(
        grpc_feed_source(feed_channel, timeout=0.5), lambda: world.anchor, interval=0.05
    )
    try:
        await operator.set_phone(ALICE, "+77011234567")
        seen, unseen, valid = [await give(client, outbox) for _ in range(3)]
        follower.start()
        await until(lambda: follower.state.updated_at_ms > 0, "the first feed poll")
        token = await client.login_eds(
            ALICE,
            world.citizens[ALICE].signer(),
            certificate_der(world.citizens[ALICE].certificate),
        )
        # a revocation the follower sees before the kill
        await client.revoke(consent_id(seen), token=token)
        await until(lambda: follower.state.seq == 1, "the first revocation to arrive")
        # a revocation made just before the kill, which the follower never sees
        await follower.stop()
        await client.revoke(consent_id(unseen), token=token)
        process.kill()
        assert process.proc is not None and process.proc.returncode == -9
        follower.start()

        # within the bound: decided locally, the known revocation enforced
        snapshot = follower.state
        assert isinstance(verifier.decide(view, exchange(seen), snapshot).error, ConsentRevoked)
        assert verifier.check(view, exchange(valid), snapshot).allowed
        await until(lambda: follower.failures >= 1, "a failed poll")
        assert follower.state.seq == 1  # the last state is kept

        # the bound passes with the service still dead: fail closed
        await until(lambda: (follower.staleness_ms() or 0) > BOUND_MS, "the staleness bound")
        stale = follower.state
        refused = verifier.decide(view, exchange(unseen), stale)
        assert isinstance(refused.error, ConsentStatusStale)
        assert refused.consent_id == consent_id(unseen) and refused.stale_feed
        assert isinstance(verifier.decide(view, exchange(valid), stale).error, ConsentStatusStale)
        assert isinstance(verifier.decide(view, exchange(seen), stale).error, ConsentRevoked)
        # a fail-open service lets valid consents through, flagged for the audit log
        opened = verifier.check(view, exchange(valid, S_BIRTH), stale)
        assert opened.justification == audit_pb2.JUSTIFICATION_STALE_FEED_OPEN

        # the service comes back on the same state and port: the follower catches up
        restart.start()
        await until(lambda: follower.state.seq == 2, "the feed to catch up after restart")
        fresh = follower.state
        assert isinstance(verifier.decide(view, exchange(unseen), fresh).error, ConsentRevoked)
        assert verifier.check(view, exchange(valid), fresh).allowed
    finally:
        await follower.stop()
        for c in (client, operator):
            await c.close()
        await feed_channel.close()
