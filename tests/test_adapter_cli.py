"""`govbus adapter …` as a user runs it: real processes, ready files, SIGTERM."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from adapters.population import World
from adapters.sdk import descriptor_set_bytes
from govbus.ids import Iin
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.process import GovbusProcess
from tests.conftest import run_cli

SEED, PERSONS = 3, 400


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stores")
    result = run_cli(
        "adapter",
        "populate",
        "gbdfl",
        "migration",
        "--persons",
        str(PERSONS),
        "--seed",
        str(SEED),
        "--out",
        str(out),
        "--jobs",
        "1",
    )
    assert "2 stores" in result.stdout
    return out


def test_serve_answers_logs_counts_and_stops_on_sigterm(stores: Path) -> None:
    person = World(SEED, PERSONS).person(7)
    proc = GovbusProcess(
        "adapter", "serve", "gbdfl", "--db", str(stores / "gbdfl.db"), "--metrics-port", "0"
    )
    with proc:
        info = proc.info
        assert info["agency"] == "gbdfl" and info["pid"] == proc.pid
        assert info["services"] == ["kz.gov.gbdfl.v1.PersonRegistry"]
        with grpc.insecure_channel(f"127.0.0.1:{info['port']}") as channel:
            stub = gbdfl_pb2_grpc.PersonRegistryStub(channel)
            got = stub.GetPerson(
                gbdfl_pb2.GetPersonRequest(iin=person.iin),
                metadata=(("govbus-subject", person.iin), ("govbus-request-id", "cli-1")),
            )
            assert got.first_name == person.first_name
        url = f"http://127.0.0.1:{info['metrics_port']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            metrics = answer.read().decode()
        assert 'govbus_adapter_calls_total{code="OK"' in metrics
        assert proc.stop() == 0
        log = proc.output()
    calls = [json.loads(line) for line in log.splitlines() if '"event": "call"' in line]
    assert calls and calls[0]["request_id"] == "cli-1"
    assert calls[0]["subject"] == Iin(person.iin).masked()
    assert person.iin not in log


def test_check_command_runs_the_kit_against_a_running_adapter(stores: Path) -> None:
    with GovbusProcess("adapter", "serve", "migration", "--db", str(stores / "migration.db")) as p:
        result = run_cli(
            "adapter",
            "check",
            "migration",
            "--target",
            f"127.0.0.1:{p.info['port']}",
            "--persons",
            str(PERSONS),
            "--seed",
            str(SEED),
        )
    assert "0 failed" in result.stdout


def test_serving_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("adapter", "serve", "gbdfl", "--db", str(tmp_path / "none.db"), check=False)
    assert result.returncode == 1
    assert "CONFIG_INVALID" in result.stderr and "Traceback" not in result.stderr


def test_descriptor_and_publish_command(tmp_path: Path) -> None:
    out = tmp_path / "gbdfl.binpb"
    result = run_cli("adapter", "descriptor", "gbdfl", "--out", str(out), "--server", "KZ/GOV/1")
    assert out.read_bytes() == descriptor_set_bytes(gbdfl_pb2)
    parsed = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert parsed.file[-1].name == "agencies/gbdfl/v1/gbdfl.proto"
    command = result.stdout.strip()
    assert command.startswith("govbus service publish KZ/GOV/010140100000/gbdfl/person-registry/v1")
    assert (
        "--idempotent GetPerson" in command and "--consent-policy consent-or-legal-basis" in command
    )


def test_list_shows_twenty_contracts() -> None:
    rows = json.loads(run_cli("adapter", "list", "--json").stdout)
    assert len([r for r in rows if r["grpc_service"]]) == 20
    implemented = {r["code"] for r in rows if r["implemented"]}
    assert {"gbdfl", "zags", "address", "migration", "education"} <= implemented


def test_new_refuses_bad_names_and_existing_adapters(tmp_path: Path) -> None:
    bad = run_cli("adapter", "new", "Bad-Name", "--root", str(tmp_path), check=False)
    assert bad.returncode == 1 and "INVALID_REQUEST" in bad.stderr
    root = Path(__file__).resolve().parent.parent
    existing = run_cli("adapter", "new", "gbdfl", "--root", str(root), check=False)
    assert existing.returncode == 1 and "ALREADY_EXISTS" in existing.stderr
    nowhere = run_cli("adapter", "new", "dogs", "--root", str(tmp_path), check=False)
    assert nowhere.returncode == 1 and "CONFIG_INVALID" in nowhere.stderr
