"""Fill every agency store from one world, in parallel processes.

`populate_agencies(out_dir, seed=…, persons=…)` writes `<out_dir>/<code>.db` for each
adapter found under `adapters/` (or the codes given). Each agency's `populate`
function owns its tables; this module only schedules them: a pool of worker
processes, each computing the world once (kept in memory up to `MATERIALISE_LIMIT`
persons) and filling the stores given to it.

This module must never write outside `out_dir`.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from adapters.population.world import World
from govbus.errors import InvalidRequest

__all__ = ["MATERIALISE_LIMIT", "populate_agencies", "populate_one"]

#: Worlds up to this size are computed once per worker and kept in memory (~1 KB/person).
MATERIALISE_LIMIT = 400_000

_world: World | None = None


def _init_worker(seed: int, persons: int, materialise: bool) -> None:
    global _world  # noqa: PLW0603 - one world per worker process, built once
    _world = World(seed, persons)
    if materialise:
        _world.materialise()


def _run(code: str, db_path: str) -> tuple[str, float]:
    assert _world is not None
    return code, populate_one(code, Path(db_path), _world)


def populate_one(code: str, db_path: Path, world: World) -> float:
    """Fill one agency's store; returns the seconds it took."""
    from adapters.sdk.agency import load

    started = time.perf_counter()
    load(code).populate(db_path, world)
    return time.perf_counter() - started


def populate_agencies(
    out_dir: Path,
    *,
    seed: int = 1,
    persons: int = 100_000,
    codes: Sequence[str] | None = None,
    jobs: int = 0,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """Write `<out_dir>/<code>.db` for each agency; returns seconds per agency."""
    from adapters.sdk.agency import adapter_codes, load

    wanted = list(codes) if codes else adapter_codes()
    for code in wanted:
        load(code)  # fail fast on an unknown code, before any worker starts
    if not wanted:
        raise InvalidRequest("no agency adapters to populate")
    World(seed, persons)  # validates seed and size here, not in a worker
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = jobs or min(len(wanted), os.cpu_count() or 1)
    materialise = persons <= MATERIALISE_LIMIT and len(wanted) > workers
    timings: dict[str, float] = {}
    if workers == 1:
        world = World(seed, persons)
        if materialise:
            world.materialise()
        for code in wanted:
            seconds = populate_one(code, out_dir / f"{code}.db", world)
            timings[code] = seconds
            if progress is not None:
                progress(code, seconds)
        return timings
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(seed, persons, materialise),
    ) as pool:
        futures = [pool.submit(_run, code, str(out_dir / f"{code}.db")) for code in wanted]
        for future in as_completed(futures):
            code, seconds = future.result()
            timings[code] = seconds
            if progress is not None:
                progress(code, seconds)
    return timings
