"""Generate, sign and hold the global configuration the registry serves.

A new version is made when the registry content changes — at most one every
`min_interval` seconds, so a burst of admin changes gives one version — and at
least every `resign_interval` seconds even without a change, so that
`expires_at` keeps moving ahead of the security servers' clocks. Every signing
is a new version; versions come from a counter in the store, so they never go
back, not even after a crash or a restart.

Each new configuration is verified with the same function every security
server uses before it is swapped in: the registry never serves a configuration
its clients would refuse. The published value is immutable; readers take
`current` and keep it for the whole request.

It never changes registry content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from govbus.crypto.keys import Signer
from govbus.errors import DeadlineExceeded, GovbusError, Origin, ServiceUnavailable
from govbus.globalconf import GlobalConfView, sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.confbuild import ConfSettings, build_global_conf
from registry.store import RegistryContent, RegistryStore

__all__ = ["ConfPublisher", "Publication"]

log = logging.getLogger("govbus.registry.publisher")


@dataclass(frozen=True, eq=False)
class Publication:
    """One signed global configuration, as served."""

    revision: int  # the registry revision it covers
    raw: bytes  # SignedGlobalConf bytes
    signed: globalconf_pb2.SignedGlobalConf
    view: GlobalConfView
    descriptors: Mapping[str, bytes] = field(repr=False)

    @property
    def version(self) -> int:
        return self.view.version

    @property
    def conf(self) -> globalconf_pb2.GlobalConf:
        return self.view.conf


class ConfPublisher:
    def __init__(
        self,
        store: RegistryStore,
        signer: Signer,
        signer_certificate: bytes,
        anchor: Sequence[x509.Certificate],
        settings: ConfSettings,
        *,
        min_interval: float = 2.0,
        resign_interval: float = 60.0,
        poll_interval: float | None = None,
        clock: Callable[[], float] = time.time,
        extra_revoked: Callable[[], Iterable[int]] = frozenset,
    ) -> None:
        self._store = store
        self._signer = signer
        self._signer_cert = signer_certificate
        self._anchor = list(anchor)
        self.settings = settings
        self.min_interval = min_interval
        self.resign_interval = resign_interval
        # Changes made by another registry process sharing the database are seen by polling.
        self.poll_interval = poll_interval or max(min_interval, 2.0)
        self._clock = clock
        self._extra_revoked = extra_revoked
        self._current: Publication | None = None
        self._wake = asyncio.Event()
        self._published = asyncio.Condition()
        self._generate_lock = asyncio.Lock()
        self._last_attempt = float("-inf")  # monotonic
        self._last_success = float("-inf")  # monotonic
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def current(self) -> Publication:
        """The configuration in force; `SERVICE_UNAVAILABLE` before the first one."""
        if self._current is None:
            raise ServiceUnavailable(
                "the registry has not published a global configuration yet",
                origin=Origin.REGISTRY,
                retry_after=1.0,
            )
        return self._current

    def notify_change(self) -> None:
        """Registry content changed: publish a new version (debounced)."""
        self._wake.set()

    async def publish(self) -> Publication:
        """Build, sign, self-verify and swap in a new version now."""
        async with self._generate_lock:
            self._last_attempt = time.monotonic()
            content, extra = await asyncio.to_thread(self._read_content)
            version = await asyncio.to_thread(self._store.next_conf_version)
            now = self._clock()
            conf = build_global_conf(
                content, self.settings, version=version, now=now, extra_revoked=extra
            )
            raw = sign_global_conf(conf, self._signer, self._signer_cert)
            previous = self._current.view if self._current is not None else None
            view = verify_global_conf(raw, self._anchor, previous=previous, now=now)
            signed = globalconf_pb2.SignedGlobalConf()
            signed.ParseFromString(raw)
            publication = Publication(content.revision, raw, signed, view, content.descriptors)
            self._current = publication
            self._last_success = time.monotonic()
            self.failures = 0
        async with self._published:
            self._published.notify_all()
        log.info("published global configuration v%d (revision %d)", version, content.revision)
        return publication

    def _read_content(self) -> tuple[RegistryContent, frozenset[int]]:
        with self._store.read() as reader:
            content = reader.content()
        return content, frozenset(self._extra_revoked())

    async def wait_for(self, revision: int, within: float) -> Publication:
        """The first publication covering `revision` (0 = the store's current revision)."""
        if revision == 0:
            revision = await asyncio.to_thread(self._store.revision)
        self.notify_change()

        def covered() -> bool:
            return self._current is not None and self._current.revision >= revision

        try:
            async with self._published:
                await asyncio.wait_for(self._published.wait_for(covered), within)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no global configuration covering revision {revision} was published within "
                f"{within:.1f} s",
                origin=Origin.REGISTRY,
            ) from None
        return self.current

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            resign_due = self._last_success + self.resign_interval
            timeout = max(0.0, min(resign_due - now, self.poll_interval))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            # The rate limit: at most one version per min_interval.
            pause = self._last_attempt + self.min_interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            # Changes committed from here on set the event again and get their own version.
            self._wake.clear()
            try:
                if time.monotonic() < resign_due and self._current is not None:
                    revision = await asyncio.to_thread(self._store.revision)
                    if revision == self._current.revision:
                        continue
                await self.publish()
            except GovbusError as exc:
                self.failures += 1
                log.warning("global configuration not published: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="conf-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
