"""`make demo` as a user runs it: the demo module in its own process, to the end.

Slow (they start whole stacks): run by `make bench`, not `make test`. The quick
check that the demo's visits work on a stack is in test_stack_bus.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.centre_bus import PERSONS, live_children, store_cache

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _demo(tmp_path: Path, cache: Path, *extra: str) -> str:
    before = set(live_children())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service_centre.demo",
            "--state",
            str(tmp_path / "demo"),
            "--cache",
            str(cache),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert set(live_children()) <= before
    return done.stdout


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_the_demo_runs_to_the_end(
    fault: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = _demo(
        tmp_path, store_cache(tmp_path_factory), "--persons", str(PERSONS), "--fault", fault
    )
    assert "with migration down: complete / partial, partial" in out
    assert "after it came back: complete, complete" in out
    assert "logs verified" in out and "everything stopped" in out


def test_the_demo_with_its_defaults(tmp_path: Path) -> None:
    """100,000 persons and every implemented adapter, as `make demo` (the cache is cold)."""
    out = _demo(tmp_path, tmp_path / "cache")
    assert "logs verified" in out
