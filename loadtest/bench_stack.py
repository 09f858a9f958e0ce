"""How long the whole bus takes to start, and what a composite visit costs, against
baselines measured in the same run.

- Start-up. Baseline: one `govbus ss diagnostics` process started and ready (the
  cost of one Python gRPC server process here). Then the stack (every implemented
  adapter, stores cached, `GOVBUS_BENCH_PERSONS` persons, default 2,000), three
  times: seconds, the number of processes, and the ratio to the baseline — how many
  single-process start-ups the whole bus costs, with its phases.
- A visit. Baseline: one `GetPerson` straight to the ГБД ФЛ adapter (no bus). Then,
  from the SMS code typed to the certificate shown: the consent confirmed by the
  consent service, and a personal-data certificate (three registries in two rounds,
  each exchange signed, logged and consent-checked by two security servers) or a
  marital-status certificate (two registries in one round); median of 20 each.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from adapters.population import World
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.process import GovbusProcess
from service_centre.api import CentreApi
from service_centre.stack import Stack, StackOptions

__all__ = ["main"]


def _one_process() -> float:
    started = time.perf_counter()
    process = GovbusProcess("ss", "diagnostics", "--port", "0").start()
    seconds = time.perf_counter() - started
    process.close()
    return seconds


def _visit_cost(stack: Stack, persons: int, rounds: int = 20) -> tuple[float, float, float]:
    info = stack.info
    world = World(1, persons)
    people = [p for p in world.persons(0, 4) if p.alive and p.age() >= 18][: rounds + 1]
    with grpc.insecure_channel(info.adapters["gbdfl"].address) as channel:
        stub = gbdfl_pb2_grpc.PersonRegistryStub(channel)
        direct = []
        for person in people:
            started = time.perf_counter()
            stub.GetPerson(gbdfl_pb2.GetPersonRequest(iin=person.iin), timeout=5)
            direct.append(time.perf_counter() - started)
    api = CentreApi(info.centre_url)
    from consent.sms import read_outbox

    timings: dict[str, list[float]] = {"personal-data": [], "marital-status": []}
    for person in people[:rounds]:
        for service, spent in timings.items():
            opened = api.open_visit(
                service, person.iin, consent={"method": "otp", "phone": person.phone}
            )
            code = next(
                m.code
                for m in reversed(read_outbox(Path(info.consent_outbox)))
                if m.to == person.phone and m.code
            )
            started = time.perf_counter()
            done = api.confirm(opened["id"], code)
            spent.append(time.perf_counter() - started)
            assert done["status"] == "complete", done
    return (
        statistics.median(direct),
        statistics.median(timings["personal-data"]),
        statistics.median(timings["marital-status"]),
    )


def main() -> None:
    persons = int(os.environ.get("GOVBUS_BENCH_PERSONS", "2000"))
    baseline = min(_one_process() for _ in range(3))
    print(f"baseline: one govbus server process started and ready in {baseline:.2f} s")
    with tempfile.TemporaryDirectory(prefix="govbus-bench-stack-") as scratch:
        cache = Path(scratch) / "cache"
        for run in range(3):
            stack = Stack(
                StackOptions(state_dir=Path(scratch) / "stack", cache_dir=cache, persons=persons)
            )
            try:
                info = stack.start()
                processes = len(stack.pids())
                phases = ", ".join(f"{k} {v:.1f}" for k, v in info.timings.items())
                print(
                    f"stack start {run + 1}: {info.startup_s:.1f} s for {processes} processes "
                    f"= {info.startup_s / baseline:.1f} × baseline "
                    f"({'stores generated' if run == 0 else 'stores cached'}; {phases})"
                )
                if run == 2:
                    direct, personal, marital = _visit_cost(stack, persons)
                    print(f"baseline: GetPerson straight to the adapter {direct * 1000:.1f} ms")
                    print(
                        f"personal-data visit (3 registries): {personal * 1000:.0f} ms = "
                        f"{personal / direct:.0f} × baseline"
                    )
                    print(
                        f"marital-status visit (2 registries): {marital * 1000:.0f} ms = "
                        f"{marital / direct:.0f} × baseline"
                    )
            finally:
                stopping = time.perf_counter()
                stack.stop()
                print(f"  stopped in {time.perf_counter() - stopping:.1f} s")


if __name__ == "__main__":
    main()
