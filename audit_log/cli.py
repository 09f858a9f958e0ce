"""`govbus audit …`: the auditor's commands over a copy of a security server's log.

verify, prove, consistency, who-accessed, export, verify-bundle, checkpoint,
witnessed and keygen. They open the store named by `--store` (a SQLite path or
URL, or a PostgreSQL URL) and trust only the certificates the auditor passes in
(`--cert`, `--ca`); without `--cert` the log's own copy of its certificate is
used and the output says that this proves internal consistency only.

Depends on `govbus` and `audit_log` only: no server needs to run, except for
`witnessed`, which asks the registry's witness what it co-signed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from audit_log import auditor, merkle
from audit_log.bus_witness import WITNESS_NAME
from audit_log.hashing import leaf_hash
from audit_log.keys import Pseudonymizer, RecordCipher, generate_key_file, load_key_file
from audit_log.log import META_LOG_CERTIFICATE, META_ORIGIN
from audit_log.note import Checkpoint, NoteKey, parse_note, verify_checkpoint
from audit_log.records import parse_leaf
from audit_log.store import LogStore, open_store
from govbus.crypto.keys import PublicKeyVerifier
from govbus.crypto.pki import Role, TrustAnchor, load_certificate
from govbus.errors import ConfigInvalid, InvalidRequest, NotFound, SignatureInvalid

__all__ = ["register"]

audit = typer.Typer(
    help="Audit a security server's log: verify, prove, who accessed, export evidence.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="GOVBUS_AUDIT_STORE",
        help="sqlite:///path/log.db, a path, or postgresql://…",
    ),
]
CertOpt = Annotated[
    Path | None, typer.Option("--cert", help="the log's signing certificate (PEM) you trust")
]
CaOpt = Annotated[Path | None, typer.Option("--ca", help="CA certificate to validate --cert")]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="a signed checkpoint you hold (default: the log's newest)"),
]


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")


def _open(url: str) -> LogStore:
    return open_store(url, create=False)


def _origin(store: LogStore) -> str:
    origin = store.get_meta(META_ORIGIN)
    if origin is None:
        raise ConfigInvalid("the store has no log origin: not an audit log")
    return origin.decode()


def _log_certificate(store: LogStore, cert: Path | None, ca: Path | None) -> x509.Certificate:
    if cert is not None:
        certificate = load_certificate(cert)
    else:
        checkpoints = store.checkpoints()
        if not checkpoints:
            raise ConfigInvalid("the log has no checkpoint yet; pass --cert")
        key_id = parse_note(checkpoints[-1].note).signatures[0].key_id
        der = store.get_meta(META_LOG_CERTIFICATE + key_id.hex())
        if der is None:
            raise ConfigInvalid("the log keeps no copy of its certificate; pass --cert")
        certificate = load_certificate(der)
        err.print(
            "[yellow]note[/]: using the log's own copy of its certificate (no --cert): "
            "this proves the log consistent with itself, not who signed it"
        )
    if ca is not None:
        anchor = TrustAnchor([load_certificate(ca)])
        anchor.validate(certificate, role=Role.SIGNING, at=certificate.not_valid_before_utc)
    return certificate


def _log_key(store: LogStore, cert: Path | None, ca: Path | None) -> NoteKey:
    certificate = _log_certificate(store, cert, ca)
    return NoteKey(_origin(store), certificate.public_key())  # type: ignore[arg-type]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(f"cannot read {path}: {exc}") from None


def _checkpoint(store: LogStore, key: NoteKey, path: Path | None) -> tuple[Checkpoint, str]:
    if path is not None:
        note = _read_text(path)
    else:
        stored = store.checkpoints()
        if not stored:
            raise NotFound("the log has issued no checkpoint yet")
        note = stored[-1].note
    checkpoint, _, _ = verify_checkpoint(note, key)
    return checkpoint, note


def _newest_cosigned(store: LogStore, key: NoteKey, witnesses: list[NoteKey]) -> str:
    """The newest stored checkpoint with a valid cosignature from one of `witnesses`."""
    for stored in reversed(store.checkpoints()):
        lines = "".join(c.line for c in store.cosignatures(stored.size))
        if not lines:
            continue
        try:
            _, _, names = verify_checkpoint(stored.note + lines, key, witnesses)
        except SignatureInvalid:
            continue  # another key's lines, or damaged ones: an older checkpoint may still do
        if names:
            return stored.note + lines
    raise NotFound(
        f"no checkpoint of log {key.name} carries a cosignature from "
        f"{', '.join(w.name for w in witnesses)}: pass one you hold with --checkpoint "
        "(e.g. from `govbus audit witnessed`), or check that the server reaches the registry"
    )


@audit.command("verify")
def verify(
    store_url: StoreOpt,
    cert: CertOpt = None,
    ca: CaOpt = None,
    checkpoint: CheckpointOpt = None,
    witness_cert: Annotated[
        Path | None, typer.Option(help="the witness's (registry's) certificate, to check cosigns")
    ] = None,
    witness_name: Annotated[
        str, typer.Option(help="the witness's key name (the bus registry's by default)")
    ] = WITNESS_NAME,
    full: Annotated[bool, typer.Option("--full", help="also parse every record")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Verify the whole log against its signed checkpoints and say where it fails."""
    store = _open(store_url)
    try:
        key = _log_key(store, cert, ca)
        witnesses = []
        if witness_cert is not None:
            if not witness_name:
                raise ConfigInvalid("--witness-cert needs --witness-name")
            public = load_certificate(witness_cert).public_key()
            witnesses.append(NoteKey(witness_name, public, cosigner=True))  # type: ignore[arg-type]
        if checkpoint is not None:
            note: str | None = _read_text(checkpoint)
        elif witnesses:
            note = _newest_cosigned(store, key, witnesses)
        else:
            note = None
        started = time.perf_counter()
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f} records"),
            TimeRemainingColumn(),
            console=err,
            disable=quiet,
            transient=True,
        ) as progress:
            task = progress.add_task("verify", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = auditor.verify_store(
                store, key, checkpoint=note, witnesses=witnesses, parse=full, progress=report
            )
        took = time.perf_counter() - started
    finally:
        store.close()
    console.print(f"[green]verified[/]: {result.records:,} records in {took:.1f} s")
    root = base64.b64encode(result.root).decode()
    console.print(f"  root        {root} (base64, as in checkpoints)", highlight=False)
    if result.checkpoint is not None:
        console.print(
            f"  checkpoint  size {result.checkpoint.size:,}, signed by {key.name} "
            f"(key ID {key.key_id.hex()}); {result.checkpoints_checked} checkpoint(s) reproduced"
        )
    if result.cosigned_by:
        witnessed = result.checkpoint.size if result.checkpoint is not None else 0
        if checkpoint is None and note is not None:
            witnessed = Checkpoint.parse_text(parse_note(note).text).size
        console.print(
            f"  cosigned by {', '.join(result.cosigned_by)} at size {witnessed:,}"
            + (
                f" ([yellow]{result.records - witnessed:,} later record(s) not yet witnessed[/])"
                if result.records > witnessed
                else ""
            )
        )
    if result.uncovered:
        console.print(
            f"  [yellow]{result.uncovered:,} record(s) after the newest checkpoint are not yet "
            "covered by a signature[/]"
        )


@audit.command("prove")
def prove(
    request_id: Annotated[str, typer.Argument(help="the request id (govbus-request-id)")],
    store_url: StoreOpt,
    cert: CertOpt = None,
    ca: CaOpt = None,
    checkpoint: CheckpointOpt = None,
    out: Annotated[Path | None, typer.Option(help="write the proofs as JSON here")] = None,
) -> None:
    """Inclusion proofs of every record of a request, checked against the checkpoint."""
    store = _open(store_url)
    try:
        key = _log_key(store, cert, ca)
        parsed, note = _checkpoint(store, key, checkpoint)
        proofs = auditor.prove_request(store, request_id, parsed)
    finally:
        store.close()
    data = {"checkpoint": note, "records": [p.to_json() for p in proofs]}
    text = json.dumps(data, indent=1)
    if out is not None:
        out.write_text(text + "\n")
        console.print(f"{len(proofs)} proof(s) written to {out}")
    else:
        print(text)
    err.print(
        f"[green]included[/]: {len(proofs)} record(s) of {request_id} in the tree of size "
        f"{parsed.size:,} (root {parsed.root.hex()[:16]}…)"
    )


@audit.command("consistency")
def consistency(
    store_url: StoreOpt,
    old: Annotated[Path, typer.Option(help="an earlier signed checkpoint you hold")],
    new: Annotated[
        Path | None, typer.Option(help="a later one (default: the log's newest)")
    ] = None,
    cert: CertOpt = None,
    ca: CaOpt = None,
) -> None:
    """Prove that the log only grew between two checkpoints (no rewrite, no fork)."""
    store = _open(store_url)
    try:
        key = _log_key(store, cert, ca)
        first, _ = _checkpoint(store, key, old)
        second, _ = _checkpoint(store, key, new)
        if first.size > second.size:
            first, second = second, first
        proof = auditor.prove_consistency(store, first, second)
    finally:
        store.close()
    merkle.verify_consistency(first.size, second.size, proof, first.root, second.root)
    print(
        json.dumps(
            {"size1": first.size, "size2": second.size, "proof": [h.hex() for h in proof]},
            indent=1,
        )
    )
    err.print(f"[green]consistent[/]: size {first.size:,} → {second.size:,}")


def _when(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{text!r} is not a date or time (use 2026-01-31 or ISO 8601)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@audit.command("who-accessed")
def who_accessed(
    iin: Annotated[str, typer.Option("--iin", help="the person's IIN")],
    start: Annotated[str, typer.Option("--from", help="from (date or ISO time, UTC)")],
    end: Annotated[str, typer.Option("--to", help="to, exclusive")],
    store_url: StoreOpt,
    pseudonym_key: Annotated[Path, typer.Option(help="the deployment's pseudonym key file")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Who read a person's data: client, service, purpose, consent or legal basis, time."""
    pseudonymizer = Pseudonymizer(load_key_file(pseudonym_key))
    store = _open(store_url)
    try:
        rows = auditor.who_accessed(store, pseudonymizer, iin, _when(start), _when(end))
    finally:
        store.close()
    if as_json:
        for row in rows:
            print(
                json.dumps(
                    {
                        "index": row.index,
                        "time": row.time.isoformat(),
                        "client": row.client,
                        "initiator": row.initiator,
                        "service": row.service,
                        "method": row.method,
                        "purpose": row.purpose,
                        "justification": row.justification,
                        "decision": row.decision,
                        "server": row.server,
                        "hidden_until": row.hidden_until.isoformat() if row.hidden_until else None,
                    }
                )
            )
        return
    table = Table(
        "time (UTC)", "client", "initiator", "service", "purpose", "consent / basis", "decision"
    )
    for row in rows:
        hidden = (
            f" [yellow](hidden until {row.hidden_until:%Y-%m-%d})[/]" if row.hidden_until else ""
        )
        table.add_row(
            f"{row.time:%Y-%m-%d %H:%M:%S}",
            row.client,
            row.initiator,
            row.service,
            row.purpose,
            row.justification + hidden,
            row.decision,
        )
    console.print(table)
    console.print(f"{len(rows)} record(s)")


@audit.command("export")
def export(
    request_ids: Annotated[list[str] | None, typer.Argument(help="request ids to export")],
    store_url: StoreOpt,
    out: Annotated[Path, typer.Option(help="new folder for the bundle")],
    data_key: Annotated[Path, typer.Option(help="the log's data key file (opens headers)")],
    ca: Annotated[Path, typer.Option("--ca", help="the bus CA certificate")],
    cert: CertOpt = None,
    index: Annotated[list[int] | None, typer.Option(help="record index (repeatable)")] = None,
    checkpoint: CheckpointOpt = None,
    signer_cert: Annotated[
        list[Path] | None, typer.Option(help="extra envelope signer certificates (repeatable)")
    ] = None,
) -> None:
    """Write an evidence bundle that verifies with plain openssl (see its verify.sh)."""
    from audit_log.evidence import export_bundle

    cipher = RecordCipher(load_key_file(data_key))
    store = _open(store_url)
    try:
        certificate = _log_certificate(store, cert, ca)
        note = _read_text(checkpoint) if checkpoint is not None else None
        exported = export_bundle(
            store,
            out,
            request_ids=request_ids or [],
            indexes=index or [],
            cipher=cipher,
            ca_certificate=load_certificate(ca),
            log_certificate=certificate,
            origin=_origin(store),
            checkpoint=note,
            certificates=[load_certificate(p) for p in signer_cert or []],
        )
    finally:
        store.close()
    console.print(
        f"[green]exported[/] {len(exported)} record(s) to {out}; check with: sh {out}/verify.sh"
    )


@audit.command("verify-bundle")
def verify_bundle(
    folder: Annotated[Path, typer.Argument(help="an evidence bundle")],
) -> None:
    """Check an evidence bundle with the govbus verifier (the same checks as verify.sh)."""
    manifest = json.loads(_read_text(folder / "manifest.json"))
    log_cert = load_certificate(folder / "log-signer.cert.pem")
    anchor = TrustAnchor([load_certificate(folder / "ca.cert.pem")])
    anchor.validate(log_cert, role=Role.SIGNING, at=log_cert.not_valid_before_utc)
    key = NoteKey(manifest["origin"], log_cert.public_key())  # type: ignore[arg-type]
    parsed, note, _ = verify_checkpoint(_read_text(folder / "checkpoint.txt"), key)
    if (folder / "checkpoint.body").read_bytes() != note.text.encode():
        raise InvalidRequest("checkpoint.body is not the text of checkpoint.txt")
    bare = (folder / "checkpoint.sig").read_bytes()
    if not any(s.signature == bare for s in note.signatures if key.matches(s)):
        raise InvalidRequest("checkpoint.sig is not the log's signature in checkpoint.txt")
    for entry in manifest["records"]:
        base = folder / "records" / f"{entry['index']:012d}"
        inclusion = json.loads(_read_text(base / "inclusion.json"))
        leaf = (base / "record.bin").read_bytes()
        record = parse_leaf(leaf, entry["index"])
        steps = _read_text(base / "proof" / "steps").split()
        proof = [(base / "proof" / name).read_bytes() for name in steps[1::2]]
        if [h.hex() for h in proof] != inclusion["proof"]:
            raise InvalidRequest(f"record {entry['index']}: proof files and inclusion.json differ")
        merkle.verify_inclusion(entry["index"], parsed.size, leaf_hash(leaf), proof, parsed.root)
        signer = load_certificate(base / "signer.cert.pem")
        anchor.validate(signer, role=Role.SIGNING, at=signer.not_valid_before_utc)
        header = (base / "header.bin").read_bytes()
        if (base / "signature.der").read_bytes() != record.signature.value:
            raise InvalidRequest(f"record {entry['index']}: signature.der is not the record's")
        if hashlib.sha256(header).digest() != record.message_hash:
            raise InvalidRequest(f"record {entry['index']}: header.bin is not the header it names")
        verifier = PublicKeyVerifier(signer.public_key())  # type: ignore[arg-type]
        verifier.verify_bytes(record.signature.value, header)
    console.print(
        f"[green]bundle verified[/]: {len(manifest['records'])} record(s), "
        f"checkpoint size {parsed.size:,}"
    )


@audit.command("checkpoint")
def checkpoint_cmd(
    store_url: StoreOpt,
    sign: Annotated[
        bool, typer.Option("--sign", help="issue a new checkpoint (needs --key)")
    ] = False,
    key: Annotated[Path | None, typer.Option(help="the log's encrypted signing key (PEM)")] = None,
    cert: CertOpt = None,
    passphrase_file: Annotated[Path | None, typer.Option(help="key passphrase file")] = None,
) -> None:
    """Print the log's newest signed checkpoint (with cosignatures); --sign issues one."""
    if sign:
        import asyncio

        from audit_log.log import open_log
        from govbus.crypto.keys import KeySigner, load_private_key, passphrase_from_env
        from govbus.crypto.pki import cert_fingerprint

        if key is None or cert is None:
            raise ConfigInvalid("--sign needs --key and --cert")
        certificate = load_certificate(cert)
        private = load_private_key(key, passphrase_from_env(passphrase_file))
        signer = KeySigner(private, cert_fingerprint(certificate))
        probe = _open(store_url)
        try:
            origin = _origin(probe)
        finally:
            probe.close()

        async def issue() -> str:
            log = await open_log(store_url, signer=signer, origin=origin, certificate=certificate)
            try:
                return (await log.checkpoint()).note
            finally:
                await log.close()

        print(asyncio.run(issue()), end="")
        return
    store = _open(store_url)
    try:
        stored = store.checkpoints()
        if not stored:
            raise NotFound("the log has issued no checkpoint yet")
        latest = stored[-1]
        lines = "".join(c.line for c in store.cosignatures(latest.size))
    finally:
        store.close()
    print(latest.note + lines, end="")


@audit.command("witnessed")
def witnessed(
    registry: Annotated[str, typer.Option(help="the registry's public address (host:port)")],
    ca: Annotated[Path, typer.Option("--ca", help="CA certificate of the registry's TLS")],
    origin: Annotated[str, typer.Option(help="the log's origin: govbus/<server id>")] = "",
    store_url: Annotated[
        str | None, typer.Option("--store", help="take the origin from this log's store")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the checkpoint here")] = None,
) -> None:
    """Fetch the newest checkpoint the registry's witness co-signed for a log: the history
    the log has committed to. `verify --checkpoint` it against a copy of the log."""
    import asyncio

    import grpc

    from audit_log.witness import get_witnessed
    from govbus.crypto.keys import atomic_write

    if store_url is not None:
        store = _open(store_url)
        try:
            origin = origin or _origin(store)
        finally:
            store.close()
    if not origin:
        raise ConfigInvalid("name the log with --origin govbus/<server id> or --store")
    try:
        ca_pem = ca.read_bytes()
    except OSError as exc:
        raise ConfigInvalid(f"cannot read {ca}: {exc.strerror}") from None

    async def fetch() -> str:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        async with grpc.aio.secure_channel(registry, credentials) as channel:
            return await get_witnessed(channel, origin)

    note = asyncio.run(fetch())
    if not note:
        raise NotFound(f"the witness has co-signed no checkpoint of log {origin!r} yet")
    if out is not None:
        atomic_write(out, note.encode())
        err.print(f"witnessed checkpoint of {origin} written to {out}")
    else:
        print(note, end="")


@audit.command("keygen")
def keygen(out: Annotated[Path, typer.Argument(help="where to write the new 32-byte key")]) -> None:
    """Create a pseudonym or data key file (32 random bytes, mode 0600)."""
    generate_key_file(out)
    console.print(f"key written to {out} (keep it outside the database; back it up)")
