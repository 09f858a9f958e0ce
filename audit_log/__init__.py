"""govbus audit log: an append-only RFC 6962 Merkle log per security server.

The security server's API:

    log = await audit_log.open_log(url, signer=signer, origin=origin, cipher=cipher)
    index = await log.append(record, header=header_bytes)   # returns once durable
    checkpoint = await log.checkpoint()                      # C2SP signed note
    await log.close()

Modules: `merkle` (pure proof verification), `tree` (proof building), `note`
(signed notes, checkpoints, cosignatures), `keys` (pseudonym and data keys),
`store`/`store_sql`/`store_sqlite`/`store_postgres` (storage), `log` (group-committed
appends), `witness` (the co-signing witness), `bus_witness` (the witness as the
registry hosts it and security servers reach it), `auditor` and
`evidence` (the auditor's tools), `cli` (`govbus audit …`).
"""

from audit_log.keys import Pseudonymizer, RecordCipher, generate_key_file, load_key_file
from audit_log.log import AuditLog, LoggedRecord, SignedCheckpoint, open_log
from audit_log.merkle import root, verify_consistency, verify_inclusion
from audit_log.note import NoteKey
from audit_log.tree import ConsistencyProof, InclusionProof

__all__ = [
    "AuditLog",
    "ConsistencyProof",
    "InclusionProof",
    "LoggedRecord",
    "NoteKey",
    "Pseudonymizer",
    "RecordCipher",
    "SignedCheckpoint",
    "generate_key_file",
    "load_key_file",
    "open_log",
    "root",
    "verify_consistency",
    "verify_inclusion",
]
