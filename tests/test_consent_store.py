"""The consent store: the same suite over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from consent.store import (
    AttemptOutcome,
    Challenge,
    PendingRequest,
    SqlConsentStore,
    StoredConsent,
)
from govbus.errors import FailedPrecondition, NotFound, RateLimited
from govbus.pb.govbus.v1 import consent_pb2, usage_pb2
from tests.consent_world import ALICE, BOB, CLIENT

NOW = 1_800_000_000_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., Awaitable[SqlConsentStore]]:
    if request.param == "sqlite":
        return lambda clean=True: SqlConsentStore.open_sqlite(tmp_path / "consent.db")
    dsn = request.getfixturevalue("pg_dsn")

    async def open_clean(clean: bool = True) -> SqlConsentStore:
        store = await SqlConsentStore.open_postgres(dsn)
        if not clean:
            return store
        # one database per session: start every test from empty tables
        for table in (
            "consent_challenges",
            "consent_requests",
            "consent_consents",
            "consent_feed",
            "consent_phones",
        ):
            await store._run(lambda t=table: _truncate(store, t))
        return store

    return open_clean


def _truncate(store: SqlConsentStore, table: str) -> None:
    with store._tx() as tx:
        tx.execute(f"DELETE FROM {table}")


def run(
    test: Callable[[SqlConsentStore], Awaitable[None]],
    opener: Callable[..., Awaitable[SqlConsentStore]],
) -> None:
    async def scenario() -> None:
        store = await opener()
        try:
            await test(store)
        finally:
            await store.close()

    asyncio.run(scenario())


def challenge(
    cid: str, subject: str = ALICE, phone: str = "+77010000001", **kw: object
) -> Challenge:
    fields: dict[str, object] = {
        "challenge_id": cid,
        "subject": subject,
        "kind": "consent",
        "method": usage_pb2.CONSENT_METHOD_OTP,
        "code_hash": hashlib.sha256(cid.encode() + b"123456").digest(),
        "nonce": b"",
        "phone": phone,
        "phone_masked": "+7******0001",
        "created_ms": NOW,
        "expires_ms": NOW + 300_000,
    }
    fields.update(kw)
    return Challenge(**fields)  # type: ignore[arg-type]


def consent(cid: str, subject: str = ALICE, request_id: str = "r1") -> StoredConsent:
    return StoredConsent(
        cid, request_id, subject, CLIENT, b"signed-" + cid.encode(), NOW, NOW + 10**9, NOW
    )


def pending(rid: str, cid: str, subject: str = ALICE) -> PendingRequest:
    return PendingRequest(
        rid,
        cid,
        subject,
        CLIENT,
        usage_pb2.CONSENT_METHOD_OTP,
        b"terms",
        "",
        "",
        NOW,
        NOW + 900_000,
    )


def test_phones(open_store: Callable[..., Awaitable[SqlConsentStore]]) -> None:
    async def test(store: SqlConsentStore) -> None:
        assert await store.phone_of(ALICE) is None
        await store.set_phone(ALICE, "+77010000001", NOW)
        await store.set_phone(ALICE, "+77010000002", NOW + 1)
        await store.set_phones([(BOB, "+77010000003")], NOW)
        assert await store.phone_of(ALICE) == "+77010000002"
        assert await store.phone_of(BOB) == "+77010000003"

    run(test, open_store)


def test_code_attempts_lock_and_single_use(
    open_store: Callable[..., Awaitable[SqlConsentStore]],
) -> None:
    async def test(store: SqlConsentStore) -> None:
        await store.add_challenge(challenge("ch1"), since_ms=0, limit=10)
        right = hashlib.sha256(b"ch1123456").digest()
        wrong = hashlib.sha256(b"nope").digest()
        outcomes = [await store.attempt_code("ch1", wrong, NOW, 3) for _ in range(2)]
        assert outcomes == [AttemptOutcome.WRONG, AttemptOutcome.WRONG]
        assert await store.attempt_code("ch1", right, NOW, 3) is AttemptOutcome.ACCEPTED
        assert await store.attempt_code("ch1", right, NOW, 3) is AttemptOutcome.USED

        await store.add_challenge(challenge("ch2"), since_ms=0, limit=10)
        right2 = hashlib.sha256(b"ch2123456").digest()
        for _ in range(2):
            assert await store.attempt_code("ch2", wrong, NOW, 3) is AttemptOutcome.WRONG
        assert await store.attempt_code("ch2", wrong, NOW, 3) is AttemptOutcome.LOCKED_NOW
        # locked: even the right code is refused now
        assert await store.attempt_code("ch2", right2, NOW, 3) is AttemptOutcome.LOCKED
        found = await store.get_challenge("ch2")
        assert found is not None and found.state == "locked" and found.attempts == 3

        await store.add_challenge(challenge("ch3"), since_ms=0, limit=10)
        right3 = hashlib.sha256(b"ch3123456").digest()
        assert await store.attempt_code("ch3", right3, NOW + 300_000, 3) is AttemptOutcome.EXPIRED
        assert await store.attempt_code("nope", right3, NOW, 3) is AttemptOutcome.UNKNOWN

    run(test, open_store)


def test_two_stores_racing_never_exceed_the_limit_nor_break_the_feed(
    open_store: Callable[..., Awaitable[SqlConsentStore]],
) -> None:
    """Two stores on one database (two connections, two threads): real concurrency."""

    async def test(first: SqlConsentStore) -> None:
        second = await open_store(clean=False)
        try:
            await first.add_challenge(challenge("race"), since_ms=0, limit=10)
            wrong = hashlib.sha256(b"nope").digest()
            outcomes = await asyncio.gather(
                *(
                    (first if n % 2 else second).attempt_code("race", wrong, NOW, 5)
                    for n in range(20)
                )
            )
            counted = [
                o for o in outcomes if o in (AttemptOutcome.WRONG, AttemptOutcome.LOCKED_NOW)
            ]
            assert len(counted) == 5
            found = await second.get_challenge("race")
            assert found is not None and found.attempts == 5
            for n in range(8):
                await first.add_request(pending(f"r{n}", f"c{n}"))
                await first.complete_request(f"r{n}", consent(f"c{n}", request_id=f"r{n}"), NOW)
            await asyncio.gather(
                *((first if n % 2 else second).revoke(f"c{n}", NOW, "x") for n in range(8))
            )
            entries, head = await second.feed(0, 100)
            assert head == 8 and [e.seq for e in entries] == list(range(1, 9))
        finally:
            await second.close()

    run(test, open_store)


def test_signature_challenge_is_used_once(
    open_store: Callable[..., Awaitable[SqlConsentStore]],
) -> None:
    async def test(store: SqlConsentStore) -> None:
        eds = challenge("eds1", code_hash=b"", nonce=os.urandom(32), kind="login")
        await store.add_challenge(eds, since_ms=0, limit=0)
        assert await store.use_challenge("eds1", NOW) is AttemptOutcome.ACCEPTED
        assert await store.use_challenge("eds1", NOW) is AttemptOutcome.USED
        eds2 = challenge("eds2", code_hash=b"", nonce=b"n", kind="login")
        await store.add_challenge(eds2, since_ms=0, limit=0)
        assert await store.use_challenge("eds2", NOW + 300_000) is AttemptOutcome.EXPIRED
        assert await store.use_challenge("none", NOW) is AttemptOutcome.UNKNOWN

    run(test, open_store)


def test_code_sends_are_rate_limited_per_person_and_phone(
    open_store: Callable[..., Awaitable[SqlConsentStore]],
) -> None:
    async def test(store: SqlConsentStore) -> None:
        for n in range(3):
            await store.add_challenge(challenge(f"a{n}"), since_ms=NOW - 1000, limit=3)
        with pytest.raises(RateLimited) as caught:
            await store.add_challenge(challenge("a3"), since_ms=NOW - 1000, limit=3)
        assert caught.value.retry_after is not None
        # the same phone for another IIN is limited too
        with pytest.raises(RateLimited):
            await store.add_challenge(challenge("b0", subject=BOB), since_ms=NOW - 1000, limit=3)
        # another person with another phone is not
        await store.add_challenge(
            challenge("b1", subject=BOB, phone="+77019999999"), since_ms=NOW - 1000, limit=3
        )
        # once the window has moved on, Alice may get a code again
        await store.add_challenge(challenge("a4", created_ms=NOW + 10), since_ms=NOW + 1, limit=3)
        assert await store.get_challenge("a3") is None

    run(test, open_store)


def test_request_completes_once(open_store: Callable[..., Awaitable[SqlConsentStore]]) -> None:
    async def test(store: SqlConsentStore) -> None:
        await store.add_request(pending("r1", "c1"))
        found = await store.get_request("r1")
        assert found is not None and found.terms == b"terms" and found.state == "pending"
        await store.complete_request("r1", consent("c1"), NOW)
        with pytest.raises(FailedPrecondition, match="already confirmed"):
            await store.complete_request("r1", consent("c1"), NOW)
        done = await store.get_request("r1")
        assert done is not None and done.state == "confirmed"
        stored = await store.get_consent("c1")
        assert stored is not None and stored.signed == b"signed-c1"
        assert stored.state(NOW) == consent_pb2.CONSENT_STATE_ACTIVE
        assert stored.state(NOW + 10**9) == consent_pb2.CONSENT_STATE_EXPIRED
        await store.add_request(pending("r2", "c2"))
        with pytest.raises(FailedPrecondition, match="expired"):
            await store.complete_request("r2", consent("c2", request_id="r2"), NOW + 900_000)
        with pytest.raises(FailedPrecondition, match="is for consent"):
            await store.complete_request("r2", consent("c9", request_id="r2"), NOW)
        with pytest.raises(NotFound):
            await store.complete_request("r9", consent("c9"), NOW)
        assert await store.get_consent("c2") is None and await store.get_consent("c9") is None

    run(test, open_store)


def test_revocations_form_a_gapless_feed(
    open_store: Callable[..., Awaitable[SqlConsentStore]],
) -> None:
    async def test(store: SqlConsentStore) -> None:
        for n in range(5):
            await store.add_request(pending(f"r{n}", f"c{n}", ALICE if n % 2 else BOB))
            await store.complete_request(
                f"r{n}", consent(f"c{n}", ALICE if n % 2 else BOB, f"r{n}"), NOW
            )
        assert [c.consent_id for c in await store.list_consents(ALICE)] == ["c1", "c3"]
        assert await store.feed(0, 10) == ([], 0)
        revoked = await asyncio.gather(
            *(store.revoke(f"c{n}", NOW + n, f"citizen {n}") for n in range(5))
        )
        assert sorted(r.revocation_seq for r in revoked) == [1, 2, 3, 4, 5]
        again = await store.revoke("c2", NOW + 100, "someone else")
        assert again.revoked_ms == NOW + 2 and again.revoked_by == "citizen 2"  # first one stands
        entries, head = await store.feed(0, 10)
        assert head == 5 and [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert {e.consent_id for e in entries} == {f"c{n}" for n in range(5)}
        page, head = await store.feed(2, 2)
        assert [e.seq for e in page] == [3, 4] and head == 5
        assert await store.feed(5, 10) == ([], 5)
        stored = await store.get_consent("c3")
        assert stored is not None and stored.state(NOW) == consent_pb2.CONSENT_STATE_REVOKED
        with pytest.raises(NotFound):
            await store.revoke("c-none", NOW, "x")

    run(test, open_store)


def test_state_survives_reopening(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await SqlConsentStore.open_sqlite(tmp_path / "c.db")
        await store.add_request(pending("r1", "c1"))
        await store.complete_request("r1", consent("c1"), NOW)
        await store.revoke("c1", NOW, "x")
        await store.close()
        reopened = await SqlConsentStore.open_sqlite(tmp_path / "c.db")
        try:
            assert (await reopened.feed(0, 10))[1] == 1
        finally:
            await reopened.close()

    asyncio.run(scenario())
