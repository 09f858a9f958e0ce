"""`govbus ss …`: run and inspect a security server; `govbus call`: call a service
through one, as a consumer system does."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

ss = typer.Typer(help="Security server: serve, status, diagnostics.", no_args_is_help=True)
console = Console()


def register(app: typer.Typer) -> None:
    app.add_typer(ss, name="ss")
    app.command("call")(call)


ReadyOpt = Annotated[
    Path | None, typer.Option("--ready-file", help="write bound ports here as JSON once serving")
]


@ss.command("serve")
def serve(
    config: Annotated[Path, typer.Option("--config", help="security server TOML configuration")],
    ready_file: ReadyOpt = None,
) -> None:
    """Run a security server until SIGTERM/Ctrl-C."""
    from security_server.server import serve as run

    asyncio.run(run(config, ready_file))


@ss.command("status")
def status(
    address: Annotated[
        str, typer.Option(help="the security server's consumer (local) address")
    ] = "127.0.0.1:8081",
) -> None:
    """Show configuration, log and per-service health of a running security server."""
    import grpc

    from govbus.errors import from_rpc_error
    from govbus.pb.govbus.v1 import security_server_pb2, security_server_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
        try:
            reply = stub.Status(security_server_pb2.StatusRequest(), timeout=5)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
    expires = reply.conf_expires_at_ms / 1000
    head = Table(show_header=False, box=None)
    head.add_row("server", reply.server_id)
    head.add_row("global conf", f"v{reply.conf_version}, expires in {expires - time.time():.0f} s")
    if reply.conf_error:
        head.add_row("conf error", f"[red]{reply.conf_error}[/]")
    head.add_row("exchanges", f"{reply.exchanges} ({reply.refusals} refused)")
    head.add_row("audit log", f"{reply.log_size} records")
    console.print(head)
    if reply.services:
        table = Table(
            "service",
            "provider servers",
            "breaker",
            "fail %",
            "slow %",
            "in flight",
            "queued",
            "shed",
        )
        for row in reply.services:
            table.add_row(
                row.service,
                row.servers,
                row.breaker,
                f"{row.failure_rate * 100:.0f}",
                f"{row.slow_call_rate * 100:.0f}",
                str(row.in_flight),
                str(row.queued),
                str(row.shed),
            )
        console.print(table)


@ss.command("diagnostics")
def diagnostics(
    port: Annotated[int, typer.Option(help="port to listen on (0 = any free port)")] = 0,
    ready_file: ReadyOpt = None,
) -> None:
    """Serve the diagnostics echo service (govbus.v1.Diagnostics) on 127.0.0.1."""
    import grpc

    from govbus.pb.govbus.v1 import diagnostics_pb2_grpc
    from govbus.serving import (
        DEFAULT_OPTIONS,
        add_health_and_reflection,
        run_until_signalled,
        write_ready_file,
    )
    from security_server.diagnostics import SERVICE_NAME, DiagnosticsServicer

    async def run() -> None:
        server = grpc.aio.server(options=DEFAULT_OPTIONS)
        diagnostics_pb2_grpc.add_DiagnosticsServicer_to_server(DiagnosticsServicer(), server)
        health = add_health_and_reflection(server, [SERVICE_NAME])
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        write_ready_file(ready_file, {"pid": os.getpid(), "port": bound})
        await run_until_signalled(server, grace=2.0, health_servicer=health)

    asyncio.run(run())


def call(
    service: Annotated[str, typer.Argument(help="service id KZ/GOV/<BIN>/<subsystem>/<code>/<v>")],
    method: Annotated[str, typer.Argument(help="method name, e.g. GetPerson")],
    request: Annotated[str, typer.Argument(help="the request as JSON (proto field names)")] = "{}",
    bus: Annotated[
        str, typer.Option("--bus", envvar="GOVBUS_BUS", help="your security server host:port")
    ] = "127.0.0.1:8081",
    client: Annotated[
        str, typer.Option("--client", envvar="GOVBUS_CLIENT", help="your subsystem id")
    ] = "",
    subject: Annotated[str, typer.Option(help="IIN of the person the data is about")] = "",
    purpose: Annotated[str, typer.Option(help="purpose code (ASCII)")] = "",
    consent: Annotated[
        Path | None,
        typer.Option(help="the person's signed consent (from `govbus consent confirm --out`)"),
    ] = None,
    legal_basis: Annotated[str, typer.Option(help="registered legal basis id")] = "",
    initiator: Annotated[str, typer.Option(help="the person at the keyboard")] = "",
    deadline_ms: Annotated[
        int, typer.Option(help="deadline (0: the service's default)", min=0)
    ] = 0,
    registry: Annotated[
        str, typer.Option("--registry", envvar="GOVBUS_REGISTRY", help="registry public host:port")
    ] = "",
    ca: Annotated[
        Path, typer.Option("--ca", envvar="GOVBUS_CA", help="registry CA certificate (PEM)")
    ] = Path("pki/ca.cert.pem"),
) -> None:
    """Call a service through your security server, with no generated code: the request
    and each answer are JSON, the contract comes from the registry."""
    from govbus.client import Bus
    from govbus.dynamic import DynamicService
    from govbus.errors import ConfigInvalid
    from registry.client import DiscoveryClient

    if not client:
        raise ConfigInvalid("no client subsystem: pass --client or set $GOVBUS_CLIENT")
    if not registry:
        raise ConfigInvalid("no registry address: pass --registry or set $GOVBUS_REGISTRY")
    consent_id, artefact = _consent_file(consent) if consent is not None else ("", b"")
    with DiscoveryClient.from_files(registry, ca=ca) as discovery:
        published = discovery.descriptor(service)
    contract = DynamicService(published.descriptor_set, published.grpc_service)
    message = contract.request(method, request)
    streaming = contract.method(method).server_streaming

    async def run() -> None:
        async with Bus(bus, client, initiator=initiator) as handle:
            stub = handle.stub(
                contract.stub,
                service,
                subject=subject or None,
                purpose=purpose,
                consent=consent_id or None,
                consent_artefact=artefact or None,
                legal_basis=legal_basis or None,
            )
            timeout = deadline_ms / 1000 if deadline_ms else None
            if streaming:
                async for answer in stub[method](message, timeout=timeout):
                    typer.echo(contract.to_json(answer))
            else:
                typer.echo(contract.to_json(await stub[method](message, timeout=timeout)))

    asyncio.run(run())


def _consent_file(path: Path) -> tuple[str, bytes]:
    """The id and bytes of a signed consent file (parsed, not verified: the provider's
    security server verifies it)."""
    from consent.artefact import terms_of
    from govbus.errors import ConfigInvalid

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigInvalid(f"cannot read signed consent {path}: {exc.strerror}") from None
    return terms_of(raw).id, raw
