"""The signed, sequenced revocation feed and the follower a provider runs.

The consent service numbers revocations 1, 2, 3, … without gaps and serves them
in pages (`RevocationFeedPage`) that it signs for each request, echoing the
request's random nonce: an old page replayed by someone in the middle cannot
pass as fresh. `sign_feed_page` / `verify_feed_page` are pure.

`RevocationFeedFollower` polls the feed from the last sequence number it holds,
verifies every page, and swaps in a new immutable `RevocationState`. The
snapshot's `updated_at_ms` is the local time a poll *started* that then reached
the head of the feed, so staleness is never understated. When the consent
service is down the follower keeps its last state, which simply ages; the
verifier then applies each service's stale-feed mode. Nothing here is ever on
the path of an exchange, and a failure never ends the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

import grpc

from consent.trust import ConsentServiceKey, ms_to_datetime, verify_consent_service_signature
from consent.verifier import RevocationState
from govbus.crypto.pki import TrustAnchor
from govbus.errors import ConsentInvalid, GovbusError, Origin, ServiceUnavailable, from_rpc_error
from govbus.pb.govbus.v1 import consent_pb2, consent_pb2_grpc

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "FeedFetch",
    "RevocationFeedFollower",
    "grpc_feed_source",
    "sign_feed_page",
    "verify_feed_page",
]

log = logging.getLogger("govbus.consent.feed")

#: (after_seq, nonce) -> serialized SignedRevocationFeedPage
FeedFetch = Callable[[int, bytes], Awaitable[bytes]]

DEFAULT_PAGE_LIMIT = 1000
MAX_PAGE_LIMIT = 10_000
#: A revoked consent is forgotten this long after its own expiry (clock skew margin).
FORGET_AFTER_EXPIRY_MS = 3_600_000


def sign_feed_page(page: consent_pb2.RevocationFeedPage, key: ConsentServiceKey) -> bytes:
    body = page.SerializeToString(deterministic=True)
    signed = consent_pb2.SignedRevocationFeedPage(
        page=body, signature=key.sign(body), signer_certificate=key.certificate
    )
    return signed.SerializeToString(deterministic=True)


def _refuse(message: str) -> ConsentInvalid:
    return ConsentInvalid(f"revocation feed page refused: {message}", origin=Origin.CONSENT_SERVICE)


def verify_feed_page(
    raw: bytes, anchor: TrustAnchor, *, after_seq: int, nonce: bytes, now_ms: int
) -> consent_pb2.RevocationFeedPage:
    """The verified page answering a request for entries after `after_seq` with `nonce`.

    Raises `Certificate*` / `SignatureInvalid` for a page the consent service did
    not sign, `ConsentInvalid` for a signed page that does not answer this
    request (other nonce, other position, gaps, sequence going backwards).
    """
    signed = consent_pb2.SignedRevocationFeedPage()
    try:
        signed.ParseFromString(raw)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        raise _refuse("not a SignedRevocationFeedPage") from None
    if not signed.page or not signed.signature.value:
        raise _refuse("unsigned")
    verify_consent_service_signature(
        anchor, signed.signer_certificate, signed.signature, signed.page, at=ms_to_datetime(now_ms)
    )
    page = consent_pb2.RevocationFeedPage()
    try:
        page.ParseFromString(signed.page)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        raise _refuse("the signed bytes are not a RevocationFeedPage") from None
    if page.nonce != nonce:
        raise _refuse("it answers another request (nonce differs): replayed or misrouted")
    if page.from_seq != after_seq + 1:
        raise _refuse(f"it starts at {page.from_seq}, not at {after_seq + 1}")
    if page.head_seq < after_seq:
        raise _refuse(
            f"the service's feed ends at {page.head_seq}, before the {after_seq} entries "
            "already applied here (was its store replaced?)"
        )
    expected = page.from_seq
    for entry in page.entries:
        if entry.seq != expected or not entry.consent_id:
            raise _refuse(f"entry {entry.seq} breaks the sequence (expected {expected})")
        expected += 1
    if page.to_seq != expected - 1 or page.to_seq > page.head_seq:
        raise _refuse(f"it claims to end at {page.to_seq} but its entries end at {expected - 1}")
    return page


def grpc_feed_source(
    channel: grpc.aio.Channel, *, timeout: float = 2.0, limit: int = DEFAULT_PAGE_LIMIT
) -> FeedFetch:
    """Fetch pages from the consent service's `GetRevocationFeed` on `channel`."""
    stub = consent_pb2_grpc.ConsentServiceStub(channel)

    async def fetch(after_seq: int, nonce: bytes) -> bytes:
        request = consent_pb2.RevocationFeedRequest(after_seq=after_seq, limit=limit, nonce=nonce)
        try:
            answer = await stub.GetRevocationFeed(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc).with_origin(Origin.CONSENT_SERVICE) from None
        data: bytes = answer.SerializeToString()
        return data

    return fetch


class RevocationFeedFollower:
    """Keeps a provider's `RevocationState` close to the consent service's feed.

    `anchor` returns the trust anchor in force (from the current global
    configuration), so a revoked consent-service certificate stops being trusted
    as soon as the configuration says so.
    """

    def __init__(
        self,
        fetch: FeedFetch,
        anchor: Callable[[], TrustAnchor],
        *,
        interval: float = 1.0,
        timeout: float = 3.0,
        max_pages_per_poll: int = 100,
        clock: Callable[[], float] = time.time,
        initial: RevocationState | None = None,
    ) -> None:
        self._fetch = fetch
        self._anchor = anchor
        self.interval = interval
        self.timeout = timeout
        self.max_pages_per_poll = max_pages_per_poll
        self._clock = clock
        self._state = initial or RevocationState()
        self._expiry: dict[str, int] = dict.fromkeys(self._state.revoked, 2**62)
        self._pruned_at_ms = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.polls = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None

    @property
    def state(self) -> RevocationState:
        """The snapshot in force: read it once per exchange; it never changes under you."""
        return self._state

    def staleness_ms(self, now_ms: int | None = None) -> int | None:
        now_ms = int(self._clock() * 1000) if now_ms is None else now_ms
        return self._state.age_ms(now_ms)

    async def poll_once(self) -> RevocationState:
        """Read the feed up to its head; raise a govbus error if that fails.

        Entries from pages that did verify are applied even when a later page
        fails, so a revocation takes effect as early as possible; only a poll
        that reaches the head refreshes `updated_at_ms`.
        """
        async with self._lock:
            self.polls += 1
            started_ms = int(self._clock() * 1000)
            seq = self._state.seq
            learned: dict[str, int] = {}
            try:
                for _ in range(self.max_pages_per_poll):
                    nonce = os.urandom(16)
                    try:
                        raw = await asyncio.wait_for(self._fetch(seq, nonce), self.timeout)
                    except TimeoutError:
                        raise ServiceUnavailable(
                            f"the consent service did not answer the feed within {self.timeout} s",
                            origin=Origin.CONSENT_SERVICE,
                        ) from None
                    page = verify_feed_page(
                        raw,
                        self._anchor(),
                        after_seq=seq,
                        nonce=nonce,
                        now_ms=int(self._clock() * 1000),
                    )
                    for entry in page.entries:
                        learned[entry.consent_id] = entry.expires_at_ms
                    seq = page.to_seq
                    if seq >= page.head_seq:
                        break
                else:
                    self._apply(learned, seq, None)
                    return self._state  # more to read: the next poll goes on from here
            except GovbusError as exc:
                self._apply(learned, seq, None)
                self.failures += 1
                self.consecutive_failures += 1
                self.last_error = str(exc)
                raise
            self._apply(learned, seq, started_ms)
            if self.consecutive_failures:
                log.info(
                    "consent revocation feed reachable again after %d failed polls",
                    self.consecutive_failures,
                )
            self.consecutive_failures = 0
            self.last_error = None
            return self._state

    def _apply(self, learned: dict[str, int], seq: int, updated_at_ms: int | None) -> None:
        if not learned and seq == self._state.seq and updated_at_ms is None:
            return
        now_ms = int(self._clock() * 1000)
        expiry = self._expiry
        if learned:
            expiry = {**expiry, **learned}
        # Forgetting scans every entry: do it at most once a minute, not on every poll.
        if now_ms - self._pruned_at_ms >= 60_000:
            self._pruned_at_ms = now_ms
            if any(exp + FORGET_AFTER_EXPIRY_MS < now_ms for exp in expiry.values()):
                expiry = {c: e for c, e in expiry.items() if e + FORGET_AFTER_EXPIRY_MS >= now_ms}
        revoked = self._state.revoked if expiry is self._expiry else frozenset(expiry)
        self._expiry = expiry
        self._state = RevocationState(
            revoked=revoked,
            seq=seq,
            updated_at_ms=self._state.updated_at_ms if updated_at_ms is None else updated_at_ms,
        )

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled; failures are logged, never raised."""
        while True:
            try:
                await self.poll_once()
            except GovbusError as exc:
                if self.consecutive_failures == 1:
                    log.warning("consent revocation feed poll failed: %s", exc)
            except Exception:  # the follower must outlive any single bad poll
                self.failures += 1
                self.consecutive_failures += 1
                log.exception("consent revocation feed poll failed unexpectedly")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="consent-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
