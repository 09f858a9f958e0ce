"""Synthetic agency stores for a stack: generated once, cached, copied per run.

Generating 100,000 persons into every agency store takes tens of seconds; the
result is a pure function of (seed, persons, the adapter's code and the
population code). So the pristine stores are kept in a cache folder keyed by
all of that — `<cache>/seed<S>-persons<N>/<code>-<hash>.db`, where the hash
covers the adapter's and the population's Python sources — and every stack start
copies them to its own run folder, because adapters write to their stores (a
registered birth) and the next run must start from the same world.

This module must never touch a store outside the cache and the run folder it is given.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from govbus.errors import ConfigInvalid

__all__ = ["PreparedStores", "cache_key", "prepare_stores"]


@dataclass(frozen=True)
class PreparedStores:
    paths: dict[str, Path]  # agency code -> the run's own copy of its store
    generated: tuple[str, ...]  # codes generated now (the rest came from the cache)
    seconds: float


def _sources_digest(code: str) -> str:
    """A short hash of what decides a store's content: the adapter's and the world's code."""
    import adapters
    import adapters.population

    digest = hashlib.sha256()
    roots = [Path(adapters.__path__[0]) / code, Path(adapters.population.__path__[0])]
    for root in roots:
        for path in sorted(root.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _populate(out: Path, seed: int, persons: int, codes: Sequence[str], log: Path | None) -> None:
    """`govbus adapter populate` in its own process: its worker pool spawns fresh
    interpreters, which must not re-import whatever script started the stack."""
    argv = [sys.executable, "-m", "govbus.cli", "adapter", "populate", *codes]
    argv += ["--out", str(out), "--persons", str(persons), "--seed", str(seed)]
    with log.open("ab") if log is not None else open(os.devnull, "wb") as sink:
        done = subprocess.run(argv, stdout=sink, stderr=sink, check=False)
    if done.returncode != 0:
        where = f"; see {log}" if log is not None else ""
        raise ConfigInvalid(f"generating the agency stores failed{where}")


def cache_key(code: str, seed: int, persons: int) -> str:
    """`seed<S>-persons<N>/<code>-<hash>.db`: the cache entry of one agency store."""
    return f"seed{seed}-persons{persons}/{code}-{_sources_digest(code)}.db"


def prepare_stores(
    codes: Sequence[str],
    *,
    seed: int,
    persons: int,
    cache_dir: Path,
    run_dir: Path,
    progress: Callable[[str], None] | None = None,
    log: Path | None = None,
) -> PreparedStores:
    """Make sure every store is in the cache (generating the missing ones in one pass),
    then copy each to `run_dir/<code>.db`."""
    started = time.perf_counter()
    cached = {code: cache_dir / cache_key(code, seed, persons) for code in codes}
    missing = [code for code, path in cached.items() if not path.exists()]
    if missing:
        if progress is not None:
            progress(
                f"generating {persons:,} persons into {', '.join(missing)} "
                f"(cached for the next start in {cache_dir})"
            )
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Generate beside the cache and rename into place: a half-written store is never
        # taken for a cached one, also after a crash.
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix="generating-") as tmp:
            _populate(Path(tmp), seed, persons, missing, log)
            for code in missing:
                target = cached[code]
                target.parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / f"{code}.db").replace(target)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for code, source in cached.items():
        target = run_dir / f"{code}.db"
        for suffix in ("-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        shutil.copyfile(source, target)
        paths[code] = target
    return PreparedStores(paths, tuple(missing), time.perf_counter() - started)
