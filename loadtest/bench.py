"""`make bench`: run every benchmark module `loadtest/bench_*.py` in turn.

Each module has `main() -> None` and prints its own report; every figure is a
ratio against a baseline measured in the same run, because the machines are
shared and noisy. `python -m loadtest.bench audit` runs only the modules whose
name contains "audit".
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import loadtest

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    wanted = (argv if argv is not None else sys.argv[1:]) or [""]
    names = sorted(
        m.name for m in pkgutil.iter_modules(loadtest.__path__) if m.name.startswith("bench_")
    )
    failed = 0
    for name in names:
        if not any(w in name for w in wanted):
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"loadtest.{name}")
        try:
            module.main()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other benchmarks
            failed += 1
            print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
