"""`govbus adapter …`: serve, fill, check, describe and scaffold agency adapters.

- `serve CODE --db F`: run one adapter (JSON logs on stderr, ready file, /metrics);
  `--drill` also serves the fault-drill control (`govbus.v1.Drill`) on its port.
- `drill --target HOST:PORT --delay-ms N | --clear`: make a drill-enabled adapter
  answer N ms late, or normally again.
- `populate [CODE…] --persons N --out DIR`: fill agency stores from the synthetic world.
- `check CODE --target HOST:PORT`: run the contract-test kit against a running adapter.
- `sample CODE METHOD`: a valid request from the synthetic world, as JSON (or one field).
- `descriptor CODE --out F`: write the FileDescriptorSet to publish, and print the
  `govbus service publish` command.
- `list`: the twenty agency contracts and which adapters are implemented.
- `new NAME`: scaffold a working adapter (proto, servicer, store, data, test, publish.json).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

adapter_app = typer.Typer(
    help="Agency adapters: serve, populate, check, scaffold.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

CodeArg = Annotated[str, typer.Argument(help="agency code, e.g. gbdfl")]
SeedOpt = Annotated[int, typer.Option(help="seed of the synthetic world")]
PersonsOpt = Annotated[int, typer.Option(help="persons in the synthetic world")]


def register(app: typer.Typer) -> None:
    app.add_typer(adapter_app, name="adapter")


@adapter_app.command("serve")
def serve_command(
    code: CodeArg,
    db: Annotated[Path, typer.Option(help="the adapter's SQLite store")],
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind (0: any free port)")] = 0,
    ready_file: Annotated[
        Path | None, typer.Option(help="write {port, metrics_port, pid} here when ready")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus /metrics on this port (0: any)")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="debug, info (one line per call), warning")
    ] = "info",
    trace: Annotated[str, typer.Option(help="span exporter: none or console")] = "none",
    grace: Annotated[float, typer.Option(help="seconds in-flight calls get on SIGTERM")] = 5.0,
    drill: Annotated[
        bool,
        typer.Option(
            help="serve the fault-drill control (govbus.v1.Drill) on the adapter's port, "
            "to add latency on purpose (`govbus adapter drill`)"
        ),
    ] = False,
) -> None:
    """Serve one agency adapter until SIGTERM or Ctrl-C."""
    from adapters.sdk.agency import load
    from adapters.sdk.drill import DrillControl
    from adapters.sdk.server import serve
    from adapters.sdk.telemetry import Telemetry, configure_logging

    configure_logging(log_level)
    adapter = load(code)
    telemetry = Telemetry(name=code, exporter=trace)
    store = adapter.open_store(db)
    servicer = adapter.make_servicer(store)

    async def close_store() -> None:
        store.close()

    serve(
        [(adapter.add_servicer, servicer)],
        host=host,
        port=port,
        ready_file=ready_file,
        metrics_port=metrics_port,
        telemetry=telemetry,
        grace=grace,
        on_stop=[close_store],
        ready_info={"agency": code, "service": adapter.publication.grpc_service},
        drill=DrillControl() if drill else None,
    )


@adapter_app.command("drill")
def drill_command(
    target: Annotated[str, typer.Option(help="host:port of an adapter served with --drill")],
    delay_ms: Annotated[
        int | None, typer.Option(help="answer every call this many ms late (0…600000)")
    ] = None,
    clear: Annotated[bool, typer.Option(help="answer normally again")] = False,
) -> None:
    """Fault drill: make a running adapter answer late on purpose, or normally again.

    With neither option, print the drill's state.
    """
    import grpc

    from adapters.sdk.drill import set_drill_delay
    from govbus.errors import InvalidRequest, ServiceUnavailable, from_rpc_error
    from govbus.pb.govbus.v1 import drill_pb2, drill_pb2_grpc

    if clear and delay_ms is not None:
        raise InvalidRequest("give --delay-ms or --clear, not both")
    try:
        if clear or delay_ms is not None:
            state = set_drill_delay(target, 0 if clear else delay_ms or 0)
        else:
            with grpc.insecure_channel(target) as channel:
                state = drill_pb2_grpc.DrillStub(channel).Status(
                    drill_pb2.DrillStatusRequest(), timeout=5
                )
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
            raise ServiceUnavailable(
                f"{target} serves no drill control: start the adapter with --drill"
            ) from None
        raise from_rpc_error(exc) from None
    console.print(
        f"{target}: drill delay {state.delay_ms} ms "
        f"({state.delayed_calls} calls delayed since start)"
    )


@adapter_app.command("populate")
def populate_command(
    codes: Annotated[list[str] | None, typer.Argument(help="agency codes (default: all)")] = None,
    out: Annotated[Path, typer.Option(help="directory for <code>.db files")] = Path("var/stores"),
    persons: PersonsOpt = 100_000,
    seed: SeedOpt = 1,
    jobs: Annotated[int, typer.Option(help="worker processes (0: one per core)")] = 0,
) -> None:
    """Fill agency stores from the deterministic synthetic world."""
    from adapters.population.generate import populate_agencies

    started = time.perf_counter()

    def report(code: str, seconds: float) -> None:
        console.print(f"{code:<12} {seconds:6.2f} s  → {out / (code + '.db')}")

    timings = populate_agencies(
        out, seed=seed, persons=persons, codes=codes, jobs=jobs, progress=report
    )
    total = time.perf_counter() - started
    console.print(
        f"{len(timings)} stores, {persons:,} persons (seed {seed}) in {total:.1f} s "
        f"({persons / total:,.0f} persons/s)"
    )


@adapter_app.command("check")
def check_command(
    code: CodeArg,
    target: Annotated[str, typer.Option(help="host:port of the running adapter")],
    persons: PersonsOpt = 100_000,
    seed: SeedOpt = 1,
) -> None:
    """Run the contract-test kit against a running adapter (its store from the same world)."""
    import grpc

    from adapters.population import World
    from adapters.sdk.agency import load
    from adapters.sdk.contract import check_agency

    adapter = load(code)
    with grpc.insecure_channel(target) as channel:
        report = check_agency(channel, adapter, World(seed, persons))
    for finding in report.findings:
        colour = "green" if finding.ok else "red"
        console.print(f"[{colour}]{finding}[/]", highlight=False)
    console.print(str(report).splitlines()[0])
    if not report.passed:
        raise typer.Exit(1)


@adapter_app.command("sample")
def sample_command(
    code: CodeArg,
    method: Annotated[str, typer.Argument(help="method name, e.g. ListRecords")],
    persons: PersonsOpt = 100_000,
    seed: SeedOpt = 1,
    field: Annotated[str, typer.Option(help="print only this field's value")] = "",
) -> None:
    """A valid request to METHOD about someone in the synthetic world, as JSON: what to
    send when trying the adapter by hand or through the bus."""
    from google.protobuf import json_format

    from adapters.population import World
    from adapters.sdk.agency import load
    from govbus.errors import InvalidRequest, UnknownMethod

    samples = load(code).samples(World(seed, persons)).valid
    if not samples.get(method):
        known = ", ".join(sorted(samples)) or "none"
        raise UnknownMethod(f"{code} has no sample for {method!r} (it has: {known})")
    request = json_format.MessageToDict(samples[method][0], preserving_proto_field_name=True)
    if not field:
        typer.echo(json.dumps(request, ensure_ascii=False))
    elif field in request:
        typer.echo(request[field])
    else:
        raise InvalidRequest(
            f"the {method} sample has no field {field!r} (it has: {', '.join(request)})"
        )


@adapter_app.command("descriptor")
def descriptor_command(
    code: CodeArg,
    out: Annotated[Path, typer.Option(help="where to write the FileDescriptorSet (.binpb)")],
    server: Annotated[
        str, typer.Option(help="security server that will serve it (for the printed command)")
    ] = "KZ/GOV/<BIN>/<server>",
) -> None:
    """Write the descriptor set to publish and print the `govbus service publish` command."""
    from adapters.sdk.agency import load
    from govbus.crypto.keys import atomic_write

    adapter = load(code)
    atomic_write(out, adapter.descriptor_set())
    publication = adapter.publication
    err.print(f"wrote {out} ({publication.grpc_service})")
    typer.echo(" ".join(_quote(a) for a in publication.publish_argv(out, server)))


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@adapter_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The twenty agency contracts, and which adapters are implemented here."""
    from adapters.sdk.agency import AGENCIES, adapter_codes

    implemented = set(adapter_codes())
    rows = [
        {
            "code": info.code,
            "grpc_service": info.grpc_service,
            "member": info.member,
            "title": info.title,
            "implemented": info.code in implemented,
        }
        for info in AGENCIES.values()
    ]
    extra = sorted(implemented - set(AGENCIES))
    rows += [
        {"code": c, "grpc_service": "", "member": "", "title": "", "implemented": True}
        for c in extra
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("code", "service", "member", "adapter", "title")
    for row in rows:
        table.add_row(
            str(row["code"]),
            str(row["grpc_service"]),
            str(row["member"]),
            "yes" if row["implemented"] else "—",
            str(row["title"]),
        )
    console.print(table)


@adapter_app.command("new")
def new_command(
    name: Annotated[str, typer.Argument(help="agency code: lower-case letters and digits")],
    root: Annotated[Path, typer.Option(help="root of the govbus checkout")] = Path(),
    service: Annotated[str, typer.Option(help="gRPC service name (default: <Name>Registry)")] = "",
    title: Annotated[str, typer.Option(help="human title of the registry")] = "",
) -> None:
    """Scaffold a new adapter: proto, servicer, store, data, test and publish.json."""
    from adapters.sdk.scaffold import scaffold

    written = scaffold(name, root=root, service=service, title=title)
    for path in written:
        console.print(f"created {path}")
    console.print(
        "next: `make proto`, then "
        f"`.venv/bin/pytest tests/test_adapter_{name}.py` (see docs/agency-developer.md)"
    )
