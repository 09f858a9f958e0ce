"""`govbus consent …`: run the consent service and act on consents from the command line.

- `serve`: the consent service (public TLS port + operator mutual-TLS port).
- `request`, `confirm`, `show`, `list`, `revoke`: a consent's life.
- `login`, `usage`: a citizen's token and "who accessed my data".
- `set-phone`: an operator registers a citizen's phone for one-time codes.

Client commands talk to the service over TLS (`--address`, `--ca`); with
`--operator-key/--operator-cert` they use mutual TLS on the operator port. Every
failure prints its govbus code and exits 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from consent.artefact import terms_of, verify_signed_consent
from consent.client import ConsentClient, consent_channel
from consent.service import ConsentSettings, ServeOptions, serve
from govbus.crypto.keys import KeySigner, load_private_key, passphrase_from_env, private_key_pem
from govbus.crypto.pki import (
    TrustAnchor,
    cert_fingerprint,
    certificate_der,
    certificate_pem,
    load_certificate,
)
from govbus.errors import ConfigInvalid, GovbusError, InvalidRequest
from govbus.pb.govbus.v1 import consent_pb2, usage_pb2

__all__ = ["register"]

T = TypeVar("T")

app = typer.Typer(
    help="Consent: grant, confirm, list and revoke consents; run the consent service.",
    no_args_is_help=True,
)
console = Console()

_MODES = {"view": consent_pb2.CONSENT_MODE_VIEW, "store": consent_pb2.CONSENT_MODE_STORE}
_METHODS = {
    "otp": usage_pb2.CONSENT_METHOD_OTP,
    "eds": usage_pb2.CONSENT_METHOD_EDS,
    "in-person": usage_pb2.CONSENT_METHOD_IN_PERSON,
}
_STATE_NAMES = {
    consent_pb2.CONSENT_STATE_ACTIVE: "active",
    consent_pb2.CONSENT_STATE_REVOKED: "revoked",
    consent_pb2.CONSENT_STATE_EXPIRED: "expired",
}
_METHOD_NAMES = {v: k for k, v in _METHODS.items()}

AddressOpt = Annotated[
    str,
    typer.Option(
        "--address",
        envvar="GOVBUS_CONSENT_ADDRESS",
        help="consent service host:port (the operator port with --operator-key)",
    ),
]
CaOpt = Annotated[
    Path, typer.Option("--ca", envvar="GOVBUS_CA_CERT", help="CA certificate (PEM) of the bus")
]
OperatorKeyOpt = Annotated[
    Path | None,
    typer.Option("--operator-key", envvar="GOVBUS_OPERATOR_KEY", help="operator key (mTLS)"),
]
OperatorCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--operator-cert", envvar="GOVBUS_OPERATOR_CERT", help="operator certificate (mTLS)"
    ),
]
PassOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="file with the key passphrase (default: $GOVBUS_KEY_PASSPHRASE)"
    ),
]
TokenOpt = Annotated[
    Path | None, typer.Option("--token", help="citizen token file (from `consent login`)")
]
EdsKeyOpt = Annotated[
    Path | None, typer.Option("--eds-key", help="the citizen's own EDS key (encrypted PEM)")
]
EdsCertOpt = Annotated[
    Path | None, typer.Option("--eds-cert", help="the citizen's EDS certificate (PEM)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print only the id (for scripts)")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="consent")


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def _time(ms: int) -> str:
    return f"{dt.datetime.fromtimestamp(ms / 1000, dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if ms else "-"


def _parse_time(text: str) -> int:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not an ISO 8601 date or time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigInvalid(f"cannot read {what} {path}: {exc.strerror}") from None


async def _with_client(
    address: str,
    ca: Path,
    work: Callable[[ConsentClient], Awaitable[T]],
    *,
    operator_key: Path | None = None,
    operator_cert: Path | None = None,
    passphrase_file: Path | None = None,
) -> T:
    if not address:
        raise ConfigInvalid("no consent service address: pass --address or $GOVBUS_CONSENT_ADDRESS")
    ca_pem = certificate_pem(load_certificate(ca))
    key_pem = cert_pem = None
    if (operator_key is None) != (operator_cert is None):
        raise ConfigInvalid("give both --operator-key and --operator-cert, or neither")
    if operator_key is not None and operator_cert is not None:
        key_pem = private_key_pem(
            load_private_key(operator_key, passphrase_from_env(passphrase_file))
        )
        cert_pem = certificate_pem(load_certificate(operator_cert))
    client = ConsentClient(
        consent_channel(address, ca_pem, client_key_pem=key_pem, client_cert_pem=cert_pem)
    )
    try:
        return await work(client)
    finally:
        await client.close()


def _eds_signer(key: Path, cert: Path, passphrase_file: Path | None) -> tuple[KeySigner, bytes]:
    certificate = load_certificate(cert)
    signer = KeySigner(
        load_private_key(key, passphrase_from_env(passphrase_file)), cert_fingerprint(certificate)
    )
    return signer, certificate_der(certificate)


async def _token(
    client: ConsentClient,
    token: Path | None,
    eds_key: Path | None,
    eds_cert: Path | None,
    iin: str,
    passphrase_file: Path | None,
) -> usage_pb2.SignedCitizenToken | None:
    """The citizen's token from a file or an EDS log-in; None lets an operator act."""
    if token is not None:
        signed = usage_pb2.SignedCitizenToken()
        try:
            signed.ParseFromString(_read(token, "citizen token"))
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
            raise ConfigInvalid(f"{token} is not a citizen token") from None
        return signed
    if eds_key is not None and eds_cert is not None:
        if not iin:
            raise ConfigInvalid("--iin is needed to log in with an EDS key")
        signer, der = _eds_signer(eds_key, eds_cert, passphrase_file)
        return await client.login_eds(iin, signer, der)
    return None


def _artefact_json(artefact: consent_pb2.ConsentArtefact) -> dict[str, Any]:
    return {
        "id": artefact.id,
        "subject": artefact.subject,
        "grantee": artefact.grantee,
        "scopes": [{"service": s.service, "fields": list(s.fields)} for s in artefact.scopes],
        "purpose_code": artefact.purpose_code,
        "purpose_text": artefact.purpose_text,
        "mode": "store" if artefact.mode == consent_pb2.CONSENT_MODE_STORE else "view",
        "not_before_ms": artefact.not_before_ms,
        "expires_at_ms": artefact.expires_at_ms,
        "method": _METHOD_NAMES.get(artefact.evidence.method, "?"),
        "issued_at_ms": artefact.issued_at_ms,
    }


def _record_json(record: consent_pb2.ConsentRecord) -> dict[str, Any]:
    return {
        **_artefact_json(terms_of(record.signed_consent)),
        "state": _STATE_NAMES.get(record.state, "?"),
        "revoked_at_ms": record.revoked_at_ms,
        "revoked_by": record.revoked_by,
        "revocation_seq": record.revocation_seq,
    }


def _print_terms(artefact: consent_pb2.ConsentArtefact) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("consent", artefact.id)
    table.add_row("subject", artefact.subject)
    table.add_row("grantee", artefact.grantee)
    for scope in artefact.scopes:
        fields = f" (fields: {', '.join(scope.fields)})" if scope.fields else ""
        table.add_row("service", scope.service + fields)
    table.add_row("purpose", f"{artefact.purpose_code}: {artefact.purpose_text}")
    table.add_row("mode", "store" if artefact.mode == consent_pb2.CONSENT_MODE_STORE else "view")
    table.add_row("valid", f"{_time(artefact.not_before_ms)} .. {_time(artefact.expires_at_ms)}")
    table.add_row("given by", _METHOD_NAMES.get(artefact.evidence.method, "?"))
    console.print(table)


# --- serve ------------------------------------------------------------------------------


@app.command("serve")
def serve_command(
    state_dir: Annotated[Path, typer.Option(help="database, secret and outbox folder")],
    ca: CaOpt,
    signing_key: Annotated[Path, typer.Option(help="consent-role signing key (encrypted PEM)")],
    signing_cert: Annotated[Path, typer.Option(help="consent-role certificate (PEM)")],
    tls_key: Annotated[Path, typer.Option(help="server-role TLS key (encrypted PEM)")],
    tls_cert: Annotated[Path, typer.Option(help="server-role TLS certificate (PEM)")],
    pg_dsn: Annotated[
        str | None, typer.Option(help="PostgreSQL DSN (default: SQLite in --state-dir)")
    ] = None,
    outbox: Annotated[Path | None, typer.Option(help="SMS outbox file (JSON lines)")] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="service secret (default: STATE_DIR/secret.key)")
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="public TLS port (0 = any)")] = 0,
    operator_port: Annotated[int, typer.Option(help="operator mTLS port (0 = any)")] = 0,
    globalconf: Annotated[
        Path | None, typer.Option(help="signed global configuration file to follow")
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="registry host:port to download the configuration from")
    ] = None,
    otp_attempts: Annotated[int, typer.Option(help="wrong codes before a code locks")] = 5,
    otp_rate_limit: Annotated[int, typer.Option(help="codes per IIN/phone per 15 min")] = 5,
    ready_file: Annotated[
        Path | None, typer.Option(help="write bound ports here once serving")
    ] = None,
    passphrase_file: PassOpt = None,
) -> None:
    """Run the consent service until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if otp_attempts < 1 or otp_rate_limit < 1:
        raise ConfigInvalid("--otp-attempts and --otp-rate-limit must be at least 1")
    options = ServeOptions(
        state_dir=state_dir,
        ca_cert=ca,
        signing_key=signing_key,
        signing_cert=signing_cert,
        tls_key=tls_key,
        tls_cert=tls_cert,
        passphrase=passphrase_from_env(passphrase_file),
        pg_dsn=pg_dsn,
        outbox=outbox,
        secret_file=secret_file,
        host=host,
        port=port,
        operator_port=operator_port,
        globalconf_file=globalconf,
        registry_address=registry,
        ready_file=ready_file,
        settings=ConsentSettings(otp_max_attempts=otp_attempts, otp_rate_limit=otp_rate_limit),
    )
    asyncio.run(serve(options))


# --- a consent's life -----------------------------------------------------------------


def _scopes(services: list[str]) -> list[tuple[str, list[str]]]:
    scopes = []
    for text in services:
        service, _, fields = text.partition(":")
        scopes.append((service, [f for f in fields.split(",") if f]))
    return scopes


@app.command("request")
def request_command(
    iin: Annotated[str, typer.Option(help="the citizen's IIN")],
    grantee: Annotated[str, typer.Option(help="consumer subsystem id given the consent")],
    service: Annotated[
        list[str], typer.Option(help="service id, optionally SERVICE:field1,field2 (repeatable)")
    ],
    purpose: Annotated[str, typer.Option(help="purpose code, e.g. birth-registration")],
    purpose_text: Annotated[str, typer.Option(help="what the citizen is told")],
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    method: Annotated[str, typer.Option(help="otp | eds | in-person")] = "otp",
    mode: Annotated[str, typer.Option(help="view | store")] = "view",
    days: Annotated[float, typer.Option(help="valid for this many days")] = 30,
    not_before: Annotated[str | None, typer.Option(help="ISO time it starts (default now)")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO time it ends (overrides --days)")] = None,
    operator_key: OperatorKeyOpt = None,
    operator_cert: OperatorCertOpt = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ask a citizen for consent; they confirm it by code, EDS or in person."""
    if method not in _METHODS or mode not in _MODES:
        raise InvalidRequest("--method is otp, eds or in-person; --mode is view or store")
    start = _parse_time(not_before) if not_before else 0
    end = _parse_time(expires) if expires else (start or _now_ms()) + int(days * 86_400_000)

    async def work(client: ConsentClient) -> consent_pb2.RequestConsentResponse:
        return await client.request_consent(
            subject=iin.strip(),
            grantee=grantee.strip(),
            scopes=_scopes(service),
            purpose_code=purpose,
            purpose_text=purpose_text,
            expires_at_ms=end,
            not_before_ms=start,
            method=_METHODS[method],
            mode=_MODES[mode],
        )

    answer = _run(
        lambda: _with_client(
            address,
            ca,
            work,
            operator_key=operator_key,
            operator_cert=operator_cert,
            passphrase_file=passphrase_file,
        )
    )
    if quiet:
        print(answer.request_id)
        return
    if as_json:
        print(
            json.dumps(
                {
                    "request_id": answer.request_id,
                    "consent_id": answer.consent_id,
                    "method": method,
                    "otp_sent_to": answer.otp_sent_to,
                    "request_expires_at_ms": answer.request_expires_at_ms,
                    "terms": _artefact_json(answer.terms),
                }
            )
        )
        return
    _print_terms(answer.terms)
    console.print(
        f"request [bold]{answer.request_id}[/] (confirm before "
        f"{_time(answer.request_expires_at_ms)})"
    )
    if answer.otp_sent_to:
        console.print(f"a one-time code was sent to {answer.otp_sent_to}")


@app.command("confirm")
def confirm_command(
    request_id: Annotated[str, typer.Argument(help="the request id from `consent request`")],
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    code: Annotated[str | None, typer.Option(help="the one-time code the citizen got")] = None,
    eds_key: EdsKeyOpt = None,
    eds_cert: EdsCertOpt = None,
    id_doc_type: Annotated[str | None, typer.Option(help="in person: id-card, passport, …")] = None,
    id_doc_number: Annotated[str | None, typer.Option(help="in person: document number")] = None,
    operator_key: OperatorKeyOpt = None,
    operator_cert: OperatorCertOpt = None,
    out: Annotated[Path | None, typer.Option(help="write the signed consent here")] = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Confirm a requested consent by one-time code, EDS signature or in person."""
    ways = [code is not None, eds_key is not None, id_doc_type is not None]
    if sum(ways) != 1:
        raise InvalidRequest("give exactly one of --code, --eds-key/--eds-cert, --id-doc-type")

    async def work(client: ConsentClient) -> consent_pb2.ConsentRecord:
        if code is not None:
            return await client.confirm_otp(request_id, code.strip())
        if eds_key is not None:
            if eds_cert is None:
                raise ConfigInvalid("--eds-key needs --eds-cert")
            signer, der = _eds_signer(eds_key, eds_cert, passphrase_file)
            return await client.confirm_eds(request_id, signer, der)
        return await client.confirm_in_person(request_id, id_doc_type or "", id_doc_number or "")

    record = _run(
        lambda: _with_client(
            address,
            ca,
            work,
            operator_key=operator_key,
            operator_cert=operator_cert,
            passphrase_file=passphrase_file,
        )
    )
    if out is not None:
        out.write_bytes(record.signed_consent)
    artefact = terms_of(record.signed_consent)
    if quiet:
        print(artefact.id)
        return
    if as_json:
        print(json.dumps(_record_json(record)))
        return
    console.print(f"consent [bold]{artefact.id}[/] is active")
    if out is not None:
        console.print(f"signed consent written to {out}")


@app.command("show")
def show_command(
    consent_id: Annotated[str | None, typer.Argument(help="consent id to fetch")] = None,
    file: Annotated[Path | None, typer.Option(help="a signed consent file instead")] = None,
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    as_json: JsonOpt = False,
) -> None:
    """Show a consent and check its signatures against the CA."""
    state = ""
    if file is not None:
        raw = _read(file, "signed consent")
    elif consent_id:
        record = _run(lambda: _with_client(address, ca, lambda c: c.get(consent_id)))
        raw, state = record.signed_consent, _STATE_NAMES.get(record.state, "?")
    else:
        raise InvalidRequest("give a consent id or --file")
    anchor = TrustAnchor([load_certificate(ca)])
    try:
        parsed = verify_signed_consent(raw, anchor, check_citizen=True)
        verdict = f"valid (signed by consent service {parsed.signer.name})"
        ok = True
    except GovbusError as exc:
        verdict, ok = f"{exc.code}: {exc.message}", False
    artefact = terms_of(raw)
    if as_json:
        print(json.dumps({**_artefact_json(artefact), "state": state, "signature": verdict}))
    else:
        _print_terms(artefact)
        if state:
            console.print(f"state: [bold]{state}[/]")
        console.print(f"signature: {'[green]' if ok else '[red]'}{verdict}[/]")
    if not ok:
        raise typer.Exit(1)


@app.command("list")
def list_command(
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    iin: Annotated[str, typer.Option(help="whose consents (EDS log-in or operator)")] = "",
    token: TokenOpt = None,
    eds_key: EdsKeyOpt = None,
    eds_cert: EdsCertOpt = None,
    operator_key: OperatorKeyOpt = None,
    operator_cert: OperatorCertOpt = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a citizen's consents (citizen token, EDS, or an operator at the counter)."""

    async def work(client: ConsentClient) -> list[consent_pb2.ConsentRecord]:
        signed = await _token(client, token, eds_key, eds_cert, iin, passphrase_file)
        return await client.list(token=signed, subject=iin.strip() if signed is None else "")

    records = _run(
        lambda: _with_client(
            address,
            ca,
            work,
            operator_key=operator_key,
            operator_cert=operator_cert,
            passphrase_file=passphrase_file,
        )
    )
    if as_json:
        print(json.dumps([_record_json(r) for r in records]))
        return
    table = Table("consent", "grantee", "services", "purpose", "valid until", "state")
    for record in records:
        artefact = terms_of(record.signed_consent)
        table.add_row(
            artefact.id,
            artefact.grantee,
            "\n".join(s.service for s in artefact.scopes),
            artefact.purpose_code,
            _time(artefact.expires_at_ms),
            _STATE_NAMES.get(record.state, "?"),
        )
    console.print(table)


@app.command("revoke")
def revoke_command(
    consent_id: Annotated[str, typer.Argument(help="the consent to revoke")],
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    iin: Annotated[str, typer.Option(help="the citizen (for an EDS log-in)")] = "",
    token: TokenOpt = None,
    eds_key: EdsKeyOpt = None,
    eds_cert: EdsCertOpt = None,
    reason: Annotated[str, typer.Option(help="why (kept with the revocation)")] = "",
    operator_key: OperatorKeyOpt = None,
    operator_cert: OperatorCertOpt = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a consent; every provider refuses it within the feed's staleness bound."""

    async def work(client: ConsentClient) -> consent_pb2.ConsentRecord:
        signed = await _token(client, token, eds_key, eds_cert, iin, passphrase_file)
        return await client.revoke(consent_id, token=signed, reason=reason)

    record = _run(
        lambda: _with_client(
            address,
            ca,
            work,
            operator_key=operator_key,
            operator_cert=operator_cert,
            passphrase_file=passphrase_file,
        )
    )
    if as_json:
        print(json.dumps(_record_json(record)))
        return
    console.print(
        f"consent {consent_id} revoked at {_time(record.revoked_at_ms)} "
        f"(feed entry {record.revocation_seq})"
    )


# --- citizen log-in and usage -------------------------------------------------------------


@app.command("login")
def login_command(
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    iin: Annotated[str, typer.Option(help="the citizen's IIN (to start a log-in)")] = "",
    challenge: Annotated[str | None, typer.Option(help="challenge id to answer")] = None,
    code: Annotated[str | None, typer.Option(help="the one-time code received")] = None,
    eds_key: EdsKeyOpt = None,
    eds_cert: EdsCertOpt = None,
    token_out: Annotated[Path | None, typer.Option(help="write the citizen token here")] = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log a citizen in: by EDS at once, or by one-time code in two steps
    (`--iin X` sends the code; `--challenge ID --code C` answers it)."""

    async def work(client: ConsentClient) -> dict[str, Any]:
        if eds_key is not None and eds_cert is not None:
            signer, der = _eds_signer(eds_key, eds_cert, passphrase_file)
            return {"token": await client.login_eds(iin.strip(), signer, der)}
        if challenge is not None and code is not None:
            return {"token": await client.complete_login_otp(challenge, code.strip())}
        if iin:
            started = await client.start_login(iin.strip(), usage_pb2.CONSENT_METHOD_OTP)
            return {"challenge_id": started.challenge_id, "otp_sent_to": started.otp_sent_to}
        raise InvalidRequest("give --iin (to send a code), --challenge with --code, or --eds-key")

    result = _run(lambda: _with_client(address, ca, work, passphrase_file=passphrase_file))
    signed = result.get("token")
    if isinstance(signed, usage_pb2.SignedCitizenToken):
        if token_out is None:
            raise ConfigInvalid("give --token-out to keep the citizen token")
        token_out.write_bytes(signed.SerializeToString())
        token_out.chmod(0o600)
        if as_json:
            print(json.dumps({"token_file": str(token_out)}))
        else:
            console.print(f"citizen token written to {token_out} (valid 10 minutes)")
        return
    if as_json:
        print(json.dumps(result))
    else:
        console.print(
            f"code sent to {result['otp_sent_to']}; answer with "
            f"`govbus consent login --challenge {result['challenge_id']} --code CODE "
            "--token-out FILE`"
        )


@app.command("usage")
def usage_command(
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    token: TokenOpt = None,
    iin: Annotated[str, typer.Option(help="the citizen (for an EDS log-in)")] = "",
    eds_key: EdsKeyOpt = None,
    eds_cert: EdsCertOpt = None,
    days: Annotated[float, typer.Option(help="look back this many days")] = 365,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who accessed my data: every exchange about the citizen, from every provider."""

    async def work(client: ConsentClient) -> usage_pb2.FindMyUsageResponse:
        signed = await _token(client, token, eds_key, eds_cert, iin, passphrase_file)
        if signed is None:
            raise InvalidRequest("log in first: --token FILE, or --iin with --eds-key/--eds-cert")
        since = max(0, _now_ms() - int(days * 86_400_000))
        return await client.find_my_usage(signed, since_ms=since)

    answer = _run(lambda: _with_client(address, ca, work, passphrase_file=passphrase_file))
    if as_json:
        from google.protobuf import json_format

        print(json_format.MessageToJson(answer))
        return
    table = Table("time", "consumer", "service", "purpose", "by", "justification", "decision")
    for entry in answer.entries:
        justification = entry.consent_id or entry.law_reference or entry.legal_basis_id or "-"
        table.add_row(
            _time(entry.time_ms),
            entry.consumer,
            entry.service,
            entry.purpose,
            entry.initiator,
            justification,
            "allowed" if entry.error_code == "" else f"refused ({entry.error_code})",
        )
    console.print(table)
    for status in answer.servers:
        if not status.answered:
            console.print(
                f"[yellow]{status.server} did not answer[/]: {status.error_code} "
                f"{status.error_message}"
            )


@app.command("set-phone")
def set_phone_command(
    iin: Annotated[str, typer.Argument(help="the citizen's IIN")],
    phone: Annotated[str, typer.Argument(help="E.164 number, e.g. +77011234567")],
    address: AddressOpt = "",
    ca: CaOpt = Path("pki/ca.cert.pem"),
    operator_key: OperatorKeyOpt = None,
    operator_cert: OperatorCertOpt = None,
    passphrase_file: PassOpt = None,
) -> None:
    """Register the phone one-time codes go to (an operator, over mutual TLS)."""
    _run(
        lambda: _with_client(
            address,
            ca,
            lambda c: c.set_phone(iin.strip(), phone),
            operator_key=operator_key,
            operator_cert=operator_cert,
            passphrase_file=passphrase_file,
        )
    )
    console.print(f"phone registered for {iin}")
