"""The consent check a provider security server runs on every exchange.

`ConsentVerifier.decide` takes values only — the global configuration view in
force, the facts of one request and the current `RevocationState` snapshot —
and returns a `ConsentDecision`: allowed or not, under which justification
(consent, legal basis, not personal data, or a stale feed the service lets
through), with the ids and law reference the audit record needs and, when
refused, the precise govbus error. `check` is the same but raises.

It never does I/O and never waits on the consent service: revocations arrive
through the feed follower (`consent.feed`), which swaps in a new snapshot; the
verifier only reads it. The one piece of state it keeps is a cache of verified
artefact signatures keyed by the exact signed bytes, so a warm check costs a
dictionary lookup and a few comparisons. The cache never skips the checks that
change with time: revocation, validity window, signer certificate revocation
and expiry, and feed staleness are evaluated on every call.

Order of checks for a consent (the first failure is the answer): artefact
present → signature and signer certificate → id matches the header → subject →
grantee → service → purpose → revoked → validity window → feed staleness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from consent.artefact import ParsedConsent, verify_signed_consent
from consent.trust import ms_to_datetime
from govbus.crypto.pki import TrustAnchor, cert_fingerprint
from govbus.errors import (
    CertificateExpired,
    CertificateRevoked,
    ConsentExpired,
    ConsentInvalid,
    ConsentNotYetValid,
    ConsentRequired,
    ConsentRevoked,
    ConsentScope,
    ConsentStatusStale,
    GovbusError,
    InvalidRequest,
    LegalBasisInvalid,
)
from govbus.globalconf import GlobalConfView
from govbus.ids import Iin
from govbus.pb.govbus.v1 import audit_pb2, globalconf_pb2

__all__ = [
    "DEFAULT_STALENESS_MS",
    "ConsentDecision",
    "ConsentVerifier",
    "ExchangeFacts",
    "RevocationState",
    "effective_policy",
]

#: How old the local copy of the revocation feed may be before a service's
#: stale-feed policy decides (the bound on how long a revocation can go unseen).
DEFAULT_STALENESS_MS = 5_000

_NOT_PERSONAL = audit_pb2.JUSTIFICATION_NOT_PERSONAL
_CONSENT = audit_pb2.JUSTIFICATION_CONSENT
_LEGAL = audit_pb2.JUSTIFICATION_LEGAL_BASIS
_NONE = audit_pb2.JUSTIFICATION_NONE
_STALE_OPEN = audit_pb2.JUSTIFICATION_STALE_FEED_OPEN


@dataclass(frozen=True, slots=True)
class RevocationState:
    """An immutable snapshot of the revocation feed as one provider knows it."""

    revoked: frozenset[str] = frozenset()
    seq: int = 0  # the last feed sequence number applied
    #: local unix ms of the last poll that reached the head of the feed; 0 = never
    updated_at_ms: int = 0

    def age_ms(self, now_ms: int) -> int | None:
        """How old this snapshot is at `now_ms`; None if the feed was never read."""
        return None if self.updated_at_ms == 0 else max(0, now_ms - self.updated_at_ms)


@dataclass(frozen=True, slots=True)
class ExchangeFacts:
    """What the provider security server knows about one request (from its signed header)."""

    client: str  # the calling subsystem, as authenticated by the envelope signature
    service: str
    method: str = ""
    subject: str = ""  # the IIN the request is about; "" when none
    purpose: str = ""
    consent_id: str = ""  # Header.consent
    consent_artefact: bytes = b""  # Header.consent_artefact (serialized SignedConsent)
    legal_basis_id: str = ""  # Header.legal_basis
    now_ms: int = 0  # 0 = the wall clock at the call


@dataclass(frozen=True, slots=True, eq=False)
class ConsentDecision:
    """The outcome of one consent check, with what the audit record must carry."""

    allowed: bool
    justification: int  # audit_pb2.Justification
    reason: str
    consent_id: str = ""
    legal_basis_id: str = ""
    law_reference: str = ""
    hidden_until_ms: int = 0  # from the legal basis: hide from the citizen until then
    #: response fields the consent narrows the service to; empty = every field
    fields: tuple[str, ...] = ()
    mode: int = 0  # consent_pb2.ConsentMode of the consent used
    feed_age_ms: int | None = None
    error: GovbusError | None = field(default=None)

    @property
    def error_code(self) -> str:
        return self.error.code if self.error is not None else ""

    @property
    def stale_feed(self) -> bool:
        return self.justification == _STALE_OPEN or isinstance(self.error, ConsentStatusStale)

    def raise_if_denied(self) -> ConsentDecision:
        if self.error is not None:
            raise self.error
        return self


def effective_policy(service: globalconf_pb2.Service) -> int:
    """The service's consent policy; unset means required for personal data."""
    policy = service.consent_policy
    if policy == globalconf_pb2.CONSENT_POLICY_UNSPECIFIED:
        return (
            globalconf_pb2.CONSENT_REQUIRED
            if service.personal_data
            else globalconf_pb2.CONSENT_NOT_REQUIRED
        )
    return policy


def _ts_ms(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


class _Trace:
    """What the check learned before it failed, for the audit record of a refusal."""

    __slots__ = ("consent_id", "feed_age_ms")

    def __init__(self, consent_id: str) -> None:
        self.consent_id = consent_id
        self.feed_age_ms: int | None = None


class ConsentVerifier:
    """Decides consent for exchanges; one instance per provider security server.

    `staleness_ms` bounds how old the revocation snapshot may be before a
    service's stale-feed mode applies (fail closed by default).
    """

    def __init__(
        self, *, staleness_ms: int = DEFAULT_STALENESS_MS, cache_size: int = 10_000
    ) -> None:
        if staleness_ms <= 0:
            raise InvalidRequest("the consent feed staleness bound must be positive")
        self.staleness_ms = staleness_ms
        self._cache_size = max(1, cache_size)
        self._cache: dict[bytes, tuple[ParsedConsent, int]] = {}
        self._anchor: TrustAnchor | None = None
        self._anchor_cas: frozenset[bytes] = frozenset()
        self.hits = 0
        self.misses = 0

    # --- public API -------------------------------------------------------------

    def decide(
        self, view: GlobalConfView, facts: ExchangeFacts, revocations: RevocationState
    ) -> ConsentDecision:
        """The decision for one request; never raises a govbus error (it is in `.error`)."""
        trace = _Trace(facts.consent_id)
        try:
            return self._evaluate(view, facts, revocations, trace)
        except GovbusError as exc:
            return ConsentDecision(
                allowed=False,
                justification=_NONE,
                reason=exc.message,
                consent_id=trace.consent_id,
                legal_basis_id=facts.legal_basis_id,
                hidden_until_ms=_hidden_until(view, facts.legal_basis_id),
                feed_age_ms=trace.feed_age_ms,
                error=exc,
            )

    def check(
        self, view: GlobalConfView, facts: ExchangeFacts, revocations: RevocationState
    ) -> ConsentDecision:
        """The decision if allowed; raise the precise govbus error if not."""
        return self.decide(view, facts, revocations).raise_if_denied()

    def clear_cache(self) -> None:
        self._cache.clear()

    # --- the checks -------------------------------------------------------------

    def _evaluate(
        self,
        view: GlobalConfView,
        facts: ExchangeFacts,
        revocations: RevocationState,
        trace: _Trace,
    ) -> ConsentDecision:
        service = view.service(facts.service)
        policy = effective_policy(service)
        if policy == globalconf_pb2.CONSENT_NOT_REQUIRED:
            return ConsentDecision(True, _NOT_PERSONAL, f"{facts.service} needs no consent")
        now_ms = facts.now_ms or int(time.time() * 1000)
        if facts.legal_basis_id:
            if facts.consent_id or facts.consent_artefact:
                raise InvalidRequest("a request cites either a consent or a legal basis, not both")
            return self._legal_basis(view, facts, policy, now_ms)
        return self._consent(view, service, facts, revocations, now_ms, trace)

    def _legal_basis(
        self, view: GlobalConfView, facts: ExchangeFacts, policy: int, now_ms: int
    ) -> ConsentDecision:
        basis_id = facts.legal_basis_id
        if policy != globalconf_pb2.CONSENT_OR_LEGAL_BASIS:
            raise LegalBasisInvalid(
                f"{facts.service} accepts only the person's consent, not a legal basis"
            )
        basis = view.legal_basis(basis_id)
        if basis is None:
            raise LegalBasisInvalid(
                f"legal basis {basis_id} is not registered in the global configuration"
            )
        if basis.client != facts.client:
            raise LegalBasisInvalid(
                f"legal basis {basis_id} is registered for another consumer, not {facts.client}"
            )
        if basis.service != facts.service:
            raise LegalBasisInvalid(
                f"legal basis {basis_id} is registered for another service, not {facts.service}"
            )
        if basis.HasField("valid_from") and now_ms < _ts_ms(basis.valid_from):
            raise LegalBasisInvalid(f"legal basis {basis_id} is not valid yet")
        if basis.HasField("valid_until") and now_ms >= _ts_ms(basis.valid_until):
            raise LegalBasisInvalid(f"legal basis {basis_id} has expired")
        return ConsentDecision(
            allowed=True,
            justification=_LEGAL,
            reason=f"legal basis {basis_id} ({basis.law_reference})",
            legal_basis_id=basis_id,
            law_reference=basis.law_reference,
            hidden_until_ms=_hidden_until(view, basis_id),
        )

    def _consent(
        self,
        view: GlobalConfView,
        service: globalconf_pb2.Service,
        facts: ExchangeFacts,
        revocations: RevocationState,
        now_ms: int,
        trace: _Trace,
    ) -> ConsentDecision:
        if not facts.consent_artefact:
            if facts.consent_id:
                raise ConsentRequired(
                    f"consent {facts.consent_id} was named without its signed artefact; "
                    "the client passes the artefact (consent.client.ConsentHolder fetches it)"
                )
            raise ConsentRequired(
                f"{facts.service} gives personal data only with the person's consent"
                + (
                    " or a registered legal basis"
                    if effective_policy(service) == globalconf_pb2.CONSENT_OR_LEGAL_BASIS
                    else ""
                )
            )
        consent = self._verified(view.anchor, facts.consent_artefact, now_ms)
        trace.consent_id = consent.consent_id
        if facts.consent_id and facts.consent_id != consent.consent_id:
            raise ConsentInvalid(
                f"the request names consent {facts.consent_id} but carries "
                f"artefact {consent.consent_id}"
            )
        fields = _scope_fields(consent, facts)
        if consent.consent_id in revocations.revoked:
            raise ConsentRevoked(f"consent {consent.consent_id} was revoked by the person")
        if now_ms < consent.not_before_ms:
            raise ConsentNotYetValid(
                f"consent {consent.consent_id} is valid from "
                f"{ms_to_datetime(consent.not_before_ms):%Y-%m-%d %H:%M:%S} UTC"
            )
        if now_ms >= consent.expires_at_ms:
            raise ConsentExpired(
                f"consent {consent.consent_id} expired at "
                f"{ms_to_datetime(consent.expires_at_ms):%Y-%m-%d %H:%M:%S} UTC"
            )
        age = revocations.age_ms(now_ms)
        trace.feed_age_ms = age
        if age is None or age > self.staleness_ms:
            shown = "never been read" if age is None else f"not been updated for {age} ms"
            if service.stale_feed_mode == globalconf_pb2.FAIL_OPEN:
                return ConsentDecision(
                    allowed=True,
                    justification=_STALE_OPEN,
                    reason=(
                        f"consent {consent.consent_id} accepted although the revocation feed "
                        f"has {shown} (bound {self.staleness_ms} ms): {facts.service} fails open"
                    ),
                    consent_id=consent.consent_id,
                    fields=fields,
                    mode=consent.mode,
                    feed_age_ms=age,
                )
            raise ConsentStatusStale(
                f"the consent revocation feed has {shown} (bound {self.staleness_ms} ms) and "
                f"{facts.service} fails closed; retry when the consent service is reachable",
                retry_after=1.0,
            )
        return ConsentDecision(
            allowed=True,
            justification=_CONSENT,
            reason=f"consent {consent.consent_id}",
            consent_id=consent.consent_id,
            fields=fields,
            mode=consent.mode,
            feed_age_ms=age,
        )

    def _verified(self, anchor: TrustAnchor, raw: bytes, now_ms: int) -> ParsedConsent:
        """The parsed consent for `raw`, from the cache when its signature was verified before.

        A hit still checks what can change: the signer certificate's revocation
        (from the anchor in force) and expiry.
        """
        if anchor is not self._anchor:
            cas = frozenset(cert_fingerprint(ca) for ca in anchor.ca_certificates)
            if cas != self._anchor_cas:
                # Another set of CAs: what was verified under the old one proves nothing.
                self._cache.clear()
                self._anchor_cas = cas
            self._anchor = anchor
        cached = self._cache.get(raw)
        if cached is None:
            self.misses += 1
            parsed = verify_signed_consent(raw, anchor, at=ms_to_datetime(now_ms))
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[raw] = (parsed, int(parsed.signer.not_after.timestamp() * 1000))
            return parsed
        self.hits += 1
        parsed, not_after_ms = cached
        signer = parsed.signer
        if signer.serial in anchor.revoked:
            raise CertificateRevoked(
                f"the consent service certificate {signer.serial:x} that signed consent "
                f"{parsed.consent_id} is revoked"
            )
        if now_ms > not_after_ms:
            raise CertificateExpired(
                f"the consent service certificate that signed consent {parsed.consent_id} "
                "has expired"
            )
        return parsed


def _scope_fields(consent: ParsedConsent, facts: ExchangeFacts) -> tuple[str, ...]:
    """The fields the consent allows for this request; raise `ConsentScope` if it does not
    cover the request's subject, grantee, service or purpose."""
    if not facts.subject:
        raise ConsentScope("the request names no subject for its consent to cover")
    if consent.subject != facts.subject:
        raise ConsentScope(
            f"consent {consent.consent_id} is about another person, not {_masked(facts.subject)}"
        )
    if consent.grantee != facts.client:
        raise ConsentScope(
            f"consent {consent.consent_id} was given to {consent.grantee}, not {facts.client}"
        )
    fields = consent.scopes.get(facts.service)
    if fields is None:
        raise ConsentScope(f"consent {consent.consent_id} does not cover {facts.service}")
    if consent.purpose_code != facts.purpose:
        raise ConsentScope(
            f"consent {consent.consent_id} was given for purpose {consent.purpose_code!r}, "
            f"not {facts.purpose!r}"
        )
    return fields


def _masked(subject: str) -> str:
    return Iin(subject).masked() if Iin.is_valid(subject) else "(an invalid IIN)"


def _hidden_until(view: GlobalConfView, basis_id: str) -> int:
    """When a cited legal basis is hidden from the citizen until a date, so is every
    record that cites it — a refused attempt included, or the history would reveal
    that a hidden basis exists."""
    basis = view.legal_basis(basis_id) if basis_id else None
    if basis is None or not basis.HasField("hidden_until"):
        return 0
    return _ts_ms(basis.hidden_until)
