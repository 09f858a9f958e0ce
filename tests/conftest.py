"""Shared fixtures: a test PKI and helpers for running the `govbus` command."""

from __future__ import annotations

import os
import subprocess
import sys
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
