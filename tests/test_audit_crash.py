"""A process appending at full speed is killed with SIGKILL: every acknowledged record is
in the store after it reopens, and the log is consistent with its last checkpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from audit_log.auditor import verify_store
from audit_log.log import open_log
from audit_log.store import open_store
from govbus.crypto.keys import save_private_key
from govbus.crypto.pki import CertificateAuthority, Role
from tests.conftest import PASSPHRASE

ORIGIN = "ss1.test.govbus.kz/audit"

# The child appends from 64 coroutines without pause, signs a checkpoint every 500
# acknowledgements, and prints each acknowledged index (flushed) before going on.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from audit_log.log import open_log
    from audit_log.testing import sample_record
    from govbus.crypto.keys import KeySigner, load_private_key

    url, key_path, passphrase, origin = sys.argv[1:5]
    key_path, passphrase = Path(key_path), passphrase.encode()
    signer = KeySigner(load_private_key(key_path, passphrase), b"")

    async def main():
        log = await open_log(url, signer=signer, origin=origin)
        out = sys.stdout
        counter = iter(range(10**9))
        acked = 0

        async def worker():
            nonlocal acked
            while True:
                n = next(counter)
                index = await log.append(sample_record(n, request_id=f"crash-{n}"))
                out.write(f"{index} {n}\\n")
                out.flush()
                acked += 1
                if acked % 500 == 0:
                    cp = await log.checkpoint()
                    out.write(f"checkpoint {cp.size}\\n")
                    out.flush()

        await asyncio.gather(*(worker() for _ in range(64)))

    asyncio.run(main())
    """
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/audit.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    return f"{dsn}?schema=crash_{uuid.uuid4().hex[:10]}"


def test_sigkill_loses_no_acknowledged_record(
    store_url: str, ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    key_path = tmp_path / "signer.key.pem"
    save_private_key(key_path, issued.key, PASSPHRASE)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, store_url, str(key_path), PASSPHRASE.decode(), ORIGIN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acked: dict[int, int] = {}
    checkpoints: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            first, second = line.split()
            if first == "checkpoint":
                checkpoints.append(int(second))
            else:
                acked[int(first)] = int(second)
            if len(acked) >= 3000 and checkpoints:
                break
        else:
            raise AssertionError(
                f"child stopped early: {child.stderr.read() if child.stderr else ''}"
            )
        child.send_signal(signal.SIGKILL)
        # Everything printed before the kill counts as acknowledged.
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] != "checkpoint":
            acked[int(parts[0])] = int(parts[1])
        elif len(parts) == 2:
            checkpoints.append(int(parts[1]))

    async def reopen() -> tuple[int, int]:
        # Opening checks the tree and its consistency with the last signed checkpoint.
        log = await open_log(store_url, signer=issued.signer(), origin=ORIGIN)
        size = log.size
        found = await log.get(sorted(acked))
        assert len(found) == len(acked)
        for logged in found:
            assert logged.record.request_id == f"crash-{acked[logged.index]}"
        latest = await log.latest_checkpoint()
        assert latest is not None and latest.size >= max(checkpoints)
        await log.close()
        return size, latest.size

    size, last_checkpoint = asyncio.run(reopen())
    assert size >= len(acked) and max(acked) < size
    store = open_store(store_url, create=False)
    try:
        from audit_log.note import NoteKey

        report = verify_store(store, NoteKey(ORIGIN, issued.key.public_key()))
    finally:
        store.close()
    assert report.records == size and report.checkpoint is not None
    assert report.checkpoint.size == last_checkpoint
