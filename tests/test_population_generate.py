"""Filling every agency store from one world: parallel workers give the same stores."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from adapters.population.generate import populate_agencies
from adapters.sdk import adapter_codes
from govbus.errors import InvalidRequest, UnknownService


def _content(path: Path) -> str:
    """A digest of every row of every table, in a fixed order."""
    digest = hashlib.sha256()
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def test_parallel_and_serial_fills_are_identical(tmp_path: Path) -> None:
    serial = populate_agencies(tmp_path / "serial", seed=2, persons=1200, jobs=1)
    parallel = populate_agencies(tmp_path / "parallel", seed=2, persons=1200, jobs=2)
    assert set(serial) == set(parallel) == set(adapter_codes())
    for code in serial:
        a, b = tmp_path / "serial" / f"{code}.db", tmp_path / "parallel" / f"{code}.db"
        assert _content(a) == _content(b), code
        with closing(sqlite3.connect(a)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    # Nothing but the stores is left behind.
    assert sorted(p.name for p in (tmp_path / "parallel").iterdir()) == sorted(
        f"{code}.db" for code in serial
    )


def test_a_different_seed_gives_different_stores(tmp_path: Path) -> None:
    populate_agencies(tmp_path / "a", seed=2, persons=200, codes=["gbdfl"], jobs=1)
    populate_agencies(tmp_path / "b", seed=3, persons=200, codes=["gbdfl"], jobs=1)
    assert _content(tmp_path / "a" / "gbdfl.db") != _content(tmp_path / "b" / "gbdfl.db")


def test_bad_requests_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UnknownService):
        populate_agencies(tmp_path / "x", codes=["nosuch"])
    with pytest.raises(InvalidRequest):
        populate_agencies(tmp_path / "x", persons=0, codes=["gbdfl"])
    assert not (tmp_path / "x").exists()
