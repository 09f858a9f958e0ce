"""`govbus ss …`: run and inspect a security server."""

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
