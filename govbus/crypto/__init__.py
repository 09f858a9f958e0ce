"""Keys, signatures and the PKI of govbus.

- `keys`: `Signer` / `Verifier` interfaces, ECDSA P-256 (default) and Ed25519,
  private keys encrypted at rest.
- `pki`: the certificate authority the registry runs, certificate profiles,
  chain validation against a trust anchor and revocation by serial.
"""

from govbus.crypto.keys import (
    Algorithm,
    KeySigner,
    PublicKeyVerifier,
    Signer,
    Verifier,
    generate_key,
    load_private_key,
    passphrase_from_env,
    save_private_key,
)
from govbus.crypto.pki import (
    CertificateAuthority,
    Identity,
    Role,
    TrustAnchor,
    cert_fingerprint,
    load_certificate,
)

__all__ = [
    "Algorithm",
    "CertificateAuthority",
    "Identity",
    "KeySigner",
    "PublicKeyVerifier",
    "Role",
    "Signer",
    "TrustAnchor",
    "Verifier",
    "cert_fingerprint",
    "generate_key",
    "load_certificate",
    "load_private_key",
    "passphrase_from_env",
    "save_private_key",
]
