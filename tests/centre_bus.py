"""The whole bus for the stack and service-centre tests: one real stack per module.

`stack_options(tmp)` keeps the population small (2,000 persons) and pins the five
registries the composite services use, so these tests take the same time when
more adapters land (the slow demo test runs every adapter). Generated stores are
cached for the whole session. `live_children()` lists this process's children
that are still running: after a stop there must be none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consent.sms import read_outbox
from service_centre.api import CentreApi
from service_centre.stack import StackOptions

__all__ = [
    "PERSONS",
    "SEED",
    "Counter",
    "live_children",
    "pid_alive",
    "stack_options",
    "store_cache",
]

PERSONS = 2_000
SEED = 1
FIVE = ("gbdfl", "zags", "address", "migration", "education")


def stack_options(
    tmp: Path, cache: Path, *, adapters: tuple[str, ...] | None = FIVE, **kw: object
) -> StackOptions:
    settings: dict[str, object] = {
        "state_dir": tmp / "stack",
        "cache_dir": cache,
        "persons": PERSONS,
        "seed": SEED,
        "adapters": adapters,
        "queue_max_backoff_s": 1.0,
        **kw,
    }
    return StackOptions(**settings)  # type: ignore[arg-type]


def store_cache(factory: pytest.TempPathFactory) -> Path:
    """One store cache for the whole test session (the stores are generated once)."""
    return factory.getbasetemp() / "store-cache"


def pid_alive(pid: int) -> bool:
    """Running (a zombie — exited, not yet reaped — counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def live_children(parent: int | None = None) -> list[int]:
    """Pids of running processes whose parent is `parent` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry.name))
    return found


class Counter:
    """The operator at the counter: opens a visit and confirms it with the SMS code."""

    def __init__(self, url: str, outbox: Path) -> None:
        self.api = CentreApi(url)
        self.outbox = outbox

    def code_for(self, phone: str) -> str:
        for message in reversed(read_outbox(self.outbox)):
            if message.to == phone and message.code:
                return message.code
        raise AssertionError(f"no SMS code sent to {phone}")

    def visit(
        self, service: str, iin: str, phone: str, inputs: dict[str, str] | None = None
    ) -> dict[str, object]:
        opened = self.api.open_visit(
            service, iin, inputs=inputs, consent={"method": "otp", "phone": phone}
        )
        assert opened["stage"] == "awaiting-consent", opened
        return self.api.confirm(str(opened["id"]), self.code_for(phone))
