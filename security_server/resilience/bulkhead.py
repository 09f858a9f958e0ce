"""Bounds on concurrent calls: the consumer's bulkhead and the provider's load shedder.

A `Bulkhead` admits at most `max_in_flight` calls to one provider service and
lets at most `max_queue` more wait, first come first served, each no longer
than its own deadline. Anything beyond is refused at once with
`SERVICE_UNAVAILABLE` and a `RetryInfo`, so a hung registry can hold at most
`max_in_flight + max_queue` of the security server's workers, connections and
buffers — never all of them.

`LoadShedder` is the same bound on the provider side, one per published
service: an overloaded provider security server refuses with a clear code
(marked `unprocessed`, so the consumer may fail over to another server) instead
of letting every caller time out.

The fast path (a free slot, nobody waiting) takes no await and allocates
nothing. One instance belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from govbus.errors import ConfigInvalid, DeadlineExceeded, GovbusError, Origin, ServiceUnavailable
from security_server.resilience.clock import Clock, steady
from security_server.resilience.outcome import GUARD_KEY, UNPROCESSED_KEY

__all__ = ["Bulkhead", "BulkheadConfig", "BulkheadSnapshot", "LoadShedder"]

log = logging.getLogger("govbus.resilience")

#: Shedding is logged at most once per this many seconds per bulkhead.
_LOG_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class BulkheadConfig:
    max_in_flight: int = 64
    max_queue: int = 16
    #: What a refused caller is told to wait (`RetryInfo`).
    retry_after: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_in_flight <= 1_000_000:
            raise ConfigInvalid(f"max_in_flight must be in 1..1000000, got {self.max_in_flight}")
        if not 0 <= self.max_queue <= 1_000_000:
            raise ConfigInvalid(f"max_queue must be in 0..1000000, got {self.max_queue}")
        if not (0 <= self.retry_after <= 3600 and math.isfinite(self.retry_after)):
            raise ConfigInvalid(f"retry_after must be in 0..3600 s, got {self.retry_after}")


@dataclass(frozen=True, slots=True)
class BulkheadSnapshot:
    name: str
    in_flight: int
    queued: int
    max_in_flight: int
    max_queue: int
    admitted: int  # calls let through since start
    shed: int  # calls refused since start (full, or deadline passed in the queue)


class Bulkhead:
    """A bounded number of in-flight calls plus a bounded FIFO queue."""

    def __init__(
        self,
        name: str,
        config: BulkheadConfig | None = None,
        *,
        origin: Origin = Origin.CONSUMER_SS,
        mark_unprocessed: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config or BulkheadConfig()
        self.origin = origin
        self._mark_unprocessed = mark_unprocessed
        self._now = steady(clock)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.admitted = 0
        self.shed = 0
        self._shed_logged = 0
        self._last_log = -math.inf

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting (no await)."""
        if self.in_flight < self.config.max_in_flight and not self._waiters:
            self.in_flight += 1
            self.admitted += 1
            return True
        return False

    async def acquire(self, max_wait: float | None) -> None:
        """Take a slot, waiting in the queue at most `max_wait` seconds (the deadline).

        Raises `SERVICE_UNAVAILABLE` at once when the queue is full, and
        `DEADLINE_EXCEEDED` when `max_wait` passes in the queue.
        """
        if self.try_acquire():
            return
        if len(self._waiters) >= self.config.max_queue:
            raise self._refuse(
                f"{self.name}: {self.in_flight} calls in flight and {len(self._waiters)} "
                "waiting (the limit); refused at once"
            )
        if max_wait is not None and max_wait <= 0:
            raise self._refuse(f"{self.name}: no free slot and no time left to wait", deadline=True)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if max_wait is None:
                await waiter
            else:
                async with asyncio.timeout(max_wait):
                    await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot was handed over just as we gave up: pass it on
            else:
                self._forget(waiter)
            if isinstance(exc, TimeoutError):
                raise self._refuse(
                    f"{self.name}: waited {max_wait:.3f} s in the queue for a free slot "
                    "until the deadline",
                    deadline=True,
                ) from None
            raise
        self.admitted += 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back, handing it straight to the first live waiter."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_flight stays
                return
        self.in_flight -= 1

    def slot(self, max_wait: float | None) -> _Slot:
        """`async with bulkhead.slot(max_wait):` — acquire, and release on exit."""
        return _Slot(self, max_wait)

    def _refuse(self, message: str, *, deadline: bool = False) -> GovbusError:
        self.shed += 1
        now = self._now()
        if now - self._last_log >= _LOG_EVERY:
            log.warning(
                "%s shedding load: %d calls refused since start (%d in flight, %d queued)",
                self.name,
                self.shed,
                self.in_flight,
                len(self._waiters),
            )
            self._last_log = now
        metadata = {GUARD_KEY: "bulkhead"}
        if self._mark_unprocessed:
            metadata[UNPROCESSED_KEY] = "true"
        if deadline:
            return DeadlineExceeded(message, origin=self.origin, metadata=metadata)
        return ServiceUnavailable(
            message, origin=self.origin, retry_after=self.config.retry_after, metadata=metadata
        )

    def snapshot(self) -> BulkheadSnapshot:
        return BulkheadSnapshot(
            name=self.name,
            in_flight=self.in_flight,
            queued=len(self._waiters),
            max_in_flight=self.config.max_in_flight,
            max_queue=self.config.max_queue,
            admitted=self.admitted,
            shed=self.shed,
        )


class _Slot:
    __slots__ = ("_bulkhead", "_max_wait")

    def __init__(self, bulkhead: Bulkhead, max_wait: float | None) -> None:
        self._bulkhead = bulkhead
        self._max_wait = max_wait

    async def __aenter__(self) -> None:
        await self._bulkhead.acquire(self._max_wait)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bulkhead.release()


class LoadShedder:
    """Provider side: one bulkhead per published service, created on first use.

    `async with shedder.admit(service_id, context.time_remaining()):` around the
    handling of one exchange. Settings per service come from `configure()`
    (the provider security server calls it from the global configuration);
    services without settings get `default`.
    """

    def __init__(
        self, default: BulkheadConfig | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        self.default = default or BulkheadConfig(max_in_flight=64, max_queue=32)
        self._clock = steady(clock)
        self._configs: dict[str, BulkheadConfig] = {}
        self._bulkheads: dict[str, Bulkhead] = {}

    def configure(self, configs: dict[str, BulkheadConfig]) -> None:
        """Put new per-service limits in force; unchanged ones keep their counters."""
        self._configs = dict(configs)
        for service_id in list(self._bulkheads):
            wanted = self._configs.get(service_id, self.default)
            if self._bulkheads[service_id].config != wanted:
                old = self._bulkheads[service_id]
                fresh = self._new(service_id, wanted)
                # In-flight calls release into the old bulkhead; counters carry on.
                fresh.admitted, fresh.shed = old.admitted, old.shed
                self._bulkheads[service_id] = fresh

    def _new(self, service_id: str, config: BulkheadConfig) -> Bulkhead:
        return Bulkhead(
            service_id,
            config,
            origin=Origin.PROVIDER_SS,
            mark_unprocessed=True,
            clock=self._clock,
        )

    def bulkhead(self, service_id: str) -> Bulkhead:
        found = self._bulkheads.get(service_id)
        if found is None:
            found = self._new(service_id, self._configs.get(service_id, self.default))
            self._bulkheads[service_id] = found
        return found

    def admit(self, service_id: str, max_wait: float | None) -> _Slot:
        """`async with shedder.admit(service_id, context.time_remaining()):`"""
        return _Slot(self.bulkhead(service_id), max_wait)

    def snapshot(self) -> tuple[BulkheadSnapshot, ...]:
        return tuple(b.snapshot() for _, b in sorted(self._bulkheads.items()))
