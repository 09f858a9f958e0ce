"""A stack stops cleanly: after a normal run, when start-up fails halfway, when it is
interrupted (Ctrl-C) halfway; one stack per state folder.

A small bus (one adapter, no service centre, no portal) keeps this module quick;
"no stray process" is checked both by the pids the stack reported and by every
child this process still has.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from govbus.errors import ConfigInvalid, InvalidRequest, ServiceUnavailable, UnknownService
from service_centre.stack import Stack
from service_centre.stores import cache_key
from tests.centre_bus import SEED, live_children, pid_alive, stack_options, store_cache

pytestmark = pytest.mark.e2e

ONE = ("address",)


def test_start_and_stop_leave_no_process_and_one_stack_per_folder(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = set(live_children())
    options = stack_options(
        tmp_path, store_cache(tmp_path_factory), adapters=ONE, centre=False, portal=False
    )
    stack = Stack(options)
    info = stack.start()
    try:
        pids = stack.pids()
        assert set(pids) == {
            "registry",
            "consent",
            "adapter-address",
            "ss-010440100061",
            "ss-030140100014",
        }
        assert all(pid_alive(pid) for pid in pids.values())
        assert (Path(info.run_dir) / "stack.json").exists()
        assert (Path(info.run_dir) / "logs" / "registry.log").exists()
        with pytest.raises(ConfigInvalid, match="another stack is running"):
            Stack(options).start()
        assert all(pid_alive(pid) for pid in pids.values())  # the refused one touched nothing
    finally:
        stack.stop()
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    assert set(live_children()) <= before
    stack.stop()  # idempotent


def test_a_start_that_fails_halfway_stops_what_it_started(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = set(live_children())
    cache = tmp_path / "cache"
    # A damaged store in the cache: the registry is up and other parts are starting
    # when the adapter cannot open it.
    poisoned = cache / cache_key("address", SEED, 2_000)
    poisoned.parent.mkdir(parents=True)
    poisoned.write_bytes(b"this is not a SQLite database" * 100)
    stack = Stack(stack_options(tmp_path, cache, adapters=ONE, centre=False, portal=False))
    with pytest.raises(ServiceUnavailable, match="adapter-address did not start"):
        stack.start()
    assert stack.pids() == {}
    assert set(live_children()) <= before
    assert "database" in stack.log_of("adapter-address")  # its own log says why


def test_ctrl_c_during_start_up_stops_everything(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = set(live_children())

    def interrupt(text: str) -> None:
        if text.startswith("registry ready"):
            raise KeyboardInterrupt

    stack = Stack(
        stack_options(
            tmp_path,
            store_cache(tmp_path_factory),
            adapters=ONE,
            centre=False,
            portal=False,
            progress=interrupt,
        )
    )
    with pytest.raises(KeyboardInterrupt):
        stack.start()
    assert stack.pids() == {}
    assert set(live_children()) <= before


def test_bad_options_are_refused_before_anything_starts(tmp_path: Path) -> None:
    before = set(live_children())
    for options, error in [
        (stack_options(tmp_path, tmp_path / "cache", adapters=ONE, persons=0), InvalidRequest),
        (stack_options(tmp_path, tmp_path / "cache", adapters=("nothing",)), UnknownService),
        (stack_options(tmp_path, tmp_path / "cache", adapters=("SDK",)), InvalidRequest),
    ]:
        stack = Stack(options)
        with pytest.raises(error):
            stack.start()
        assert stack.pids() == {}
    assert set(live_children()) <= before
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "stack" / "run").exists()  # nothing was created or wiped
