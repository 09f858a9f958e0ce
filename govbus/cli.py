"""The `govbus` command: one entry point for every role.

The kernel's own commands (`pki`) are defined here; each component adds its
commands through a `register(app)` function in its `cli` module, found by
name at start-up so that the kernel never imports a component.

A `GovbusError` ends the command with its code and message on stderr and exit
status 1 — never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from govbus.errors import GovbusError

__all__ = ["COMPONENT_CLIS", "build_app", "main"]

COMPONENT_CLIS = (
    "registry.cli",
    "audit_log.cli",
    "consent.cli",
    "security_server.cli",
    "adapters.cli",
    "service_centre.cli",
    "loadtest.cli",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="govbus",
        help="govbus: signed, logged, consent-checked exchanges between agency registries.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    from govbus import pki_cli

    pki_cli.register(app)
    for name in COMPONENT_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    app = build_app()
    try:
        app(args=argv)
    except GovbusError as exc:
        Console(stderr=True).print(f"[bold red]error[/]: {exc}", highlight=False, markup=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
