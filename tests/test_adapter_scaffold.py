"""docs/agency-developer.md, followed in a fresh copy of the repository.

Every ```sh block of the guide runs, in order, in one bash session inside a copy of
this checkout (```shell blocks need the registry and security servers and are
skipped). The copy shares this checkout's .venv: PYTHONPATH points Python at the
copy's sources, and make is told never to rebuild the venv, so nothing here can
change the shared environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "agency-developer.md"
_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "var",
    "*.db",
    "*.db-*",
    "build",
    "*.egg-info",
)


def _steps() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", GUIDE.read_text(), re.MULTILINE | re.DOTALL)


def _copy(tmp: Path) -> Path:
    copy = tmp / "checkout"
    shutil.copytree(ROOT, copy, ignore=_IGNORE)  # copy2 keeps mtimes: make sees no change
    (copy / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    return copy


def _environment(copy: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(copy),
        # Never let `make` reinstall the shared venv from the copy.
        "NO_INSTALL": "1",
        "GOVBUS_KEY_PASSPHRASE": "unused",
    }


def _run(script: str, copy: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=copy,
        env=_environment(copy),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        # The guide starts a server in the background; end whatever is left of our session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


@pytest.mark.e2e
def test_following_the_guide_gives_a_working_adapter(tmp_path: Path) -> None:
    steps = _steps()
    assert len(steps) >= 3, "the guide's runnable steps are ```sh blocks"
    copy = _copy(tmp_path)
    result = _run("\n".join(steps), copy)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout and "0 failed" in result.stdout
    assert (copy / "govbus" / "pb" / "agencies" / "dogs" / "v1" / "dogs_pb2.py").exists()
    assert (copy / "var" / "stores" / "dogs.db").exists()
    log = (copy / "var" / "dogs.log").read_text()
    assert '"event": "call"' in log  # the adapter logged the kit's calls
    # The member id the guide prints is the one `new` gives dogs.
    assert "govbus service publish KZ/GOV/151240346086/dogs/dogs/v1" in result.stdout
    # Through the bus: the consented call answered with the person's records, the call
    # without consent was refused by the provider's security server …
    records = [json.loads(line) for line in result.stdout.splitlines() if '"record_id"' in line]
    assert records and {r["iin"] for r in records} == {records[0]["iin"]}
    assert "CONSENT_REQUIRED (PROVIDER_SS)" in result.stdout
    # … and both security servers logged both exchanges in logs that verify.
    info = json.loads((copy / "var" / "bus" / "run" / "stack.json").read_text())
    for server in info["servers"].values():
        audit = _run(
            f".venv/bin/govbus audit verify --store {server['audit_store']} "
            f"--cert {server['signing_cert']} --ca {info['ca_cert']}",
            copy,
        )
        assert audit.returncode == 0, audit.stdout[-4000:]
        verified = re.search(r"verified: (\d+) records", audit.stdout)
        assert verified and int(verified.group(1)) >= 3, audit.stdout  # call, answer, refusal

    # What `new` wrote is clean code by the repository's own checks.
    generated = ["adapters/dogs", "tests/test_adapter_dogs.py"]
    lint = _run(
        f".venv/bin/ruff check {' '.join(generated)} && "
        f".venv/bin/ruff format --check {' '.join(generated)} && "
        ".venv/bin/mypy adapters/dogs",
        copy,
    )
    assert lint.returncode == 0, lint.stdout[-4000:]

    # Around an existing contract, `new` writes an importable skeleton (the fines
    # adapter is implemented: the copy drops it first, as before it was written).
    skeleton = _run(
        "rm -r adapters/fines tests/test_adapter_fines.py && "
        ".venv/bin/govbus adapter new fines && "
        ".venv/bin/python -c 'import adapters.fines as f; print(f.ADAPTER.publication.member)' && "
        ".venv/bin/ruff check adapters/fines && .venv/bin/ruff format --check adapters/fines",
        copy,
    )
    assert skeleton.returncode == 0, skeleton.stdout[-4000:]
    assert "KZ/GOV/010640100108" in skeleton.stdout
