"""Bulkhead and provider-side load shedding: bounds under concurrency, queue and deadlines."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from govbus.errors import ConfigInvalid, DeadlineExceeded, Origin, ServiceUnavailable
from security_server.resilience import (
    UNPROCESSED_KEY,
    Bulkhead,
    BulkheadConfig,
    LoadShedder,
    ProviderCollector,
    failover_allowed,
)

SERVICE = "KZ/GOV/040340123459/gbdfl/person/v1"


class Registry:
    """A registry that holds each call until told to answer, counting concurrency."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.gate = asyncio.Event()

    async def call(self) -> str:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return "answer"


async def _guarded(bulkhead: Bulkhead, registry: Registry, max_wait: float | None) -> str:
    async with bulkhead.slot(max_wait):
        return await registry.call()


def test_hung_registry_holds_at_most_in_flight_plus_queue() -> None:
    async def scenario() -> None:
        bulkhead = Bulkhead(SERVICE, BulkheadConfig(max_in_flight=4, max_queue=2))
        registry = Registry()
        tasks = [asyncio.create_task(_guarded(bulkhead, registry, max_wait=30)) for _ in range(20)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        refused = [t for t in tasks if t.done()]
        assert len(refused) == 14  # 4 running + 2 queued; the rest refused at once
        for task in refused:
            error = task.exception()
            assert isinstance(error, ServiceUnavailable)
            assert error.retry_after == 1.0
            assert error.origin is Origin.CONSUMER_SS
        snap = bulkhead.snapshot()
        assert (snap.in_flight, snap.queued, snap.shed) == (4, 2, 14)
        registry.gate.set()
        assert [await t for t in tasks if t not in refused] == ["answer"] * 6
        assert registry.peak == 4
        snap = bulkhead.snapshot()
        assert (snap.in_flight, snap.queued, snap.admitted) == (0, 0, 6)

    asyncio.run(scenario())


def test_queue_wait_is_bounded_by_the_deadline() -> None:
    async def scenario() -> None:
        bulkhead = Bulkhead(SERVICE, BulkheadConfig(max_in_flight=1, max_queue=5))
        registry = Registry()
        holder = asyncio.create_task(_guarded(bulkhead, registry, max_wait=None))
        await asyncio.sleep(0)
        with pytest.raises(DeadlineExceeded, match="queue"):
            await _guarded(bulkhead, registry, max_wait=0.01)
        with pytest.raises(DeadlineExceeded):
            await _guarded(bulkhead, registry, max_wait=0.0)  # no time left at all
        assert bulkhead.queued == 0 and bulkhead.shed == 2
        registry.gate.set()
        await holder
        assert bulkhead.in_flight == 0

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_the_queue_and_loses_no_slot() -> None:
    async def scenario() -> None:
        bulkhead = Bulkhead(SERVICE, BulkheadConfig(max_in_flight=1, max_queue=3))
        registry = Registry()
        holder = asyncio.create_task(_guarded(bulkhead, registry, max_wait=None))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(_guarded(bulkhead, registry, max_wait=None))
        await asyncio.sleep(0)
        assert bulkhead.queued == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bulkhead.queued == 0
        registry.gate.set()
        await holder
        assert bulkhead.in_flight == 0
        assert await _guarded(bulkhead, registry, max_wait=None) == "answer"

    asyncio.run(scenario())


@settings(max_examples=40, deadline=None)
@given(
    max_in_flight=st.integers(1, 8),
    max_queue=st.integers(0, 8),
    callers=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_bounds_hold_under_any_interleaving(
    max_in_flight: int, max_queue: int, callers: int, seed: int
) -> None:
    """Random arrivals, durations and cancellations never break the bounds or leak slots."""

    async def scenario() -> None:
        rng = random.Random(seed)
        bulkhead = Bulkhead(
            SERVICE, BulkheadConfig(max_in_flight=max_in_flight, max_queue=max_queue)
        )
        running = peak = 0

        async def caller() -> None:
            nonlocal running, peak
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            try:
                async with bulkhead.slot(None):
                    running += 1
                    peak = max(peak, running)
                    assert bulkhead.queued <= max_queue
                    for _ in range(rng.randint(0, 4)):
                        await asyncio.sleep(0)
                    running -= 1
            except ServiceUnavailable:
                pass

        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        for task in rng.sample(tasks, k=len(tasks) // 5):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= max_in_flight
        assert bulkhead.in_flight == 0 and bulkhead.queued == 0

    asyncio.run(scenario())


def test_load_shedder_refuses_clearly_and_marks_unprocessed() -> None:
    async def scenario() -> None:
        shedder = LoadShedder(BulkheadConfig(max_in_flight=2, max_queue=0, retry_after=0.5))
        shedder.configure({"other": BulkheadConfig(max_in_flight=1, max_queue=0)})
        registry = Registry()

        async def exchange(service: str) -> str:
            async with shedder.admit(service, 10):
                return await registry.call()

        busy = [asyncio.create_task(exchange(SERVICE)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable) as shed:
            await exchange(SERVICE)
        assert shed.value.origin is Origin.PROVIDER_SS
        assert shed.value.retry_after == 0.5
        assert shed.value.metadata[UNPROCESSED_KEY] == "true"
        assert failover_allowed(shed.value)  # the consumer may try another server
        other = asyncio.create_task(exchange("other"))  # another service is not affected
        await asyncio.sleep(0)
        assert shedder.bulkhead("other").in_flight == 1
        registry.gate.set()
        await asyncio.gather(*busy, other)
        rows = {row.name: row for row in shedder.snapshot()}
        assert rows[SERVICE].shed == 1 and rows[SERVICE].admitted == 2
        assert rows["other"].max_in_flight == 1

    asyncio.run(scenario())


def test_load_shedding_metrics_on_their_own_registry() -> None:
    shedder = LoadShedder()
    shedder.bulkhead(SERVICE).shed = 4
    metrics = CollectorRegistry()
    ProviderCollector(shedder.snapshot).register(metrics)
    assert metrics.get_sample_value("govbus_provider_shed_total", {"service": SERVICE}) == 4
    assert metrics.get_sample_value("govbus_provider_in_flight", {"service": SERVICE}) == 0


def test_load_shedder_reconfigure_keeps_counters() -> None:
    shedder = LoadShedder()
    bulkhead = shedder.bulkhead(SERVICE)
    bulkhead.shed = 3
    shedder.configure({SERVICE: BulkheadConfig(max_in_flight=5, max_queue=1)})
    assert shedder.bulkhead(SERVICE).config.max_in_flight == 5
    assert shedder.bulkhead(SERVICE).shed == 3


@pytest.mark.parametrize(
    "bad",
    [{"max_in_flight": 0}, {"max_queue": -1}, {"retry_after": float("nan")}],
)
def test_bad_bulkhead_settings_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigInvalid):
        BulkheadConfig(**bad)  # type: ignore[arg-type]
