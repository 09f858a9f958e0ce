"""What the consent check adds to an exchange.

Measures `ConsentVerifier.check` on the provider's path — a fresh `ExchangeFacts`
and fresh artefact bytes per request, as a security server gets them from a
signed header — with a warm signature cache, and compares it with baselines
measured in the same run: a bare dict lookup of the artefact bytes (the least
any cache can cost), the same check with the cache emptied before every call
(one ECDSA P-256 verification and certificate check), a legal-basis check, and
one unary gRPC call over loopback. Target: under 0.2 ms per exchange, warm.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from consent.artefact import sign_consent
from consent.trust import ConsentServiceKey
from consent.verifier import ConsentVerifier, ExchangeFacts, RevocationState
from govbus.crypto.pki import CertificateAuthority, Role, certificate_der
from govbus.globalconf import GlobalConfView, sign_global_conf, verify_global_conf
from govbus.pb.govbus.v1 import consent_pb2, globalconf_pb2, usage_pb2

__all__ = ["main"]

TARGET_US = 200.0
CLIENT = "KZ/GOV/990140000017/con"
SERVICE = "KZ/GOV/040340123459/gbdfl/person/v1"
CASES = "KZ/GOV/040340123459/gbdfl/cases/v1"
SUBJECT = "900517400015"
PURPOSE = "birth-registration"


def _per_op_us(run: Callable[[int], None], ops: int, rounds: int = 5) -> float:
    """Median over `rounds` of the mean time per operation, in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        run(ops)
        results.append((time.perf_counter_ns() - started) / ops / 1000)
    return statistics.median(results)


async def _grpc_call_us(calls: int) -> float:
    """Mean time of one unary call to an echo server on loopback (same process)."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/bench.Echo/Echo")
            for _ in range(50):
                await call(b"x" * 200)
            started = time.perf_counter_ns()
            for _ in range(calls):
                await call(b"x" * 200)
            return (time.perf_counter_ns() - started) / calls / 1000
    finally:
        await server.stop(None)


def _bus(directory: Path) -> tuple[GlobalConfView, bytes, int]:
    """A CA, a consent service key, a signed configuration and one signed artefact."""
    ca = CertificateAuthority.init(directory / "pki", b"bench-passphrase")
    consent = ca.issue_key(Role.CONSENT, "consent-service")
    registry = ca.issue_key(Role.REGISTRY, "registry")
    now_ms = int(time.time() * 1000)
    conf = globalconf_pb2.GlobalConf(version=1, instance="KZ")
    conf.generated_at.FromMilliseconds(now_ms)
    conf.expires_at.FromMilliseconds(now_ms + 3_600_000)
    conf.services.add(
        id=SERVICE, personal_data=True, consent_policy=globalconf_pb2.CONSENT_REQUIRED
    )
    conf.services.add(
        id=CASES, personal_data=True, consent_policy=globalconf_pb2.CONSENT_OR_LEGAL_BASIS
    )
    basis = conf.legal_bases.add(
        id="lb-1", client=CLIENT, service=CASES, law_reference="Criminal Procedure Code art. 199"
    )
    basis.valid_until.FromMilliseconds(now_ms + 86_400_000)
    raw_conf = sign_global_conf(conf, registry.signer(), certificate_der(registry.certificate))
    view = verify_global_conf(raw_conf, [ca.certificate])
    artefact = consent_pb2.ConsentArtefact(
        id="c-bench",
        subject=SUBJECT,
        grantee=CLIENT,
        scopes=[consent_pb2.ServiceScope(service=SERVICE)],
        purpose_code=PURPOSE,
        purpose_text="bench",
        mode=consent_pb2.CONSENT_MODE_VIEW,
        not_before_ms=now_ms - 1000,
        expires_at_ms=now_ms + 86_400_000,
        evidence=consent_pb2.ConsentEvidence(method=usage_pb2.CONSENT_METHOD_OTP),
        issued_at_ms=now_ms - 1000,
    )
    key = ConsentServiceKey(consent.signer(), certificate_der(consent.certificate), "consent")
    return view, sign_consent(artefact.SerializeToString(deterministic=True), key), now_ms


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-consent-") as scratch:
        view, raw, now_ms = _bus(Path(scratch))
    state = RevocationState(frozenset(f"revoked-{n}" for n in range(10_000)), 10_000, now_ms)
    # A security server gets new bytes objects for every request (parsed from a header).
    copies = [bytes(bytearray(raw)) for _ in range(1000)]

    def facts(artefact: bytes) -> ExchangeFacts:
        return ExchangeFacts(
            client=CLIENT,
            service=SERVICE,
            method="/kz.gov.gbdfl.v1.PersonRegistry/Get",
            subject=SUBJECT,
            purpose=PURPOSE,
            consent_artefact=artefact,
            now_ms=now_ms,
        )

    warm = ConsentVerifier()
    warm.check(view, facts(raw), state)

    def warm_checks(ops: int) -> None:
        for n in range(ops):
            warm.check(view, facts(copies[n % 1000]), state)

    table = {raw: "parsed"}

    def dict_lookups(ops: int) -> None:
        for n in range(ops):
            _ = ExchangeFacts(client=CLIENT, service=SERVICE, consent_artefact=copies[n % 1000])
            table.get(copies[n % 1000])

    cold = ConsentVerifier()

    def cold_checks(ops: int) -> None:
        for _ in range(ops):
            cold.clear_cache()
            cold.check(view, facts(raw), state)

    legal = ConsentVerifier()
    legal_facts = ExchangeFacts(
        client=CLIENT, service=CASES, subject=SUBJECT, legal_basis_id="lb-1", now_ms=now_ms
    )

    def legal_checks(ops: int) -> None:
        for _ in range(ops):
            legal.check(view, legal_facts, state)

    warm_us = _per_op_us(warm_checks, 20_000)
    dict_us = _per_op_us(dict_lookups, 20_000)
    cold_us = _per_op_us(cold_checks, 300)
    legal_us = _per_op_us(legal_checks, 20_000)
    grpc_us = asyncio.run(_grpc_call_us(1000))
    verdict = "meets" if warm_us < TARGET_US else "MISSES"
    print("consent check per exchange (ECDSA P-256 artefact, 10,000 revocations in the feed)")
    print(f"  warm check          {warm_us:8.2f} us/op   {verdict} the {TARGET_US:.0f} us target")
    print(
        f"  dict lookup         {dict_us:8.2f} us/op   (baseline: warm check = "
        f"{warm_us / dict_us:.1f}x a bare cache lookup)"
    )
    print(
        f"  uncached check      {cold_us:8.2f} us/op   (the signature cache saves "
        f"{cold_us / warm_us:.0f}x)"
    )
    print(f"  legal basis check   {legal_us:8.2f} us/op")
    print(
        f"  loopback gRPC call  {grpc_us:8.2f} us/op   (a warm consent check adds "
        f"{100 * warm_us / grpc_us:.1f} % of one call)"
    )


if __name__ == "__main__":
    main()
