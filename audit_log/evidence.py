"""Evidence bundles: a folder an auditor hands to anyone, checkable with plain openssl.

For each exported record the bundle holds the record (binary leaf and a JSON
view), its inclusion proof as a list of left/right steps, the decrypted signed
envelope header, the envelope signature, the signer's certificate, and the CA
certificate; once for the bundle, the checkpoint the proofs lead to (the full
signed note, the signed text and the bare signature) and the log's signing
certificate. `verify.sh` re-checks all of it with `openssl` and POSIX tools
only: certificate chains, the checkpoint signature, each header signature, that
each header is the one its record names, and that each record hashes up to the
checkpoint's root.

The exporter checks everything itself before writing, so it never produces a
bundle that would not verify. A bundle contains decrypted headers, which name
the subject (IIN): it is personal data and must be handled as such.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from google.protobuf import json_format

from audit_log import merkle
from audit_log.keys import RecordCipher
from audit_log.note import Checkpoint, NoteKey, parse_note, verify_checkpoint
from audit_log.records import parse_leaf
from audit_log.store import LogStore
from audit_log.tree import inclusion_proof
from govbus.crypto.keys import Algorithm, PublicKeyVerifier, atomic_write
from govbus.crypto.pki import (
    Role,
    TrustAnchor,
    cert_fingerprint,
    certificate_pem,
    load_certificate,
)
from govbus.errors import AuditLogCorrupt, ConfigInvalid, NotFound, SignatureInvalid
from govbus.pb.govbus.v1 import envelope_pb2, signature_pb2

__all__ = ["ExportedRecord", "export_bundle", "proof_steps"]

# Protobuf tag and length of ExchangeRecord.message_hash (field 24, 32 bytes).
_MESSAGE_HASH_PREFIX = b"\xc2\x01\x20"


@dataclass(frozen=True, slots=True)
class ExportedRecord:
    index: int
    request_id: str
    folder: Path


def proof_steps(index: int, size: int, count: int) -> list[str]:
    """For each proof hash, whether it goes on the Left or the Right of the running hash
    (RFC 9162 §2.1.3.2, the same walk `merkle.verify_inclusion` makes)."""
    fn, sn = index, size - 1
    steps = []
    for _ in range(count):
        if fn & 1 or fn == sn:
            steps.append("L")
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            steps.append("R")
        fn >>= 1
        sn >>= 1
    return steps


def _trusted(anchor: TrustAnchor, cert: x509.Certificate, what: str) -> None:
    # Evidence outlives certificates: check the chain and role as of the start of validity.
    anchor.validate(cert, role=Role.SIGNING, at=cert.not_valid_before_utc)
    del what


def _verify_command(algorithm: int, pub: str, sig: str, data: str) -> str:
    if algorithm == signature_pb2.ED25519:
        return f"openssl pkeyutl -verify -pubin -inkey {pub} -rawin -in {data} -sigfile {sig}"
    return f"openssl dgst -sha256 -verify {pub} -signature {sig} {data}"


def export_bundle(
    store: LogStore,
    out: Path,
    *,
    request_ids: Sequence[str] = (),
    indexes: Sequence[int] = (),
    cipher: RecordCipher,
    ca_certificate: x509.Certificate,
    log_certificate: x509.Certificate,
    origin: str,
    checkpoint: str | None = None,
    certificates: Sequence[x509.Certificate] = (),
) -> list[ExportedRecord]:
    """Write an evidence bundle for the given records into `out` (which must not exist)."""
    if out.exists():
        raise ConfigInvalid(f"{out} already exists; give a new folder for the bundle")
    anchor = TrustAnchor([ca_certificate])
    _trusted(anchor, log_certificate, "log signer")
    log_key = NoteKey(origin, log_certificate.public_key())  # type: ignore[arg-type]
    if checkpoint is None:
        stored = store.checkpoints()
        if not stored:
            raise NotFound("the log has issued no checkpoint yet: run `govbus audit checkpoint`")
        checkpoint = stored[-1].note
    parsed, note, _ = verify_checkpoint(checkpoint, log_key)
    wanted: dict[int, bytes] = {}
    for request_id in request_ids:
        rows = store.find_by_request(request_id)
        if not rows:
            raise NotFound(f"no record of request {request_id!r} in the log")
        wanted.update(rows)
    if indexes:
        wanted.update(store.records(list(indexes)))
        missing = set(indexes) - set(wanted)
        if missing:
            raise NotFound(f"no record at index {min(missing)}")
    if not wanted:
        raise ConfigInvalid("name at least one request id or record index to export")
    late = [i for i in wanted if i >= parsed.size]
    if late:
        raise ConfigInvalid(
            f"record {min(late)} is newer than the checkpoint (size {parsed.size}); "
            "issue a new checkpoint first"
        )
    extra = {cert_fingerprint(c): c for c in certificates}
    out.mkdir(parents=True)
    _write_checkpoint(out, checkpoint, note.text, log_key, parsed)
    atomic_write(out / "ca.cert.pem", certificate_pem(ca_certificate))
    atomic_write(out / "log-signer.cert.pem", certificate_pem(log_certificate))
    exported = []
    script: list[str] = []
    for index in sorted(wanted):
        folder = out / "records" / f"{index:012d}"
        record_id = _export_record(
            store, folder, index, wanted[index], parsed, cipher, anchor, extra, script
        )
        exported.append(ExportedRecord(index, record_id, folder))
    _write_scripts(out, exported, script, parsed)
    manifest = {
        "origin": parsed.origin,
        "checkpoint_size": parsed.size,
        "checkpoint_root": base64.b64encode(parsed.root).decode(),
        "records": [{"index": e.index, "request_id": e.request_id} for e in exported],
    }
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    return exported


def _write_checkpoint(
    out: Path, note_text: str, body: str, log_key: NoteKey, checkpoint: Checkpoint
) -> None:
    signature = next(s for s in parse_note(note_text).signatures if log_key.matches(s))
    atomic_write(out / "checkpoint.txt", note_text.encode())
    atomic_write(out / "checkpoint.body", body.encode())
    atomic_write(out / "checkpoint.sig", signature.signature)
    del checkpoint


def _export_record(
    store: LogStore,
    folder: Path,
    index: int,
    leaf: bytes,
    checkpoint: Checkpoint,
    cipher: RecordCipher,
    anchor: TrustAnchor,
    extra: dict[bytes, x509.Certificate],
    script: list[str],
) -> str:
    record = parse_leaf(leaf, index)
    digest = hashlib.sha256(b"\x00" + leaf).digest()
    proof = inclusion_proof(store, index, checkpoint.size)
    merkle.verify_inclusion(index, checkpoint.size, digest, proof.hashes, checkpoint.root)
    if not record.header_ciphertext:
        raise AuditLogCorrupt(f"record {index} holds no sealed header to export")
    header = cipher.open(record.header_ciphertext, record.message_hash)
    if hashlib.sha256(header).digest() != record.message_hash:
        raise AuditLogCorrupt(f"record {index}: the sealed header is not the one it names")
    der = store.certificate(record.signer_certificate_sha256)
    cert = load_certificate(der) if der is not None else extra.get(record.signer_certificate_sha256)
    if cert is None:
        raise NotFound(
            f"record {index}: signer certificate sha256:{record.signer_certificate_sha256.hex()} "
            "is neither in the log nor given with --cert"
        )
    _trusted(anchor, cert, f"record {index} signer")
    verifier = PublicKeyVerifier(cert.public_key())  # type: ignore[arg-type]
    try:
        verifier.verify_bytes(record.signature.value, header)
    except SignatureInvalid:
        raise SignatureInvalid(f"record {index}: the envelope signature does not verify") from None
    if Algorithm.of(cert.public_key()).value != record.signature.algorithm:  # type: ignore[arg-type]
        raise SignatureInvalid(f"record {index}: signature algorithm does not match the key")
    (folder / "proof").mkdir(parents=True)
    atomic_write(folder / "record.bin", leaf)
    view = json_format.MessageToDict(record, preserving_proto_field_name=True)
    atomic_write(folder / "record.json", json.dumps(view, indent=1).encode())
    atomic_write(folder / "header.bin", header)
    parsed_header = envelope_pb2.Header.FromString(header)
    header_view = json_format.MessageToDict(parsed_header, preserving_proto_field_name=True)
    atomic_write(folder / "header.json", json.dumps(header_view, indent=1).encode())
    atomic_write(folder / "message_hash.bin", record.message_hash)
    atomic_write(folder / "signature.der", record.signature.value)
    atomic_write(folder / "signer.cert.pem", certificate_pem(cert))
    steps = proof_steps(index, checkpoint.size, len(proof.hashes))
    lines = []
    for n, (value, side) in enumerate(zip(proof.hashes, steps, strict=True)):
        atomic_write(folder / "proof" / f"{n:02d}.bin", value)
        lines.append(f"{side} {n:02d}.bin\n")
    atomic_write(folder / "proof" / "steps", "".join(lines).encode())
    inclusion = {
        "index": index,
        "size": checkpoint.size,
        "leaf_hash": digest.hex(),
        "proof": [h.hex() for h in proof.hashes],
        "steps": steps,
        "root": checkpoint.root.hex(),
    }
    atomic_write(folder / "inclusion.json", json.dumps(inclusion, indent=1).encode())
    rel = folder.relative_to(folder.parent.parent)
    script.append(
        _verify_command(
            record.signature.algorithm,
            shlex.quote(f"{rel}/signer.pub.pem"),
            shlex.quote(f"{rel}/signature.der"),
            shlex.quote(f"{rel}/header.bin"),
        )
    )
    return record.request_id


_HEADER = """#!/bin/sh
# Checks this govbus evidence bundle with openssl and POSIX tools only.
# Exit status 0: every certificate, signature and inclusion proof holds.
set -eu
cd "$(dirname "$0")"
fail() { echo "FAILED: $*" >&2; exit 1; }
hexof() { od -An -tx1 -v "$1" | tr -d '\\n'; }

echo "== log signer certificate and checkpoint signature"
openssl verify -CAfile ca.cert.pem log-signer.cert.pem || fail "log signer certificate"
openssl x509 -in log-signer.cert.pem -pubkey -noout > log-signer.pub.pem
{checkpoint_command} || fail "checkpoint signature"
sed -n 3p checkpoint.body | openssl base64 -d -A > root.bin
[ "$(wc -c < root.bin)" -eq 32 ] || fail "checkpoint root"
"""

_RECORD = """
echo "== record {index}"
d={folder}
openssl verify -CAfile ca.cert.pem "$d/signer.cert.pem" || fail "record {index} certificate"
openssl x509 -in "$d/signer.cert.pem" -pubkey -noout > "$d/signer.pub.pem"
{command} || fail "record {index} envelope signature"
openssl dgst -sha256 -binary "$d/header.bin" | cmp -s - "$d/message_hash.bin" \\
    || fail "record {index}: header.bin is not the header the record names"
{{ printf '\\302\\001\\040'; cat "$d/message_hash.bin"; }} > "$d/.needle"
case "$(hexof "$d/record.bin")" in
    *"$(hexof "$d/.needle")"*) ;;
    *) fail "record {index}: record.bin does not name this header" ;;
esac
{{ printf '\\000'; cat "$d/record.bin"; }} | openssl dgst -sha256 -binary > "$d/.hash"
while read -r side file; do
    p="$d/proof/$file"
    if [ "$side" = L ]; then
        {{ printf '\\001'; cat "$p" "$d/.hash"; }} | openssl dgst -sha256 -binary > "$d/.next"
    else
        {{ printf '\\001'; cat "$d/.hash" "$p"; }} | openssl dgst -sha256 -binary > "$d/.next"
    fi
    mv "$d/.next" "$d/.hash"
done < "$d/proof/steps"
cmp -s "$d/.hash" root.bin || fail "record {index} is not in the checkpoint's tree"
"""


def _write_scripts(
    out: Path, exported: list[ExportedRecord], commands: list[str], checkpoint: Checkpoint
) -> None:
    algorithm = "ecdsa"
    pem = (out / "log-signer.cert.pem").read_bytes()
    if Algorithm.of(load_certificate(pem).public_key()) is Algorithm.ED25519:  # type: ignore[arg-type]
        algorithm = "ed25519"
    checkpoint_command = _verify_command(
        signature_pb2.ED25519 if algorithm == "ed25519" else signature_pb2.ECDSA_P256_SHA256,
        "log-signer.pub.pem",
        "checkpoint.sig",
        "checkpoint.body",
    )
    text = _HEADER.replace("{checkpoint_command}", checkpoint_command)
    for item, command in zip(exported, commands, strict=True):
        rel = shlex.quote(str(item.folder.relative_to(out)))
        text += _RECORD.format(
            index=item.index, folder=rel, command=command.replace(str(rel), '"$d"')
        )
    text += '\necho "OK: all signatures, certificates and inclusion proofs hold"\n'
    atomic_write(out / "verify.sh", text.encode(), 0o755)
    readme = f"""# govbus evidence bundle

Log `{checkpoint.origin}`, checkpoint at size {checkpoint.size}, {len(exported)} record(s).
Run `sh verify.sh`; it prints OK and exits 0 only if everything below holds.
It contains decrypted envelope headers that name the data subject: personal data.

Files: `checkpoint.txt` (the C2SP signed note), `checkpoint.body` (the signed text),
`checkpoint.sig` (the log's signature: DER ECDSA-SHA256 or raw Ed25519),
`log-signer.cert.pem`, `ca.cert.pem`; per record in `records/<index>/`: `record.bin`
(the exact leaf), `record.json`, `header.bin` (the signed envelope header),
`header.json`, `signature.der`, `signer.cert.pem`, `message_hash.bin`,
`inclusion.json` and `proof/` (one hash per step, `steps` says on which side).

The commands, by hand:

```sh
openssl verify -CAfile ca.cert.pem log-signer.cert.pem
openssl x509 -in log-signer.cert.pem -pubkey -noout > log-signer.pub.pem
{checkpoint_command}
# per record (d=records/<index>):
openssl verify -CAfile ca.cert.pem $d/signer.cert.pem
openssl x509 -in $d/signer.cert.pem -pubkey -noout > $d/signer.pub.pem
openssl dgst -sha256 -verify $d/signer.pub.pem -signature $d/signature.der $d/header.bin
openssl dgst -sha256 -binary $d/header.bin | cmp - $d/message_hash.bin
# leaf hash, then one step per line of $d/proof/steps:
#   L: SHA-256(0x01 || proof || hash)   R: SHA-256(0x01 || hash || proof)
(printf '\\000'; cat $d/record.bin) | openssl dgst -sha256 -binary > hash.bin
# ... and the result must equal the base64 root on line 3 of checkpoint.body.
```

`govbus audit verify-bundle <folder>` checks the same with the govbus verifier.
"""
    atomic_write(out / "README.md", readme.encode())
