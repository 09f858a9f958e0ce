"""Fault drills on an adapter: `--drill` serves `govbus.v1.Drill`, which makes the
adapter answer late on purpose; without it nothing changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapters.population import World
from adapters.sdk import load, run_agency
from adapters.sdk.drill import MAX_DELAY_MS, DrillControl, set_drill_delay
from adapters.sdk.testing import RunningAdapter
from govbus.errors import InvalidRequest, from_rpc_error
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.pb.govbus.v1 import drill_pb2, drill_pb2_grpc
from govbus.process import GovbusProcess
from tests.conftest import run_cli

SEED, PERSONS = 5, 300
#: Far longer than the deadline the calls below give themselves.
LONG_DELAY_MS = 60_000


@pytest.fixture(scope="module")
def world() -> World:
    return World(SEED, PERSONS)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    path = tmp_path_factory.mktemp("drill") / "gbdfl.db"
    load("gbdfl").populate(path, world)
    return path


@pytest.fixture
def drilled(store: Path) -> Iterator[tuple[RunningAdapter, DrillControl]]:
    control = DrillControl()
    with run_agency("gbdfl", store, drill=control) as adapter:
        yield adapter, control


def _get_person(channel: grpc.Channel, iin: str, timeout: float) -> gbdfl_pb2.Person:
    stub = gbdfl_pb2_grpc.PersonRegistryStub(channel)
    answer: gbdfl_pb2.Person = stub.GetPerson(gbdfl_pb2.GetPersonRequest(iin=iin), timeout=timeout)
    return answer


def test_control_validates_and_clears() -> None:
    control = DrillControl()
    for bad in (-1, MAX_DELAY_MS + 1, 1.5, True):
        with pytest.raises(InvalidRequest):
            control.set_delay_ms(bad)  # type: ignore[arg-type]
    assert control.delay_ms == 0
    control.set_delay_ms(250)
    assert control.state().delay_ms == 250
    control.clear()
    assert control.state().delay_ms == 0

    async def hold_without_delay() -> None:
        await control.hold()

    asyncio.run(hold_without_delay())
    assert control.delayed_calls == 0  # no drill, no wait, nothing counted


def test_delay_outlasts_the_callers_deadline_until_cleared(
    drilled: tuple[RunningAdapter, DrillControl], world: World
) -> None:
    adapter, control = drilled
    iin = world.person(3).iin
    channel = adapter.channel()
    assert _get_person(channel, iin, timeout=10).iin == iin
    state = set_drill_delay(adapter.target, LONG_DELAY_MS)
    assert state.delay_ms == LONG_DELAY_MS and control.delay_ms == LONG_DELAY_MS
    with pytest.raises(grpc.RpcError) as late:
        _get_person(channel, iin, timeout=0.3)
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert control.delayed_calls == 1
    # The drill itself is never delayed: it is how the operator ends it.
    state = set_drill_delay(adapter.target, 0)
    assert state.delay_ms == 0 and state.delayed_calls == 1
    assert _get_person(channel, iin, timeout=10).iin == iin


def test_bad_delay_is_refused_and_changes_nothing(
    drilled: tuple[RunningAdapter, DrillControl],
) -> None:
    adapter, control = drilled
    control.set_delay_ms(5)
    with grpc.insecure_channel(adapter.target) as channel:
        stub = drill_pb2_grpc.DrillStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.SetDelay(drill_pb2.DrillDelayRequest(delay_ms=MAX_DELAY_MS + 1), timeout=5)
        assert from_rpc_error(refused.value).code == "INVALID_REQUEST"
        assert stub.Status(drill_pb2.DrillStatusRequest(), timeout=5).delay_ms == 5


def test_without_drill_there_is_no_drill_service(store: Path) -> None:
    with run_agency("gbdfl", store) as adapter, grpc.insecure_channel(adapter.target) as ch:
        with pytest.raises(grpc.RpcError) as missing:
            drill_pb2_grpc.DrillStub(ch).SetDelay(drill_pb2.DrillDelayRequest(delay_ms=1000))
        assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "govbus.v1.Drill" not in adapter.server.service_names


def test_cli_serve_with_drill_and_the_drill_command(store: Path, world: World) -> None:
    iin = world.person(4).iin
    with GovbusProcess("adapter", "serve", "gbdfl", "--db", str(store), "--drill") as proc:
        assert proc.info["drill"] is True
        assert "govbus.v1.Drill" in proc.info["services"]
        target = f"127.0.0.1:{proc.info['port']}"
        shown = run_cli("adapter", "drill", "--target", target, "--delay-ms", str(LONG_DELAY_MS))
        assert f"drill delay {LONG_DELAY_MS} ms" in shown.stdout
        with grpc.insecure_channel(target) as channel:
            with pytest.raises(grpc.RpcError) as late:
                _get_person(channel, iin, timeout=0.3)
            assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert (
                "drill delay 0 ms"
                in run_cli("adapter", "drill", "--target", target, "--clear").stdout
            )
            assert _get_person(channel, iin, timeout=10).iin == iin
        status = run_cli("adapter", "drill", "--target", target)
        assert "drill delay 0 ms (1 calls delayed" in status.stdout
        both = run_cli(
            "adapter", "drill", "--target", target, "--clear", "--delay-ms", "5", check=False
        )
        assert both.returncode == 1 and "error: INVALID_REQUEST" in both.stderr
    with GovbusProcess("adapter", "serve", "gbdfl", "--db", str(store)) as plain:
        assert plain.info["drill"] is False
        target = f"127.0.0.1:{plain.info['port']}"
        refused = run_cli("adapter", "drill", "--target", target, "--delay-ms", "10", check=False)
        assert refused.returncode == 1
        assert "error: SERVICE_UNAVAILABLE" in refused.stderr and "--drill" in refused.stderr
