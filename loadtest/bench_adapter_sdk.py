"""What the adapter SDK costs per call, against a bare grpc.aio servicer in the same run.

Two measurements:

1. In-process: the same servicer method called directly, and through the SDK's
   wrapper (request context, span, metrics, log check, error mapping) with a stand-in
   servicer context — the wrapper's own CPU cost per call, without the network.
2. Over loopback gRPC: a bare grpc.aio server and an SDK `AdapterServer` serving the
   same servicer, each in its own process, driven by one grpc.aio client,
   sequentially (latency) and with 16 calls in flight (throughput); runs alternate to
   share the machine's noise.

Per-call JSON logs are off (log level warning) as in production at high load; the
in-process part also reports the cost with one JSON line per call.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import statistics
import time
from typing import Any

import grpc

from adapters.sdk.instrument import collect_handlers, instrument
from adapters.sdk.server import AdapterServer
from adapters.sdk.telemetry import JsonFormatter, Telemetry
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2_grpc as pb_grpc
from govbus.serving import DEFAULT_OPTIONS

__all__ = ["main"]

IIN = "900101300017"
METADATA = (
    ("govbus-client", "KZ/GOV/010140100000/con"),
    ("govbus-subject", IIN),
    ("govbus-request-id", "bench-1"),
    ("govbus-purpose", "benchmark"),
)
_WARM_UP = 200
_ANSWER = pb.Person(iin=IIN, last_name="Ахметов", first_name="Нурлан", birth_date="1990-01-01")


class Echo(pb_grpc.PersonRegistryServicer):
    async def GetPerson(self, request: pb.GetPersonRequest, context: Any) -> pb.Person:
        return _ANSWER


class _Context:
    """Just enough of grpc.aio.ServicerContext for the wrapper."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return METADATA


def _in_process(calls: int) -> None:
    servicer = Echo()
    request = pb.GetPersonRequest(iin=IIN)
    context = _Context()
    quiet = Telemetry(name="bench", logger=logging.getLogger("bench.quiet"))
    quiet.logger.setLevel(logging.WARNING)
    loud_logger = logging.getLogger("bench.loud")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    loud_logger.addHandler(handler)
    loud_logger.setLevel(logging.INFO)
    loud_logger.propagate = False
    loud = Telemetry(name="bench", logger=loud_logger)

    def wrapped(telemetry: Telemetry) -> Any:
        service = collect_handlers(pb_grpc.add_PersonRegistryServicer_to_server, servicer)[0]
        return instrument(service, telemetry)["GetPerson"].unary_unary

    quiet_handler, loud_handler = wrapped(quiet), wrapped(loud)

    async def run(handler: Any) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await handler(request, context)
        return (time.perf_counter() - started) / calls * 1e6

    async def bare() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await servicer.GetPerson(request, context)
        return (time.perf_counter() - started) / calls * 1e6

    async def all_runs() -> tuple[float, float, float]:
        results: dict[str, list[float]] = {"bare": [], "sdk": [], "sdk+log": []}
        for _ in range(3):
            results["bare"].append(await bare())
            results["sdk"].append(await run(quiet_handler))
            results["sdk+log"].append(await run(loud_handler))
        return (
            min(results["bare"]),
            min(results["sdk"]),
            min(results["sdk+log"]),
        )

    bare_us, sdk_us, log_us = asyncio.run(all_runs())
    print(f"in-process, {calls:,} calls (best of 3):")
    print(f"  bare servicer method        {bare_us:7.2f} µs/call")
    print(f"  SDK wrapper, no call logs   {sdk_us:7.2f} µs/call  (+{sdk_us - bare_us:.1f} µs)")
    print(f"  SDK wrapper, JSON call log  {log_us:7.2f} µs/call  (+{log_us - bare_us:.1f} µs)")
    quiet.shutdown()
    loud.shutdown()


def _serve_in_child(sdk: bool, ports: Any, stop: Any) -> None:
    """Child process: serve until told to stop (separate GIL, as a real adapter)."""

    async def run() -> None:
        if sdk:
            telemetry = Telemetry(name="bench", logger=logging.getLogger("bench.served"))
            telemetry.logger.setLevel(logging.WARNING)
            adapter = AdapterServer(
                [(pb_grpc.add_PersonRegistryServicer_to_server, Echo())], telemetry=telemetry
            )
            ports.put(await adapter.start())
            started = time.process_time()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            ports.put(time.process_time() - started)
            await adapter.stop(0)
            return
        server = grpc.aio.server(options=DEFAULT_OPTIONS)
        pb_grpc.add_PersonRegistryServicer_to_server(Echo(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ports.put(port)
        started = time.process_time()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        ports.put(time.process_time() - started)
        await server.stop(0)

    asyncio.run(run())


class _Served:
    """A bare or SDK server in its own process."""

    def __init__(self, sdk: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._ports = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve_in_child, args=(sdk, self._ports, self._stop), daemon=True
        )
        self.port = 0
        self.cpu_seconds = 0.0  # the server process's CPU time while it served

    def __enter__(self) -> _Served:
        self._process.start()
        self.port = int(self._ports.get(timeout=60))
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self.cpu_seconds = float(self._ports.get(timeout=60))
        self._process.join(30)


async def _drive(port: int, calls: int, in_flight: int) -> tuple[float, float]:
    """(calls per second, median latency in ms)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.PersonRegistryStub(channel)
        request = pb.GetPersonRequest(iin=IIN)
        for _ in range(_WARM_UP):
            await stub.GetPerson(request, metadata=METADATA)
        latencies: list[float] = []

        async def worker(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                await stub.GetPerson(request, metadata=METADATA)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(calls // in_flight) for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def _over_grpc(calls: int) -> None:
    print(f"over loopback gRPC, {calls:,} calls per run, server in its own process:")
    for in_flight in (1, 16):
        runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for _ in range(2):
            for sdk in (False, True):
                with _Served(sdk) as served:
                    rate, p50 = asyncio.run(_drive(served.port, calls, in_flight))
                # Server CPU per call is robust to a busy machine; wall-clock figures are not.
                per_call = served.cpu_seconds / (calls + _WARM_UP) * 1e6
                runs[sdk].append((rate, p50, per_call))
        bare, sdk_ = (max(runs[k]) for k in (False, True))
        bare_cpu = min(r[2] for r in runs[False])
        sdk_cpu = min(r[2] for r in runs[True])
        print(
            f"  {in_flight:2d} in flight: bare {bare[0]:7,.0f} calls/s p50 {bare[1]:.3f} ms "
            f"server CPU {bare_cpu:5.0f} µs/call | SDK {sdk_[0]:7,.0f} calls/s "
            f"p50 {sdk_[1]:.3f} ms server CPU {sdk_cpu:5.0f} µs/call | "
            f"SDK/bare: throughput {sdk_[0] / bare[0]:.2f}, server CPU {sdk_cpu / bare_cpu:.2f}"
        )


def main() -> None:
    _in_process(20_000)
    _over_grpc(3_000)


if __name__ == "__main__":
    main()
