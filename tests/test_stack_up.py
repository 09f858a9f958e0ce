"""`govbus up`: the whole bus until Ctrl-C, then nothing left running.

A small bus (one adapter, no portal) started by the real command in its own
process; the test waits for the layout file the stack writes once it is up,
asks the service centre and a security server, presses Ctrl-C (SIGINT), and checks
that every process the command had started is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service_centre.stack import Stack, StackOptions
from tests.centre_bus import PERSONS, pid_alive, store_cache
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def _up(state: Path, cache: Path, output: Path) -> subprocess.Popen[bytes]:
    """`govbus up` (one adapter, no portal) until it says it is running."""
    layout = state / "run" / "stack.json"
    command = [
        sys.executable,
        "-m",
        "govbus.cli",
        "up",
        "--persons",
        str(PERSONS),
        "--state",
        str(state),
        "--cache",
        str(cache),
        "--adapter",
        "address",
        "--no-portal",
    ]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"}
        )
    end = time.monotonic() + 120
    while not (layout.exists() and b"running" in output.read_bytes()):
        if process.poll() is not None or time.monotonic() > end:
            process.kill()
            process.wait()
            raise AssertionError(f"govbus up did not come up:\n{output.read_text()}")
        time.sleep(0.1)
    return process


def test_govbus_up_serves_until_ctrl_c(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path / "up"
    layout = state / "run" / "stack.json"
    output = tmp_path / "up.log"
    process = _up(state, store_cache(tmp_path_factory), output)
    try:
        info = json.loads(layout.read_text())
        pids = list(info["processes"].values())
        assert {"registry", "consent", "centre", "adapter-address"} <= set(info["processes"])
        printed = output.read_text()
        assert info["centre_url"] in printed and "govbus ss status --address" in printed
        with urllib.request.urlopen(info["centre_url"] + "/api/health", timeout=10) as answer:
            assert json.loads(answer.read())["ok"] is True
        consumer = info["servers"]["KZ/GOV/030140100014/ss1"]["consumer"]
        assert "conf" in run_cli("ss", "status", "--address", consumer).stdout.lower()
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, output.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "everything stopped." in output.read_text()
    assert not [pid for pid in pids if pid_alive(pid)]


def test_a_killed_stack_is_cleaned_up_by_the_next_start(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path / "up"
    cache = store_cache(tmp_path_factory)
    process = _up(state, cache, tmp_path / "up.log")
    leftovers = list(json.loads((state / "run" / "stack.json").read_text())["processes"].values())
    process.kill()  # SIGKILL: no chance to stop its children, which run in their own sessions
    process.wait()
    assert all(pid_alive(pid) for pid in leftovers)
    stack = Stack(
        StackOptions(
            state_dir=state,
            cache_dir=cache,
            persons=PERSONS,
            adapters=("address",),
            centre=False,
            portal=False,
        )
    )
    try:
        stack.start()
        assert not [pid for pid in leftovers if pid_alive(pid)]
    finally:
        stack.stop()
