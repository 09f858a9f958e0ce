"""`govbus pki …`: the registry operator's certificate authority on the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from govbus.crypto import keys
from govbus.crypto.keys import Algorithm, load_private_key, passphrase_from_env, save_private_key
from govbus.crypto.pki import (
    CertificateAuthority,
    Role,
    cert_fingerprint,
    certificate_pem,
    load_certificate,
)
from govbus.errors import ConfigInvalid, GovbusError

__all__ = ["register"]

pki = typer.Typer(
    help="Certificate authority: issue, show, revoke certificates.", no_args_is_help=True
)
console = Console()

DirOpt = Annotated[Path, typer.Option("--dir", help="CA directory", show_default=True)]
PassOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="file with the key passphrase (default: $GOVBUS_KEY_PASSPHRASE)"
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(pki, name="pki")


@pki.command("init")
def init(
    directory: DirOpt = Path("pki"),
    name: Annotated[str, typer.Option(help="CA common name")] = "govbus Root CA",
    algorithm: Annotated[str, typer.Option(help="ecdsa-p256 or ed25519")] = "ecdsa-p256",
    days: Annotated[int, typer.Option(help="validity in days")] = 3650,
    passphrase_file: PassOpt = None,
) -> None:
    """Create a new CA (encrypted key + self-signed certificate)."""
    ca = CertificateAuthority.init(
        directory,
        passphrase_from_env(passphrase_file),
        name=name,
        algorithm=Algorithm.parse(algorithm),
        days=days,
    )
    console.print(f"CA created in {directory}: {ca.certificate.subject.rfc4514_string()}")
    console.print(f"fingerprint sha256:{cert_fingerprint(ca.certificate).hex()}")


@pki.command("issue")
def issue(
    role: Annotated[
        str, typer.Argument(help="signing|server|registry|admin|citizen|operator|consent")
    ],
    name: Annotated[str, typer.Argument(help="the bus id the certificate speaks for")],
    out: Annotated[
        Path, typer.Option(help="output prefix: writes PREFIX.key.pem and PREFIX.cert.pem")
    ],
    directory: DirOpt = Path("pki"),
    host: Annotated[
        list[str] | None, typer.Option(help="DNS name or IP for TLS (repeatable)")
    ] = None,
    csr: Annotated[
        Path | None, typer.Option(help="issue for this PEM CSR instead of a new key")
    ] = None,
    algorithm: Annotated[str, typer.Option(help="ecdsa-p256 or ed25519")] = "ecdsa-p256",
    organization: Annotated[str | None, typer.Option(help="organisation name")] = None,
    days: Annotated[int, typer.Option(help="validity in days")] = 730,
    passphrase_file: PassOpt = None,
) -> None:
    """Issue a certificate (and a new encrypted key unless --csr is given)."""
    try:
        parsed_role = Role(role)
    except ValueError:
        raise ConfigInvalid(
            f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}"
        ) from None
    passphrase = passphrase_from_env(passphrase_file)
    ca = CertificateAuthority.open(directory, passphrase)
    hosts = host or (["localhost", "127.0.0.1", "::1"] if parsed_role is Role.SERVER else [])
    cert_path = out.with_name(out.name + ".cert.pem")
    if csr is not None:
        cert = ca.issue_from_csr(parsed_role, name, csr.read_bytes(), hosts=hosts, days=days)
    else:
        issued = ca.issue_key(
            parsed_role,
            name,
            algorithm=Algorithm.parse(algorithm),
            organization=organization,
            hosts=hosts,
            days=days,
        )
        save_private_key(out.with_name(out.name + ".key.pem"), issued.key, passphrase)
        cert = issued.certificate
    keys.atomic_write(cert_path, certificate_pem(cert))
    console.print(
        f"issued {parsed_role.value} certificate for {name}: serial {cert.serial_number:x}"
    )
    console.print(f"written {cert_path}")


@pki.command("show")
def show(
    certificate: Annotated[Path, typer.Argument(help="PEM or DER certificate")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="CA directory to validate against")
    ] = None,
    passphrase_file: PassOpt = None,
) -> None:
    """Show a certificate; with --dir, validate it against the CA and its revocations."""
    cert = load_certificate(certificate)
    table = Table(show_header=False, box=None)
    table.add_row("subject", cert.subject.rfc4514_string())
    table.add_row("issuer", cert.issuer.rfc4514_string())
    table.add_row("serial", f"{cert.serial_number:x}")
    stamp = "%Y-%m-%d %H:%M"
    valid = f"{cert.not_valid_before_utc:{stamp}} .. {cert.not_valid_after_utc:{stamp}} UTC"
    table.add_row("valid", valid)
    table.add_row("fingerprint", f"sha256:{cert_fingerprint(cert).hex()}")
    if directory is not None:
        ca = CertificateAuthority.open(directory, passphrase_from_env(passphrase_file))
        try:
            identity = ca.trust_anchor().validate(cert)
            table.add_row("identity", f"{identity.role.value} {identity.name}")
            table.add_row("status", "[green]valid[/]")
        except GovbusError as exc:
            table.add_row("status", f"[red]{exc.code}[/]: {exc.message}")
            console.print(table)
            raise typer.Exit(1) from None
    console.print(table)


@pki.command("list")
def list_issued(directory: DirOpt = Path("pki"), passphrase_file: PassOpt = None) -> None:
    """List every certificate the CA issued, with revocation status."""
    ca = CertificateAuthority.open(directory, passphrase_from_env(passphrase_file))
    revoked = ca.revoked_serials()
    table = Table("serial", "role", "name", "not after", "status")
    for entry in ca.issued():
        status = "[red]revoked[/]" if int(entry["serial"], 16) in revoked else "valid"
        if dt.datetime.fromisoformat(entry["not_after"]) < dt.datetime.now(dt.UTC):
            status = "expired"
        table.add_row(
            entry["serial"], entry["role"], entry["name"], entry["not_after"][:19], status
        )
    console.print(table)


@pki.command("revoke")
def revoke(
    serial: Annotated[str, typer.Argument(help="hex serial number")],
    directory: DirOpt = Path("pki"),
    reason: Annotated[str, typer.Option(help="why")] = "unspecified",
    passphrase_file: PassOpt = None,
) -> None:
    """Revoke a certificate by serial (published in the next global configuration)."""
    try:
        number = int(serial, 16)
    except ValueError:
        raise ConfigInvalid(f"serial {serial!r} is not hexadecimal") from None
    CertificateAuthority.open(directory, passphrase_from_env(passphrase_file)).revoke(
        number, reason
    )
    console.print(f"revoked {number:x}")


@pki.command("sign")
def sign(
    file: Annotated[Path, typer.Argument(help="file to sign")],
    key: Annotated[Path, typer.Option(help="encrypted private key (PEM)")],
    out: Annotated[Path, typer.Option(help="where to write the raw signature")],
    passphrase_file: PassOpt = None,
) -> None:
    """Sign a file (ECDSA: DER signature, verifiable with `openssl dgst -sha256 -verify`)."""
    private = load_private_key(key, passphrase_from_env(passphrase_file))
    signature = keys.KeySigner(private, b"").sign_bytes(file.read_bytes())
    keys.atomic_write(out, signature)
    console.print(f"signature written to {out} ({Algorithm.of(private).name})")
