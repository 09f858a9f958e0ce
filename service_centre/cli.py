"""`govbus up` (the whole bus on localhost until Ctrl-C) and `govbus centre serve`."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["exploration_help", "print_stack", "register"]

centre_app = typer.Typer(help="The ЦОН service-centre application.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)


def register(app: typer.Typer) -> None:
    app.add_typer(centre_app, name="centre")
    app.command("up")(up)


@centre_app.command("serve")
def serve_command(
    config: Annotated[Path, typer.Option("--config", help="service centre TOML configuration")],
    ready_file: Annotated[
        Path | None, typer.Option("--ready-file", help="write the URL here once serving")
    ] = None,
) -> None:
    """Run the service-centre application (operator pages, situation centre, queue)."""
    from service_centre.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(config, ready_file))


def up(
    persons: Annotated[int, typer.Option(help="persons in the synthetic population")] = 100_000,
    state: Annotated[Path, typer.Option(help="state folder (run/ is wiped at start)")] = Path(
        "var/up"
    ),
    cache: Annotated[
        Path | None, typer.Option(help="generated-store cache (default STATE/../cache)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the synthetic population")] = 1,
    no_portal: Annotated[
        bool, typer.Option("--no-portal", help="no portal security server")
    ] = False,
    adapter: Annotated[
        list[str] | None,
        typer.Option("--adapter", help="run only this agency's adapter (repeatable; default all)"),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(help="once running, write the variables to `source` here (removed on stop)"),
    ] = None,
) -> None:
    """Start the whole bus on localhost and keep it running until Ctrl-C."""
    from service_centre.stack import Stack, StackOptions, write_env_file

    def progress(text: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}", highlight=False)

    stack = Stack(
        StackOptions(
            state_dir=state,
            cache_dir=cache,
            persons=persons,
            seed=seed,
            portal=not no_portal,
            adapters=tuple(adapter) if adapter else None,
            progress=progress,
        )
    )
    stopped = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if env_file is not None:
        env_file.unlink(missing_ok=True)  # what is there describes a stack that is gone
    try:
        console.print("starting the bus … (Ctrl-C stops everything)")
        info = stack.start()
        print_stack(info)
        console.print(exploration_help(info), highlight=False)
        if env_file is not None:
            write_env_file(env_file, info)
        console.print("[bold green]running[/] — Ctrl-C to stop")
        stopped.wait()
    except KeyboardInterrupt:
        console.print("\nstopping …")
    finally:
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        stack.stop()
    console.print("everything stopped.")


def print_stack(info: object) -> None:
    """The addresses of a running stack (`StackInfo`) as tables."""
    from service_centre.stack import StackInfo

    assert isinstance(info, StackInfo)
    head = Table(
        show_header=False, box=None, title=f"govbus on localhost — up in {info.startup_s:.1f} s"
    )
    head.add_row("service centre (operator)", info.centre_url or "—")
    head.add_row("situation centre", f"{info.centre_url}/situation" if info.centre_url else "—")
    head.add_row("registry (public / admin)", f"{info.registry_public} / {info.registry_admin}")
    head.add_row(
        "consent service (public / operator)",
        f"{info.consent_address} / {info.consent_operator_address}",
    )
    head.add_row("ЦОН security server (consumer)", info.centre_server.consumer)
    if info.portal_server is not None:
        head.add_row("portal security server (consumer)", info.portal_server.consumer)
    head.add_row("population", f"{info.persons:,} persons, seed {info.seed}")
    head.add_row("run folder (logs, keys, stack.json)", info.run_dir)
    console.print(head)
    servers = Table("security server", "role", "agency", "consumer", "provider", "metrics", "pid")
    for server in info.servers.values():
        servers.add_row(
            server.id,
            server.role,
            server.agency,
            server.consumer,
            server.provider,
            server.metrics,
            str(server.pid),
        )
    console.print(servers)
    adapters = Table("adapter", "service", "address", "pid")
    for adapter in info.adapters.values():
        adapters.add_row(adapter.code, adapter.service, adapter.address, str(adapter.pid))
    console.print(adapters)


def exploration_help(info: object) -> str:
    from service_centre.stack import StackInfo

    assert isinstance(info, StackInfo)
    some = next(iter(info.adapters.values()), None)
    service = some.service if some is not None else "<service id>"
    centre = info.centre_server
    lines = [
        "",
        "[bold]Explore[/] (in another shell, from this folder):",
        f"  source {info.run_dir}/env.sh   # GOVBUS_BUS, GOVBUS_CLIENT, GOVBUS_REGISTRY, …",
        f"  govbus ss status --address {centre.consumer}",
        "  govbus conf show",
        "  govbus discover services",
        f"  govbus discover allowed {info.centre_subsystem}",
        f"  govbus discover methods {service}",
        "  govbus registry audit-trail --limit 20",
        f"  govbus audit verify --store {centre.audit_store} --cert {centre.signing_cert} "
        f"--ca {info.ca_cert}",
        f"  open {info.centre_url or '(no service centre)'} in a browser "
        f"(SMS codes land in {info.consent_outbox})",
    ]
    return "\n".join(lines) + "\n"
