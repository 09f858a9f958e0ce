"""Shared fixtures: a test PKI and helpers for running the `govbus` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from govbus.crypto.pki import CertificateAuthority

PASSPHRASE = b"test-passphrase-123"


@pytest.fixture(scope="session")
def passphrase() -> bytes:
    return PASSPHRASE


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "pki", PASSPHRASE)


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `govbus …` in a subprocess, as a user would."""
    full_env = {**os.environ, "GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode(), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "govbus.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"govbus {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


PG_ADMIN_DSN = os.environ.get("GOVBUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards.

    Skips when the server is unreachable — except with CI=true, where the
    PostgreSQL tests must run.
    """
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    name = f"govbus_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
