"""How fast the synthetic world fills every agency store, against generating it once.

Baseline: computing the 100,000 persons of the world once, in this process. Then:
each implemented agency's `populate` alone (on a world kept in memory), and the full
`populate_agencies` run the demo does (worker processes, each computing the world
once). `GOVBUS_BENCH_PERSONS` changes the size.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from adapters.population import World
from adapters.population.generate import populate_agencies
from adapters.sdk.agency import adapter_codes, load

__all__ = ["main"]


def main() -> None:
    persons = int(os.environ.get("GOVBUS_BENCH_PERSONS", "100000"))
    started = time.perf_counter()
    world = World(seed=1, persons=persons)
    world.materialise()
    baseline = time.perf_counter() - started
    print(
        f"baseline: world of {persons:,} persons computed once in {baseline:.2f} s "
        f"({persons / baseline:,.0f} persons/s)"
    )
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as scratch:
        out = Path(scratch)
        for code in adapter_codes():
            started = time.perf_counter()
            load(code).populate(out / f"{code}.db", world)
            seconds = time.perf_counter() - started
            size = (out / f"{code}.db").stat().st_size / 1e6
            print(
                f"  {code:<10} populate {seconds:5.2f} s = {seconds / baseline:4.2f} × baseline "
                f"({size:5.1f} MB)"
            )
        started = time.perf_counter()
        timings = populate_agencies(out / "all", seed=1, persons=persons)
        total = time.perf_counter() - started
    print(
        f"all {len(timings)} stores in parallel workers: {total:.1f} s = "
        f"{total / baseline:.1f} × baseline ({persons / total:,.0f} persons/s end to end)"
    )


if __name__ == "__main__":
    main()
