"""Regression: a damaged signer certificate inside a global configuration must be
refused with a vocabulary error, never escape as a cryptography exception.

Found while building the registry: one flipped bit in the certificate's version
field raised `x509.InvalidVersion`, one in its issuer name a bare `ValueError`
(cryptography parses names lazily), one in its serial a deprecation warning.
"""

from __future__ import annotations

import time
import warnings

from google.protobuf import timestamp_pb2

from govbus.crypto.pki import CertificateAuthority, Role, certificate_der
from govbus.errors import CertificateInvalid, GlobalConfInvalid
from govbus.globalconf import sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2


def test_regression_every_bit_flip_in_signer_certificate_is_a_vocabulary_error(
    ca: CertificateAuthority,
) -> None:
    key = ca.issue_key(Role.REGISTRY, "registry")
    der = certificate_der(key.certificate)
    conf = globalconf_pb2.GlobalConf(version=1, instance="KZ")
    conf.expires_at.CopyFrom(timestamp_pb2.Timestamp(seconds=int(time.time()) + 600))
    raw = sign_global_conf(conf, key.signer(), der)
    start = raw.index(der)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for position in range(start, start + len(der)):
            for bit in (0x01, 0x80):
                damaged = bytearray(raw)
                damaged[position] ^= bit
                try:
                    verify_global_conf(bytes(damaged), [ca.certificate])
                except GlobalConfInvalid:
                    continue
                raise AssertionError(f"damaged byte {position - start} was accepted")


def test_regression_damaged_certificate_bytes_raise_certificate_invalid(
    ca: CertificateAuthority,
) -> None:
    der = certificate_der(ca.issue_key(Role.ADMIN, "operator").certificate)
    anchor = ca.trust_anchor()
    refused = 0
    for position in range(len(der)):
        damaged = bytearray(der)
        damaged[position] ^= 0x80
        try:
            anchor.validate(bytes(damaged), role=Role.ADMIN)
        except CertificateInvalid:
            refused += 1
    # Every byte of a certificate is covered by the CA's signature or its structure.
    assert refused == len(der)
