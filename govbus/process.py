"""Start govbus processes (tests, benchmarks, the demo) and stop them by their pid.

A process is started with `--ready-file`; the caller waits until the server has
written the ports it bound, never sleeps for a guessed time. Only processes
started here are ever signalled, and only by their own pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from govbus.serving import wait_for_ready_file

__all__ = ["GovbusProcess"]


class GovbusProcess:
    """`python -m govbus.cli <args> --ready-file F` as a context manager."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout: float = 30.0,
        ready_flag: str = "--ready-file",
        log_path: Path | None = None,
        new_session: bool = False,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="govbus-proc-")
        self.ready_file = Path(self._dir.name) / "ready.json"
        # A caller that keeps the output after the process ends (the stack) names the file.
        self.log_path = log_path or Path(self._dir.name) / "output.log"
        # In its own session a child does not get the terminal's Ctrl-C: the parent stops
        # its children itself, in order.
        self.new_session = new_session
        # Told the pid as soon as the process exists, before it is ready (a stack records it).
        self.on_spawn = on_spawn
        self.args = [sys.executable, "-m", "govbus.cli", *args, ready_flag, str(self.ready_file)]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> GovbusProcess:
        self.ready_file.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=log,
            start_new_session=self.new_session,
        )
        log.close()
        if self.on_spawn is not None:
            self.on_spawn(self.proc.pid)
        try:
            self.info = wait_for_ready_file(
                self.ready_file,
                self.ready_timeout,
                alive=lambda: self.proc is not None and self.proc.poll() is None,
            )
        except (TimeoutError, RuntimeError):
            self.stop()
            raise RuntimeError(f"{' '.join(self.args)} did not start:\n{self.output()}") from None
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL: only ever our own pid."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> GovbusProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the process and remove its ready file and output."""
        self.stop()
        self._dir.cleanup()
