"""Who is calling the admin port: the peer certificate, checked against the CA.

The admin listener already demands a client certificate chained to the
registry CA during the TLS handshake; here the certificate is read back from
the call's auth context and validated again with the revocations in force
(TLS knows nothing of them) and the role `admin` (a security server's TLS
certificate chains to the same CA but is not an administrator). Every failure
is `ACCESS_DENIED`, saying why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from govbus.crypto.pki import Role, TrustAnchor, load_certificate
from govbus.errors import AccessDenied, GovbusError, Origin
from registry.rules import Caller

__all__ = ["identify"]

_PEER_CERT = "x509_pem_cert"


def identify(auth_context: Mapping[str, Sequence[bytes]], anchor: TrustAnchor) -> Caller:
    """The administrator behind a call, or `AccessDenied`."""
    pems = auth_context.get(_PEER_CERT) or ()
    if not pems:
        raise AccessDenied(
            "the registry admin API needs an admin client certificate (anonymous caller)",
            origin=Origin.REGISTRY,
        )
    try:
        identity = anchor.validate(load_certificate(bytes(pems[0])), role=Role.ADMIN)
    except GovbusError as exc:
        raise AccessDenied(
            f"admin certificate refused: {exc.code}: {exc.message}", origin=Origin.REGISTRY
        ) from None
    return Caller.from_certificate_name(identity.name, identity.serial)
