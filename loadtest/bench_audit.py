"""Audit log benchmark: durable appends per second with group commit against one commit per
record (same run, same machine), for SQLite and PostgreSQL; the event-loop cost of one
append; and the time to verify a 1,000,000-record log against its streaming baseline.

Targets: >= 20,000 durable appends/s with SQLite; a million records verified in < 10 s.
`python -m loadtest.bench audit` runs only this. `GOVBUS_BENCH_AUDIT_VERIFY=N` changes
the size of the verified log (default 1,000,000).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from audit_log.auditor import verify_store
from audit_log.log import open_log
from audit_log.note import Checkpoint, NoteSigner, SignedNote
from audit_log.records import index_suffix
from audit_log.store import LeafRow, StoredCheckpoint, TreeHead, open_store
from audit_log.testing import sample_record
from audit_log.tree import Frontier
from govbus.crypto.keys import KeySigner, generate_key

__all__ = ["main"]

ORIGIN = "bench.govbus.kz/audit"
PG = os.environ.get("GOVBUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _signer() -> KeySigner:
    return KeySigner(generate_key(), b"bench")


async def _append_run(url: str, count: int, concurrency: int, max_batch: int) -> tuple[float, int]:
    log = await open_log(url, signer=_signer(), origin=ORIGIN, max_batch=max_batch)
    records = [sample_record(i) for i in range(count)]
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            await log.append(records[i])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - started
    commits = log.commits
    await log.close()
    return count / took, commits


async def _loop_cost(url: str, count: int) -> tuple[float, float]:
    """Microseconds the caller's event loop spends per append: (enqueue only, all of it)."""
    log = await open_log(url, signer=_signer(), origin=ORIGIN)
    records = [sample_record(i) for i in range(count)]
    pending = []
    started = time.perf_counter()
    for record in records:
        coro = log.append(record)
        coro.send(None)  # runs append() up to the point where it waits for durability
        pending.append(coro)
    enqueue = (time.perf_counter() - started) / count * 1e6
    for coro in pending:
        coro.close()
    await log.close()
    # Whole cost on the loop thread (append, waking, resolving) over a concurrent run.
    log = await open_log(url, signer=_signer(), origin=ORIGIN)
    records = [sample_record(i) for i in range(count)]
    cpu = time.thread_time()
    await asyncio.gather(*(log.append(r) for r in records))
    loop_cpu = (time.thread_time() - cpu) / count * 1e6
    await log.close()
    return enqueue, loop_cpu


def _append_report(name: str, make_url: Callable[[], str]) -> None:
    group, commits = asyncio.run(_append_run(make_url(), 60_000, 512, 4096))
    single, _ = asyncio.run(_append_run(make_url(), 3_000, 64, 1))
    print(
        f"{name:10s} group commit {group:9,.0f} appends/s ({60_000 / commits:,.0f} per commit)  "
        f"one commit per record {single:7,.0f} appends/s  ratio x{group / single:.1f}",
        flush=True,
    )
    if name == "sqlite":
        verdict = "meets" if group >= 20_000 else "MISSES"
        print(f"{'':10s} target >= 20,000 durable appends/s with SQLite: {verdict}", flush=True)


def _generate(url: str, size: int) -> tuple[float, KeySigner]:
    """Write a log of `size` records straight through the store API, in batches."""
    signer = _signer()
    store = open_store(url)
    record = sample_record(0, request_id="req-000000000000")
    template = record.SerializeToString(deterministic=True)
    marker = b"req-000000000000"
    at = template.index(marker)
    head, tail = template[:at], template[at + len(marker) :]
    frontier = Frontier()
    started = time.perf_counter()
    batch = 20_000
    sha = hashlib.sha256
    for start in range(0, size, batch):
        rows: list[LeafRow] = []
        nodes: list[tuple[int, int, bytes]] = []
        for i in range(start, min(size, start + batch)):
            rid = f"req-{i:012d}"
            leaf = head + rid.encode() + tail + index_suffix(i)
            digest = sha(b"\x00" + leaf).digest()
            frontier.append(digest, nodes)
            rows.append(LeafRow(i, digest, leaf, rid, None, 1_767_225_600_000 + i))
        head_row = TreeHead(frontier.size, frontier.root(), frontier.to_bytes())
        store.append(start, rows, nodes, head_row)
    note_signer = NoteSigner(ORIGIN, signer, signer.public_key)
    text = Checkpoint(ORIGIN, frontier.size, frontier.root()).text()
    note = SignedNote(text, (note_signer.sign(text),)).render()
    store.add_checkpoint(StoredCheckpoint(frontier.size, frontier.root(), note, 0))
    store.set_meta("origin", ORIGIN.encode())
    store.close()
    return time.perf_counter() - started, signer


def _verify_report(folder: Path) -> None:
    size = int(os.environ.get("GOVBUS_BENCH_AUDIT_VERIFY", "1000000"))
    url = f"sqlite://{folder}/verify.db"
    took, signer = _generate(url, size)
    print(f"verify     generated a {size:,}-record SQLite log in {took:.1f} s", flush=True)
    store = open_store(url, create=False)
    try:
        started = time.perf_counter()
        for _ in store.scan(0, 1 << 62):
            pass
        scan = time.perf_counter() - started
        started = time.perf_counter()
        sha = hashlib.sha256
        for _, _, leaf in store.scan(0, 1 << 62):
            sha(b"\x00" + leaf).digest()
        hashing = time.perf_counter() - started
        note_key = NoteSigner(ORIGIN, signer, signer.public_key).key
        started = time.perf_counter()
        report = verify_store(store, note_key)
        verify = time.perf_counter() - started
    finally:
        store.close()
    assert report.records == size
    verdict = "meets" if verify < 10 else "MISSES"
    print(
        f"verify     {size:,} records verified in {verify:.2f} s "
        f"({size / verify:,.0f} records/s); baselines in the same run: reading them "
        f"{scan:.2f} s (x{verify / scan:.1f}), reading and leaf-hashing {hashing:.2f} s "
        f"(x{verify / hashing:.1f})",
        flush=True,
    )
    print(f"{'':10s} target < 10 s for 1,000,000 records: {verdict}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="govbus-bench-audit-") as tmp:
        folder = Path(tmp)
        counter = iter(range(100))
        _append_report("sqlite", lambda: f"sqlite://{folder}/append-{next(counter)}.db")
        enqueue, loop_cpu = asyncio.run(_loop_cost(f"sqlite://{folder}/loop.db", 20_000))
        print(
            f"{'event loop':10s} {enqueue:.1f} µs to queue one append; {loop_cpu:.1f} µs of "
            "loop-thread CPU per append in all (task, queue, wake, resolve; the disk work runs "
            "on the writer thread)",
            flush=True,
        )
        try:
            import psycopg

            with psycopg.connect(PG, connect_timeout=5):
                pass
        except Exception as exc:  # noqa: BLE001 - report and go on without PostgreSQL
            print(f"postgres   skipped: {type(exc).__name__}: {exc}", flush=True)
        else:
            schemas: list[str] = []

            def pg_url() -> str:
                schemas.append(f"bench_{uuid.uuid4().hex[:10]}")
                return f"{PG}?schema={schemas[-1]}"

            try:
                _append_report("postgres", pg_url)
            finally:
                with psycopg.connect(PG, autocommit=True) as db:
                    for schema in schemas:
                        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        _verify_report(folder)


if __name__ == "__main__":
    main()
