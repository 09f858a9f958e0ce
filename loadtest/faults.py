"""Fault injection with real processes: the agency registries behind the bus, one of
them killed, frozen or slowed under steady load from the ЦОН.

`FaultBus` starts, on localhost, every implemented agency adapter (`discover()`:
all twenty once they are implemented) on a small synthetic population, one provider
security server per agency (X-Road style: each member runs its own), and two
consumer security servers of the ЦОН: `ss1` with resilience on, `ss2` with
`[resilience] enabled = false` (the drill that shows what breakers and bulkheads
prevent). Every adapter's service is published from its `publish.json` (ids,
idempotent reads, default deadline) and its generated descriptor (methods,
server-streaming flags), as not needing consent: the consent path is tested
elsewhere, and here it would only add a consent service to every call.

`OperatorPool` is the ЦОН's load: a fixed pool of operator workers, each call to a
random agency's idempotent read with a sample request and a per-call deadline —
back to back (closed loop), or serving citizens who arrive at a fixed rate and
queue for a free operator (latency and deadline counted from arrival, so a pool
blocked on a frozen registry shows as expired and slow healthy calls).

`run_fault` injects one fault — `kill` (SIGKILL, then restart on the same port),
`freeze` (SIGSTOP, then SIGCONT), `slow` (the adapter's drill control makes it
answer after the deadline, then clears) — under that load and measures, per
service, success rate, latency percentiles and error codes; the time from the
fault to the first fast `SERVICE_UNAVAILABLE` refused by the consumer SS's
breaker; the breaker's state over time (the SS's Status RPC, polled) and its
transitions (the SS's Prometheus counters).

Every request loop here is bounded in time and count, targets only loopback
addresses, and stops by itself; processes are signalled only by their own pid.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from prometheus_client.parser import text_string_to_metric_families

from adapters.population import World
from adapters.sdk.agency import AgencyAdapter, discover
from adapters.sdk.drill import set_drill_delay
from govbus import metadata as md
from govbus.errors import from_rpc_error
from govbus.pb.govbus.v1 import globalconf_pb2, security_server_pb2, security_server_pb2_grpc
from govbus.process import GovbusProcess
from loadtest.harness import Bus, start_all

__all__ = [
    "CONSUMER",
    "TSON",
    "AgencyRead",
    "CallRecord",
    "FaultBus",
    "FaultKind",
    "FaultRun",
    "OperatorPool",
    "WindowStats",
    "run_fault",
    "window_stats",
]

#: The ЦОН (citizen service centre) as a member, and its operator application.
CONSUMER = "KZ/GOV/990140000017"
TSON = f"{CONSUMER}/tson"
RESILIENT_SS = f"{CONSUMER}/ss1"
UNGUARDED_SS = f"{CONSUMER}/ss2"  # [resilience] enabled = false

FaultKind = Literal["kill", "freeze", "slow"]
BREAKER = "circuit_breaker"


@dataclass(frozen=True)
class AgencyRead:
    """One agency's idempotent read as the load calls it."""

    code: str
    service_id: str
    server_id: str  # its provider security server
    method: str  # "/pkg.Service/Method"
    streaming: bool
    requests: tuple[bytes, ...]  # serialized sample requests


def _reads_of(adapter: AgencyAdapter, world: World) -> tuple[str, bool, tuple[bytes, ...]]:
    """The idempotent read the load uses: a unary one if there is one (the ЦОН's
    typical lookup), else a server-streaming one; with the adapter's own samples."""
    publication = adapter.publication
    samples = adapter.samples(world).valid
    reads = [
        m
        for m in publication.methods(adapter.pb2)
        if m.idempotent and samples.get(m.name.rsplit("/", 1)[1])
    ]
    if not reads:
        raise RuntimeError(f"{adapter.code}: no idempotent read with a sample request")
    method = min(reads, key=lambda m: m.server_streaming)  # unary first, in proto order
    requests = tuple(r.SerializeToString() for r in samples[method.name.rsplit("/", 1)[1]])
    return method.name, method.server_streaming, requests


# --- the bus ---------------------------------------------------------------------------


@dataclass
class _Adapter:
    code: str
    db: Path
    port: int = 0
    process: GovbusProcess | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> GovbusProcess:
        return GovbusProcess(
            "adapter",
            "serve",
            self.code,
            "--db",
            str(self.db),
            "--port",
            str(self.port),  # 0 the first time; a restart binds the same port again
            "--drill",
            "--log-level",
            "warning",  # no log line per call: the load would spend its CPU on logs
        )


class FaultBus:
    """Every implemented agency behind its own provider SS, and the ЦОН's two consumer SSs.

    ```python
    with FaultBus(tmp, persons=2000).start() as bus:
        run = asyncio.run(run_fault(bus, "freeze", "zags"))
    ```
    """

    def __init__(
        self,
        root: Path,
        *,
        persons: int = 2_000,
        seed: int = 1,
        codes: Sequence[str] | None = None,
        breaker: globalconf_pb2.BreakerSettings | None = None,
    ) -> None:
        self.root = root
        self.persons = persons
        self.seed = seed
        self.adapters = [a for a in discover() if codes is None or a.code in codes]
        if not self.adapters:
            raise RuntimeError("no agency adapters are implemented")
        self.breaker = breaker or globalconf_pb2.BreakerSettings()
        self.bus = Bus(root / "bus", poll_s=0.5)
        self.reads: dict[str, AgencyRead] = {}
        self._running: dict[str, _Adapter] = {}
        self._retired: list[GovbusProcess] = []
        self.start_seconds: dict[str, float] = {}

    @property
    def codes(self) -> list[str]:
        return [a.code for a in self.adapters]

    # --- start and stop --------------------------------------------------------------

    def start(self) -> FaultBus:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        began = time.perf_counter()
        world = World(self.seed, self.persons)
        stores = self.root / "stores"
        stores.mkdir(parents=True, exist_ok=True)
        for adapter in self.adapters:
            adapter.populate(stores / f"{adapter.code}.db", world)
        self.start_seconds["populate"] = time.perf_counter() - began

        bus = self.bus
        bus.member(CONSUMER, "ЦОН")
        bus.subsystem(TSON)
        for server_id in (RESILIENT_SS, UNGUARDED_SS):
            bus.server(server_id)
        for adapter in self.adapters:
            publication = adapter.publication
            service_id = str(publication.service_id)
            member = publication.member
            server_id = f"{member}/ss1"
            if member not in {m.id for m in bus.conf.members}:
                bus.member(member, publication.title)
                bus.server(server_id)
            bus.subsystem(f"{member}/{publication.subsystem}")
            methods = publication.methods(adapter.pb2)
            service = bus.publish(
                service_id,
                publication.grpc_service,
                {m.name: m.server_streaming for m in methods},
                [server_id],
                personal_data=False,
                deadline_ms=publication.default_deadline_ms,
                idempotent=tuple(m.name for m in methods if m.idempotent),
            )
            service.resilience.CopyFrom(self.breaker)
            bus.grant(TSON, service_id)
            method, streaming, requests = _reads_of(adapter, world)
            self.reads[adapter.code] = AgencyRead(
                adapter.code, service_id, server_id, method, streaming, requests
            )
            self._running[adapter.code] = _Adapter(adapter.code, stores / f"{adapter.code}.db")

        began = time.perf_counter()
        running = list(self._running.values())
        for entry, process in zip(running, start_all([a.command() for a in running]), strict=True):
            entry.process, entry.port = process, int(process.info["port"])
            bus.servers[self.reads[entry.code].server_id].adapters[
                self.reads[entry.code].service_id
            ] = entry.target
        self.start_seconds["adapters"] = time.perf_counter() - began

        began = time.perf_counter()
        bus.write_conf()
        providers = sorted({r.server_id for r in self.reads.values()})
        bus.start_servers(
            [RESILIENT_SS, UNGUARDED_SS, *providers],
            extra={UNGUARDED_SS: "[resilience]\nenabled = false\n"},
            metrics=True,
        )
        bus.wait_for_conf(bus.write_conf(), timeout=60)
        self.start_seconds["security servers"] = time.perf_counter() - began

    def stop(self) -> None:
        for entry in self._running.values():
            if entry.process is not None:
                entry.process.close()
                entry.process = None
        for process in self._retired:
            process.close()
        self._retired.clear()
        self.bus.stop()

    def __enter__(self) -> FaultBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- where to call ---------------------------------------------------------------

    def consumer_address(self, resilient: bool = True) -> str:
        return self.bus.servers[RESILIENT_SS if resilient else UNGUARDED_SS].consumer_address

    def metrics_url(self, resilient: bool = True) -> str:
        server = self.bus.servers[RESILIENT_SS if resilient else UNGUARDED_SS]
        assert server.process is not None
        return f"http://127.0.0.1:{server.process.info['metrics']}/metrics"

    def adapter_pid(self, code: str) -> int:
        process = self._running[code].process
        assert process is not None, f"{code} is not running"
        return process.pid

    # --- faults ----------------------------------------------------------------------

    def kill(self, code: str) -> None:
        """SIGKILL the adapter (by its own pid): no chance to finish anything."""
        entry = self._running[code]
        assert entry.process is not None and entry.process.proc is not None
        entry.process.signal(signal.SIGKILL)
        entry.process.proc.wait(10)
        self._retired.append(entry.process)
        entry.process = None

    def restart(self, code: str) -> None:
        """Start a killed adapter again on the same port, on the same store; returns
        once it is ready."""
        entry = self._running[code]
        if entry.process is not None:
            raise RuntimeError(f"{code} is running")
        entry.process = entry.command().start()

    def freeze(self, code: str) -> None:
        """SIGSTOP: the process holds its port and connections but answers nothing."""
        os.kill(self.adapter_pid(code), signal.SIGSTOP)

    def thaw(self, code: str) -> None:
        os.kill(self.adapter_pid(code), signal.SIGCONT)

    def slow(self, code: str, delay_ms: int) -> None:
        """The adapter's drill control: every answer `delay_ms` late."""
        set_drill_delay(self._running[code].target, delay_ms)

    def clear(self, code: str) -> None:
        set_drill_delay(self._running[code].target, 0)

    # --- what the consumer security server says ----------------------------------------

    async def breakers(self, resilient: bool = True) -> dict[str, str]:
        """Breaker state per service id, from the consumer SS's Status RPC."""
        async with grpc.aio.insecure_channel(self.consumer_address(resilient)) as channel:
            stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
            reply = await stub.Status(security_server_pb2.StatusRequest(), timeout=5)
        return {row.service: row.breaker for row in reply.services}

    def transitions(self, resilient: bool = True) -> dict[tuple[str, str], int]:
        """Times each breaker entered each state, from the consumer SS's /metrics."""
        with urllib.request.urlopen(self.metrics_url(resilient), timeout=5) as answer:  # noqa: S310 - our own loopback server
            text = answer.read().decode()
        counts: dict[tuple[str, str], int] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "govbus_breaker_transitions":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = (sample.labels["service"], sample.labels["state"])
                        counts[key] = int(sample.value)
        return counts


# --- the load --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecord:
    agency: str
    arrived: float  # perf_counter: when the call was wanted (= started in a closed loop)
    started: float
    ended: float
    code: str  # "OK" or the govbus error code
    origin: str = ""
    guard: str = ""  # "circuit_breaker" / "bulkhead" when a consumer SS guard refused

    @property
    def latency(self) -> float:
        return self.ended - self.arrived

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def breaker_refusal(self) -> bool:
        return self.code == "SERVICE_UNAVAILABLE" and self.guard == BREAKER


class OperatorPool:
    """ЦОН operators: `workers` of them, each call to a random agency's read.

    `rate=None`: closed loop, each operator calls back to back. `rate=R`: citizens
    arrive at R per second and wait for a free operator; a call's deadline and
    latency count from arrival, and one still waiting when its deadline passes ends
    as `DEADLINE_EXCEEDED` (origin `CLIENT`) without being sent.
    """

    def __init__(
        self,
        address: str,
        reads: Iterable[AgencyRead],
        *,
        workers: int = 8,
        deadline: float = 1.5,
        rate: float | None = None,
        seed: int = 7,
        purpose: str = "fault-drill",
    ) -> None:
        self.address = address
        self.reads = list(reads)
        self.workers = workers
        self.deadline = deadline
        self.rate = rate
        self.records: list[CallRecord] = []
        self._rng = random.Random(seed)
        self._stubs: dict[str, Any] = {}
        self._metadata = {
            r.code: ((md.CLIENT, TSON), (md.SERVICE, r.service_id), (md.PURPOSE, purpose))
            for r in self.reads
        }

    def calls_to(self, code: str, since: float = 0.0) -> list[CallRecord]:
        return [r for r in self.records if r.agency == code and r.arrived >= since]

    async def run(self, stop: asyncio.Event, *, max_seconds: float = 120.0) -> None:
        """Load until `stop` is set (or `max_seconds` pass)."""
        end = time.perf_counter() + max_seconds

        def done() -> bool:
            return stop.is_set() or time.perf_counter() > end

        async with grpc.aio.insecure_channel(self.address) as channel:
            self._stubs = {
                r.code: channel.unary_stream(r.method)
                if r.streaming
                else channel.unary_unary(r.method)
                for r in self.reads
            }
            if self.rate is None:
                await asyncio.gather(*(self._operator(done) for _ in range(self.workers)))
            else:
                await self._counter(done, self.rate)

    async def _operator(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._one(self._rng.choice(self.reads), time.perf_counter())

    async def _counter(self, done: Callable[[], bool], rate: float) -> None:
        """Citizens arrive at `rate` per second and queue for the first free operator."""
        queue: collections.deque[tuple[AgencyRead, float]] = collections.deque()
        waiting = asyncio.Event()

        async def arrivals() -> None:
            began, n = time.perf_counter(), 0
            while not done():
                due = began + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                queue.append((self._rng.choice(self.reads), due))
                waiting.set()
                n += 1
            waiting.set()

        async def operator() -> None:
            while queue or not done():
                if not queue:
                    waiting.clear()
                    await waiting.wait()
                    continue
                read, arrived = queue.popleft()
                await self._one(read, arrived)

        await asyncio.gather(arrivals(), *(operator() for _ in range(self.workers)))

    async def _one(self, read: AgencyRead, arrived: float) -> None:
        started = time.perf_counter()
        left = arrived + self.deadline - started
        body = self._rng.choice(read.requests)
        metadata = self._metadata[read.code]
        code, origin, guard = "OK", "", ""
        try:
            if left <= 0:
                code, origin = "DEADLINE_EXCEEDED", "CLIENT"  # expired in the queue, never sent
            elif read.streaming:
                async for _ in self._stubs[read.code](body, metadata=metadata, timeout=left):
                    pass
            else:
                await self._stubs[read.code](body, metadata=metadata, timeout=left)
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            code, origin = error.code, error.origin.value
            guard = str(error.metadata.get("guard", ""))
        self.records.append(
            CallRecord(read.code, arrived, started, time.perf_counter(), code, origin, guard)
        )


# --- measurements ----------------------------------------------------------------------


@dataclass(frozen=True)
class WindowStats:
    calls: int
    ok: int
    seconds: float
    latencies: tuple[float, ...]  # of successful calls, sorted
    errors: Counter[str]

    @property
    def success_rate(self) -> float:
        return self.ok / self.calls if self.calls else float("nan")

    @property
    def throughput(self) -> float:
        """Successful calls per second."""
        return self.ok / self.seconds if self.seconds > 0 else float("nan")

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(p / 100 * len(self.latencies)))]

    def summary(self) -> str:
        return (
            f"{self.calls:6d} calls  ok {self.success_rate * 100:7.3f} %  "
            f"{self.throughput:6.0f}/s  p50 {self.percentile(50) * 1000:7.1f} ms  "
            f"p99 {self.percentile(99) * 1000:7.1f} ms"
        )


def window_stats(
    records: Iterable[CallRecord],
    start: float,
    end: float,
    keep: Callable[[CallRecord], bool] = lambda r: True,
) -> WindowStats:
    """Calls that arrived in [start, end) and pass `keep`."""
    chosen = [r for r in records if start <= r.arrived < end and keep(r)]
    errors = Counter(
        f"{r.code}/{r.origin}" + (f"/{r.guard}" if r.guard else "") for r in chosen if not r.ok
    )
    latencies = tuple(sorted(r.latency for r in chosen if r.ok))
    return WindowStats(len(chosen), len(latencies), end - start, latencies, errors)


@dataclass
class FaultRun:
    """What one fault did, as seen by the ЦОН's operators and its security server."""

    kind: FaultKind
    victim: str
    resilient: bool
    deadline: float
    workers: int
    began: float  # load started
    fault_at: float
    ended_at: float  # the fault was taken away (adapter back, thawed, delay cleared)
    recovered_at: float | None  # breaker closed again and the victim answered
    finished: float  # load stopped
    records: list[CallRecord]
    states: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    transitions_before: dict[tuple[str, str], int] = field(default_factory=dict)
    transitions_after: dict[tuple[str, str], int] = field(default_factory=dict)
    victim_service: str = ""

    def _end(self) -> float:
        return self.recovered_at if self.recovered_at is not None else self.ended_at

    def healthy(self, start: float | None = None, end: float | None = None) -> WindowStats:
        """Calls to the other services from the fault until recovery."""
        return window_stats(
            self.records,
            self.fault_at if start is None else start,
            self._end() if end is None else end,
            lambda r: r.agency != self.victim,
        )

    def baseline(self, settle: float = 0.5) -> WindowStats:
        """Calls to the other services before the fault (after the first `settle` seconds,
        which open the channels)."""
        return window_stats(
            self.records, self.began + settle, self.fault_at, lambda r: r.agency != self.victim
        )

    def pool_held(self, start: float, end: float) -> float:
        """Share of the operators' time in [start, end) spent waiting on the victim."""
        held = sum(
            max(0.0, min(r.ended, end) - max(r.started, start))
            for r in self.records
            if r.agency == self.victim
        )
        return held / (self.workers * (end - start))

    def after_recovery(self) -> WindowStats:
        """Calls to the victim once it had recovered."""
        start = self._end()
        return window_stats(self.records, start, self.finished, lambda r: r.agency == self.victim)

    def victim_calls(self) -> list[CallRecord]:
        return [r for r in self.records if r.agency == self.victim and r.arrived >= self.fault_at]

    def breaker_refusals(self) -> list[CallRecord]:
        return [r for r in self.victim_calls() if r.breaker_refusal and r.ended < self.ended_at]

    @property
    def first_breaker_refusal_s(self) -> float | None:
        """Seconds from the fault to the first call refused by the breaker."""
        refusals = self.breaker_refusals()
        return min(r.ended for r in refusals) - self.fault_at if refusals else None

    def state_changes(self, service: str | None = None) -> list[tuple[float, str]]:
        """(seconds after the fault, state) each time the polled breaker state changed."""
        service = service or self.victim_service
        changes: list[tuple[float, str]] = []
        for at, states in self.states:
            state = states.get(service, "")
            if not changes or changes[-1][1] != state:
                changes.append((at - self.fault_at, state))
        return changes

    def entered(self, state: str) -> int:
        """Times the victim's breaker entered `state` during the run."""
        key = (self.victim_service, state)
        return self.transitions_after.get(key, 0) - self.transitions_before.get(key, 0)

    def report(self) -> str:
        mode = "resilience on" if self.resilient else "resilience OFF"
        lines = [f"{self.kind} {self.victim} ({mode}, deadline {self.deadline:.1f} s)"]
        lines.append(f"  healthy before      {self.baseline().summary()}")
        lines.append(f"  healthy in fault    {self.healthy().summary()}")
        errors = self.healthy().errors
        if errors:
            lines.append(f"    healthy errors    {dict(errors)}")
        victim = window_stats(
            self.records, self.fault_at, self.ended_at, lambda r: r.agency == self.victim
        )
        lines.append(f"  victim in fault     {victim.calls:6d} calls  {dict(victim.errors)}")
        refusals = sorted(r.latency for r in self.breaker_refusals())
        if refusals:
            first = self.first_breaker_refusal_s or 0.0
            lines.append(
                f"  breaker refusals    {len(refusals)}, first {first:.2f} s after the fault; "
                f"answered in p50 {statistics.median(refusals) * 1000:.1f} ms, "
                f"max {refusals[-1] * 1000:.1f} ms"
            )
        if self.victim_service and self.states:
            changes = ", ".join(f"{s} at {t:+.2f} s" for t, s in self.state_changes())
            lines.append(f"  breaker (polled)    {changes}")
            lines.append(
                "  breaker entered     "
                + ", ".join(f"{s} x{self.entered(s)}" for s in ("open", "half_open", "closed"))
            )
        if self.recovered_at is not None:
            lines.append(
                f"  recovered           {self.recovered_at - self.ended_at:.2f} s after the "
                f"fault ended; then {self.after_recovery().summary()}"
            )
        return "\n".join(lines)


async def _until(condition: Callable[[], bool], limit: float, what: str) -> None:
    end = time.perf_counter() + limit
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_fault(
    bus: FaultBus,
    kind: FaultKind,
    victim: str,
    *,
    resilient: bool = True,
    workers: int = 8,
    deadline: float = 1.5,
    rate: float | None = None,
    warm_s: float = 1.0,
    hold_s: float = 1.0,
    fault_s: float | None = None,
    slow_ms: int | None = None,
    after_s: float = 0.5,
    limit_s: float = 30.0,
    poll_s: float = 0.1,
) -> FaultRun:
    """One fault under load; see the module docstring.

    The fault lasts `fault_s` seconds if given; otherwise (resilience on) until the
    breaker has refused the victim's calls for `hold_s` seconds. It then ends, and
    the run waits (up to `limit_s`) until the victim answers again and, with
    resilience on, its breaker reads CLOSED; the load goes on `after_s` more seconds.
    """
    read = bus.reads[victim]
    pool = OperatorPool(
        bus.consumer_address(resilient),
        bus.reads.values(),
        workers=workers,
        deadline=deadline,
        rate=rate,
    )
    states: list[tuple[float, dict[str, str]]] = []
    stop, stop_polling = asyncio.Event(), asyncio.Event()

    async def poll() -> None:
        while not stop_polling.is_set():
            states.append((time.perf_counter(), await bus.breakers(resilient)))
            await asyncio.sleep(poll_s)

    transitions_before = await asyncio.to_thread(bus.transitions, resilient)
    began = time.perf_counter()
    load = asyncio.create_task(pool.run(stop, max_seconds=limit_s * 4))
    poller = asyncio.create_task(poll())
    try:
        await asyncio.sleep(warm_s)
        fault_at = time.perf_counter()
        if kind == "kill":
            await asyncio.to_thread(bus.kill, victim)
        elif kind == "freeze":
            bus.freeze(victim)
        else:
            await asyncio.to_thread(bus.slow, victim, slow_ms or int(deadline * 2000))
        if fault_s is not None:
            await asyncio.sleep(fault_s)
        else:
            await _until(
                lambda: any(r.breaker_refusal for r in pool.calls_to(victim, fault_at)),
                limit_s,
                f"the breaker of {victim} to refuse a call",
            )
            await asyncio.sleep(hold_s)
        if kind == "kill":
            await asyncio.to_thread(bus.restart, victim)
        elif kind == "freeze":
            bus.thaw(victim)
        else:
            await asyncio.to_thread(bus.clear, victim)
        ended_at = time.perf_counter()

        def answered_again() -> bool:
            return any(r.ok for r in pool.calls_to(victim, ended_at))

        def closed_again() -> bool:
            return bool(
                states
                and states[-1][0] > ended_at
                and states[-1][1].get(read.service_id) == "closed"
            )

        await _until(
            lambda: answered_again() and (closed_again() or not resilient),
            limit_s,
            f"{victim} to answer again" + (" and its breaker to close" if resilient else ""),
        )
        recovered_at = time.perf_counter()
        await asyncio.sleep(after_s)
        finished = time.perf_counter()
    finally:
        stop.set()
        stop_polling.set()
        await asyncio.gather(load, poller, return_exceptions=True)
    transitions_after = await asyncio.to_thread(bus.transitions, resilient)
    return FaultRun(
        kind=kind,
        victim=victim,
        resilient=resilient,
        deadline=deadline,
        workers=workers,
        began=began,
        fault_at=fault_at,
        ended_at=ended_at,
        recovered_at=recovered_at,
        finished=finished,
        records=pool.records,
        states=states,
        transitions_before=transitions_before,
        transitions_after=transitions_after,
        victim_service=read.service_id,
    )


def main() -> None:
    """A quick look: `python -m loadtest.faults` runs the three faults once and prints."""
    with tempfile.TemporaryDirectory(prefix="govbus-faults-") as tmp:
        breaker = globalconf_pb2.BreakerSettings(open_ms=2000)
        with FaultBus(Path(tmp), breaker=breaker).start() as bus:
            print(f"{len(bus.codes)} agencies: {', '.join(bus.codes)}; start {bus.start_seconds}")
            for kind, victim in zip(("kill", "freeze", "slow"), bus.codes * 3, strict=False):
                run = asyncio.run(run_fault(bus, kind, victim))  # type: ignore[arg-type]
                print(run.report())


if __name__ == "__main__":
    main()
