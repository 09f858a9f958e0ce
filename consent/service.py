"""The consent service: request, confirm, list and revoke consents; the revocation feed;
citizen log-in and "who accessed my data".

`ConsentService` is the logic, with the caller's authenticated identity passed
in; `ConsentGrpcServicer` maps it onto `govbus.v1.ConsentService`; `serve` runs
it on two ports sharing one server:

- the *public* port (TLS, server authenticated): requests, OTP and EDS
  confirmation, fetching an artefact by id, the citizen's own list and
  revocations (with a citizen token), the revocation feed, log-in;
- the *operator* port (mutual TLS): the same plus what needs an authenticated
  ЦОН operator — in-person confirmation after an identity-document check,
  listing or revoking for a person present at the counter, setting phones.

One-time codes: 6 digits from `secrets`, valid 5 minutes, single use, at most 5
attempts per code (then the challenge locks), at most 5 codes per IIN or phone
per 15 minutes. Only HMAC-SHA256(service secret, challenge id, code) is stored:
a 6-digit code has 10^6 values, so any unkeyed hash — even scrypt — is reversed
by trying them all; the key lives outside the database, so a copy of the
database alone reveals nothing, and binding the challenge id makes each hash
useless for any other challenge. Identity-document numbers are kept the same way.

It never stores a code or a document number in clear and never lets one method's
challenge answer another's.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import grpc

from consent.artefact import check_artefact, sign_consent, verify_citizen_signature
from consent.feed import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, sign_feed_page
from consent.sms import OutboxSmsGateway, SmsGateway, mask_phone, normalise_phone
from consent.store import (
    AttemptOutcome,
    Challenge,
    ConsentStore,
    PendingRequest,
    SqlConsentStore,
    StoredConsent,
)
from consent.trust import ConsentServiceKey, ms_to_datetime
from consent.usage import (
    TOKEN_TTL_MS,
    ChannelFactory,
    find_usage_everywhere,
    issue_citizen_token,
    verify_citizen_token,
)
from govbus.crypto.keys import atomic_write, load_private_key, private_key_pem
from govbus.crypto.pki import (
    Identity,
    Role,
    TrustAnchor,
    certificate_der,
    certificate_pem,
    load_certificate,
)
from govbus.errors import (
    AccessDenied,
    ConfigInvalid,
    FailedPrecondition,
    GovbusError,
    Internal,
    InvalidRequest,
    NotFound,
    Origin,
    OtpInvalid,
    OtpLocked,
    Unauthenticated,
    UnknownService,
)
from govbus.globalconf import GlobalConfClient, GlobalConfView, file_source, grpc_source
from govbus.ids import Iin, ServiceId, SubsystemId
from govbus.pb.govbus.v1 import consent_pb2, consent_pb2_grpc, usage_pb2
from govbus.serving import (
    DEFAULT_OPTIONS,
    add_health_and_reflection,
    run_until_signalled,
    set_serving,
    write_ready_file,
)

__all__ = [
    "SERVICE_NAME",
    "ConsentGrpcServicer",
    "ConsentService",
    "ConsentSettings",
    "ServeOptions",
    "load_or_create_secret",
    "login_challenge_bytes",
    "mtls_channel_factory",
    "serve",
]

log = logging.getLogger("govbus.consent.service")

SERVICE_NAME = "govbus.v1.ConsentService"

T = TypeVar("T")

_PURPOSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
_DOC_TYPE = re.compile(r"[a-z][a-z0-9-]{1,31}")
_DOC_NUMBER = re.compile(r"[A-Z0-9]{4,32}")
_OTP = re.compile(r"[0-9]{6}")
_METHODS: dict[int, str] = {
    usage_pb2.CONSENT_METHOD_OTP: "OTP",
    usage_pb2.CONSENT_METHOD_EDS: "EDS",
    usage_pb2.CONSENT_METHOD_IN_PERSON: "IN_PERSON",
}
_HOW: dict[str, int] = {
    "otp": usage_pb2.CONSENT_METHOD_OTP,
    "eds": usage_pb2.CONSENT_METHOD_EDS,
    "in_person": usage_pb2.CONSENT_METHOD_IN_PERSON,
}


@dataclass(frozen=True, slots=True)
class ConsentSettings:
    otp_ttl_ms: int = 5 * 60_000
    otp_max_attempts: int = 5
    otp_rate_window_ms: int = 15 * 60_000
    otp_rate_limit: int = 5
    request_ttl_ms: int = 15 * 60_000
    token_ttl_ms: int = TOKEN_TTL_MS
    max_validity_ms: int = 5 * 365 * 86_400_000
    max_scopes: int = 50
    max_fields: int = 100
    feed_page_limit: int = DEFAULT_PAGE_LIMIT
    usage_timeout: float = 5.0


def login_challenge_bytes(challenge_id: str, nonce: bytes) -> bytes:
    """What a citizen signs to log in by EDS (domain-separated from any artefact)."""
    return b"govbus citizen login v1\n" + challenge_id.encode() + b"\n" + nonce.hex().encode()


def _new_id() -> str:
    return str(uuid.uuid4())


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


class ConsentService:
    """The consent service's logic; transports pass in who is calling."""

    def __init__(
        self,
        store: ConsentStore,
        key: ConsentServiceKey,
        anchor: Callable[[], TrustAnchor],
        sms: SmsGateway,
        secret: bytes,
        *,
        settings: ConsentSettings | None = None,
        clock: Callable[[], float] = time.time,
        globalconf: Callable[[], GlobalConfView | None] = lambda: None,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        if len(secret) < 32:
            raise ConfigInvalid("the consent service secret must be at least 32 bytes")
        self.store = store
        self.key = key
        self._anchor = anchor
        self.sms = sms
        self._otp_key = hmac.digest(secret, b"govbus consent otp v1", "sha256")
        self._doc_key = hmac.digest(secret, b"govbus consent id-document v1", "sha256")
        self.settings = settings or ConsentSettings()
        self._clock = clock
        self._globalconf = globalconf
        self._channel_factory = channel_factory
        self._signer_not_after_ms = int(
            load_certificate(key.certificate).not_valid_after_utc.timestamp() * 1000
        )

    def now_ms(self) -> int:
        return _now_ms(self._clock)

    def anchor(self) -> TrustAnchor:
        return self._anchor()

    def otp_hash(self, challenge_id: str, code: str) -> bytes:
        return hmac.digest(
            self._otp_key, b"otp\0" + challenge_id.encode() + b"\0" + code.encode(), "sha256"
        )

    def document_hash(self, doc_type: str, number: str) -> bytes:
        return hmac.digest(self._doc_key, doc_type.encode() + b"\0" + number.encode(), "sha256")

    # --- requesting -----------------------------------------------------------------

    def _validate_terms(
        self, request: consent_pb2.RequestConsentRequest, now_ms: int
    ) -> tuple[int, int]:
        """Check a consent request's terms; return its (not_before_ms, expires_at_ms)."""
        Iin(request.subject)
        SubsystemId.parse(request.grantee)
        self._validate_scopes(request)
        if not _PURPOSE.fullmatch(request.purpose_code):
            raise InvalidRequest(
                "purpose code must be 1-64 letters, digits or . _ : - (e.g. 'birth-registration')"
            )
        if not request.purpose_text.strip() or len(request.purpose_text) > 1000:
            raise InvalidRequest("purpose text (what the citizen is shown) must be 1-1000 chars")
        if request.mode not in (consent_pb2.CONSENT_MODE_VIEW, consent_pb2.CONSENT_MODE_STORE):
            raise InvalidRequest("mode must be view or store")
        if request.method not in _METHODS:
            raise InvalidRequest("method must be OTP, EDS or IN_PERSON")
        not_before = request.not_before_ms or now_ms
        if not_before < now_ms - 60_000:
            raise InvalidRequest("a consent cannot start in the past")
        expires = request.expires_at_ms
        if expires <= not_before:
            raise InvalidRequest("a consent must expire after it starts")
        if expires - now_ms > self.settings.max_validity_ms:
            days = self.settings.max_validity_ms // 86_400_000
            raise InvalidRequest(f"a consent may last at most {days} days")
        if expires > self._signer_not_after_ms:
            raise InvalidRequest(
                "a consent cannot outlive the consent service's signing certificate "
                f"({ms_to_datetime(self._signer_not_after_ms):%Y-%m-%d})"
            )
        self._check_against_globalconf(request)
        return not_before, expires

    def _validate_scopes(self, request: consent_pb2.RequestConsentRequest) -> None:
        if not request.scopes:
            raise InvalidRequest("a consent must cover at least one service")
        if len(request.scopes) > self.settings.max_scopes:
            raise InvalidRequest(f"a consent covers at most {self.settings.max_scopes} services")
        seen: set[str] = set()
        for scope in request.scopes:
            ServiceId.parse(scope.service)
            if scope.service in seen:
                raise InvalidRequest(f"service {scope.service} is named twice")
            seen.add(scope.service)
            if len(scope.fields) > self.settings.max_fields:
                raise InvalidRequest(f"at most {self.settings.max_fields} fields per service")
            if len(set(scope.fields)) != len(scope.fields):
                raise InvalidRequest(f"a field of {scope.service} is named twice")
            for name in scope.fields:
                if not _FIELD.fullmatch(name):
                    raise InvalidRequest(f"field name {name!r} of {scope.service} is not valid")

    def _check_against_globalconf(self, request: consent_pb2.RequestConsentRequest) -> None:
        view = self._globalconf()
        if view is None:
            return
        subsystems = {s.id for s in view.conf.subsystems}
        if subsystems and request.grantee not in subsystems:
            raise InvalidRequest(f"grantee {request.grantee} is not a registered subsystem")
        for scope in request.scopes:
            service = view.services.get(scope.service)
            if service is None:
                raise UnknownService(
                    f"service {scope.service} is not published in the global configuration"
                )
            listed = {name for method in service.methods for name in method.fields}
            unknown = set(scope.fields) - listed
            if unknown:
                raise InvalidRequest(
                    f"service {scope.service} lists no field(s) {', '.join(sorted(unknown))}"
                    + ("" if listed else "; it cannot be narrowed to fields")
                )

    async def request_consent(
        self, request: consent_pb2.RequestConsentRequest, requested_by: str
    ) -> consent_pb2.RequestConsentResponse:
        now_ms = self.now_ms()
        not_before, expires = self._validate_terms(request, now_ms)
        request_id, consent_id = _new_id(), _new_id()
        terms = consent_pb2.ConsentArtefact(
            id=consent_id,
            subject=request.subject,
            grantee=request.grantee,
            scopes=request.scopes,
            purpose_code=request.purpose_code,
            purpose_text=request.purpose_text,
            mode=request.mode,
            not_before_ms=not_before,
            expires_at_ms=expires,
            evidence=consent_pb2.ConsentEvidence(method=request.method),
            issued_at_ms=now_ms,
            issuer=self.key.name,
        )
        check_artefact(terms)
        terms_bytes = terms.SerializeToString(deterministic=True)
        response = consent_pb2.RequestConsentResponse(
            request_id=request_id,
            consent_id=consent_id,
            method=request.method,
            request_expires_at_ms=now_ms + self.settings.request_ttl_ms,
            terms=terms,
        )
        challenge_id = ""
        if request.method == usage_pb2.CONSENT_METHOD_OTP:
            text = (
                f"govbus: code {{code}} confirms your consent for {request.grantee} to read "
                f"your data for: {request.purpose_text[:80]}. Valid 5 min. Never share it."
            )
            challenge_id, masked = await self._send_code(
                request.subject, "consent", text, now_ms, request_id
            )
            response.otp_sent_to = masked
        elif request.method == usage_pb2.CONSENT_METHOD_EDS:
            response.artefact_to_sign = terms_bytes
        await self.store.add_request(
            PendingRequest(
                request_id=request_id,
                consent_id=consent_id,
                subject=request.subject,
                grantee=request.grantee,
                method=request.method,
                terms=terms_bytes,
                challenge_id=challenge_id,
                requested_by=requested_by,
                created_ms=now_ms,
                expires_ms=now_ms + self.settings.request_ttl_ms,
            )
        )
        log.info(
            "consent %s requested by %s for %s (%s)",
            consent_id,
            requested_by or "public",
            request.grantee,
            _METHODS[request.method],
        )
        return response

    async def _send_code(
        self, subject: str, kind: str, text: str, now_ms: int, reference: str
    ) -> tuple[str, str]:
        phone = await self.store.phone_of(subject)
        if phone is None:
            raise FailedPrecondition(
                "no phone number is registered for this IIN: confirm by EDS or in person at a "
                "service centre",
                origin=Origin.CONSENT_SERVICE,
            )
        challenge_id = _new_id()
        code = f"{secrets.randbelow(1_000_000):06d}"
        masked = mask_phone(phone)
        await self.store.add_challenge(
            Challenge(
                challenge_id=challenge_id,
                subject=subject,
                kind=kind,
                method=usage_pb2.CONSENT_METHOD_OTP,
                code_hash=self.otp_hash(challenge_id, code),
                nonce=b"",
                phone=phone,
                phone_masked=masked,
                created_ms=now_ms,
                expires_ms=now_ms + self.settings.otp_ttl_ms,
            ),
            since_ms=now_ms - self.settings.otp_rate_window_ms,
            limit=self.settings.otp_rate_limit,
        )
        await self.sms.send(phone, text.replace("{code}", code), challenge_id)
        del code
        log.info("one-time code sent for %s to %s (%s)", reference, masked, challenge_id)
        return challenge_id, masked

    async def describe_request(self, request_id: str) -> consent_pb2.RequestConsentResponse:
        pending = await self._pending(request_id)
        terms = consent_pb2.ConsentArtefact()
        terms.ParseFromString(pending.terms)
        response = consent_pb2.RequestConsentResponse(
            request_id=pending.request_id,
            consent_id=pending.consent_id,
            method=cast(usage_pb2.ConsentMethod, pending.method),
            request_expires_at_ms=pending.expires_ms,
            terms=terms,
        )
        if pending.method == usage_pb2.CONSENT_METHOD_EDS:
            response.artefact_to_sign = pending.terms
        if pending.challenge_id:
            challenge = await self.store.get_challenge(pending.challenge_id)
            response.otp_sent_to = challenge.phone_masked if challenge else ""
        return response

    async def _pending(self, request_id: str) -> PendingRequest:
        pending = await self.store.get_request(request_id) if request_id else None
        if pending is None:
            raise NotFound(f"no consent request {request_id!r}", origin=Origin.CONSENT_SERVICE)
        if pending.state != "pending":
            raise FailedPrecondition(
                f"consent request {request_id} was already confirmed",
                origin=Origin.CONSENT_SERVICE,
            )
        if self.now_ms() >= pending.expires_ms:
            raise FailedPrecondition(
                f"consent request {request_id} expired; request the consent again",
                origin=Origin.CONSENT_SERVICE,
            )
        return pending

    # --- confirming -----------------------------------------------------------------

    async def confirm(
        self, request: consent_pb2.ConfirmConsentRequest, caller: Identity | None
    ) -> consent_pb2.ConsentRecord:
        how = request.WhichOneof("how")
        if how is None:
            raise InvalidRequest("say how the consent is confirmed: otp, eds or in_person")
        pending = await self._pending(request.request_id)
        if _HOW[how] != pending.method:
            raise InvalidRequest(
                f"consent request {pending.request_id} is to be confirmed by "
                f"{_METHODS[pending.method]}, not by {_METHODS[_HOW[how]]}"
            )
        now_ms = self.now_ms()
        terms = consent_pb2.ConsentArtefact()
        terms.ParseFromString(pending.terms)
        if how == "otp":
            challenge = await self._answer_code(
                pending.challenge_id, request.otp.code, "consent", now_ms
            )
            terms.evidence.otp_challenge_id = challenge.challenge_id
            terms.evidence.phone_masked = challenge.phone_masked
            signed = self._sign_final(terms, now_ms)
        elif how == "eds":
            verify_citizen_signature(
                self.anchor(),
                pending.terms,
                request.eds.signature,
                request.eds.certificate,
                pending.subject,
                at=ms_to_datetime(now_ms),
            )
            # The citizen signed these exact bytes: the service signs them unchanged.
            signed = sign_consent(
                pending.terms,
                self.key,
                citizen_signature=request.eds.signature,
                citizen_certificate=certificate_der(load_certificate(request.eds.certificate)),
            )
        else:
            operator = self._require_operator(caller, "confirm a consent in person")
            doc_type = request.in_person.id_document_type.strip().lower()
            number = re.sub(r"[\s-]", "", request.in_person.id_document_number).upper()
            if not _DOC_TYPE.fullmatch(doc_type):
                raise InvalidRequest("identity document type must be e.g. 'id-card' or 'passport'")
            if not _DOC_NUMBER.fullmatch(number):
                raise InvalidRequest("identity document number must be 4-32 letters or digits")
            terms.evidence.operator_id = operator.name
            terms.evidence.operator_certificate_sha256 = operator.fingerprint
            terms.evidence.id_document_type = doc_type
            terms.evidence.id_document_hash = self.document_hash(doc_type, number)
            signed = self._sign_final(terms, now_ms)
        stored = StoredConsent(
            consent_id=pending.consent_id,
            request_id=pending.request_id,
            subject=pending.subject,
            grantee=pending.grantee,
            signed=signed,
            not_before_ms=terms.not_before_ms,
            expires_ms=terms.expires_at_ms,
            issued_ms=now_ms,
        )
        await self.store.complete_request(pending.request_id, stored, now_ms)
        log.info("consent %s given (%s)", pending.consent_id, how)
        return _record(stored, now_ms)

    def _sign_final(self, terms: consent_pb2.ConsentArtefact, now_ms: int) -> bytes:
        terms.evidence.confirmed_at_ms = now_ms
        terms.issued_at_ms = now_ms
        check_artefact(terms)
        return sign_consent(terms.SerializeToString(deterministic=True), self.key)

    async def _answer_code(self, challenge_id: str, code: str, kind: str, now_ms: int) -> Challenge:
        challenge = await self.store.get_challenge(challenge_id) if challenge_id else None
        if challenge is None or challenge.kind != kind or not challenge.code_hash:
            raise NotFound(f"no one-time code challenge {challenge_id!r} for this {kind}")
        if not _OTP.fullmatch(code or ""):
            raise OtpInvalid("a one-time code is 6 digits")
        outcome = await self.store.attempt_code(
            challenge_id, self.otp_hash(challenge_id, code), now_ms, self.settings.otp_max_attempts
        )
        if outcome is AttemptOutcome.ACCEPTED:
            return challenge
        left = self.settings.otp_max_attempts - challenge.attempts - 1
        messages: dict[AttemptOutcome, GovbusError] = {
            AttemptOutcome.WRONG: OtpInvalid(f"wrong code; {max(left, 1)} attempt(s) left"),
            AttemptOutcome.LOCKED_NOW: OtpLocked(
                "wrong code and no attempts left: this code is locked; ask for a new one"
            ),
            AttemptOutcome.LOCKED: OtpLocked(
                "too many wrong codes: this code is locked; ask for a new one"
            ),
            AttemptOutcome.USED: OtpInvalid("this code was already used; ask for a new one"),
            AttemptOutcome.EXPIRED: OtpInvalid("this code has expired; ask for a new one"),
        }
        raise messages.get(outcome, NotFound(f"no one-time code challenge {challenge_id!r}"))

    def _require_operator(self, caller: Identity | None, action: str) -> Identity:
        if caller is None:
            raise Unauthenticated(
                f"only a service-centre operator may {action}: connect to the operator port "
                "with an operator certificate (mutual TLS)"
            )
        if caller.role is not Role.OPERATOR:
            raise AccessDenied(
                f"{caller.role.value} {caller.name} is not an operator and may not {action}",
                origin=Origin.CONSENT_SERVICE,
            )
        return caller

    # --- reading, revoking --------------------------------------------------------------

    async def get(self, consent_id: str) -> consent_pb2.ConsentRecord:
        stored = await self.store.get_consent(consent_id) if consent_id else None
        if stored is None:
            raise NotFound(f"no consent {consent_id!r}", origin=Origin.CONSENT_SERVICE)
        return _record(stored, self.now_ms())

    def _subject_of(
        self,
        token: usage_pb2.SignedCitizenToken,
        caller: Identity | None,
        subject: str,
        action: str,
    ) -> tuple[str, str]:
        """Whose consents the caller may see or revoke, and how to name the caller."""
        if token.token:
            verified = verify_citizen_token(token, self.anchor(), self.now_ms())
            if subject and subject != verified.subject:
                raise AccessDenied(
                    "a citizen may only act on their own consents", origin=Origin.CONSENT_SERVICE
                )
            return verified.subject, f"citizen ({_METHODS.get(verified.method, '?')})"
        operator = self._require_operator(caller, action)
        return subject, f"operator {operator.name}"

    async def list(
        self, request: consent_pb2.ListConsentsRequest, caller: Identity | None
    ) -> consent_pb2.ListConsentsResponse:
        subject, _ = self._subject_of(
            request.citizen, caller, request.subject, "list a person's consents"
        )
        Iin(subject)
        now_ms = self.now_ms()
        consents = await self.store.list_consents(subject)
        return consent_pb2.ListConsentsResponse(consents=[_record(c, now_ms) for c in consents])

    async def revoke(
        self, request: consent_pb2.RevokeConsentRequest, caller: Identity | None
    ) -> consent_pb2.ConsentRecord:
        if len(request.reason) > 500:
            raise InvalidRequest("a revocation reason is at most 500 characters")
        stored = await self.store.get_consent(request.consent_id) if request.consent_id else None
        if stored is None:
            raise NotFound(f"no consent {request.consent_id!r}", origin=Origin.CONSENT_SERVICE)
        subject, by = self._subject_of(
            request.citizen, caller, stored.subject, "revoke a person's consent"
        )
        if subject != stored.subject:
            raise AccessDenied(
                "a citizen may only revoke their own consents", origin=Origin.CONSENT_SERVICE
            )
        revoked = await self.store.revoke(stored.consent_id, self.now_ms(), by)
        log.info(
            "consent %s revoked by %s (feed seq %d)", stored.consent_id, by, revoked.revocation_seq
        )
        return _record(revoked, self.now_ms())

    async def feed_page(
        self, request: consent_pb2.RevocationFeedRequest
    ) -> consent_pb2.SignedRevocationFeedPage:
        if not 16 <= len(request.nonce) <= 64:
            raise InvalidRequest("a feed request carries a random nonce of 16-64 bytes")
        limit = min(request.limit or self.settings.feed_page_limit, MAX_PAGE_LIMIT)
        entries, head = await self.store.feed(request.after_seq, limit)
        page = consent_pb2.RevocationFeedPage(
            from_seq=request.after_seq + 1,
            to_seq=entries[-1].seq if entries else request.after_seq,
            entries=[
                consent_pb2.RevocationEntry(
                    seq=e.seq,
                    consent_id=e.consent_id,
                    revoked_at_ms=e.revoked_ms,
                    expires_at_ms=e.expires_ms,
                )
                for e in entries
            ],
            generated_at_ms=self.now_ms(),
            head_seq=head,
            nonce=request.nonce,
        )
        signed = consent_pb2.SignedRevocationFeedPage()
        signed.ParseFromString(sign_feed_page(page, self.key))
        return signed

    async def set_phone(
        self, request: consent_pb2.SetPhoneRequest, caller: Identity | None
    ) -> consent_pb2.SetPhoneResponse:
        self._require_operator(caller, "register a phone number")
        Iin(request.subject)
        phone = normalise_phone(request.phone)
        await self.store.set_phone(request.subject, phone, self.now_ms())
        return consent_pb2.SetPhoneResponse()

    # --- citizen log-in and usage ---------------------------------------------------------

    async def start_login(
        self, request: consent_pb2.StartCitizenLoginRequest
    ) -> consent_pb2.StartCitizenLoginResponse:
        Iin(request.subject)
        now_ms = self.now_ms()
        if request.method == usage_pb2.CONSENT_METHOD_OTP:
            text = (
                "govbus: code {code} lets you see your consents and who accessed your data. "
                "Valid 5 min. Never share it."
            )
            challenge_id, masked = await self._send_code(
                request.subject, "login", text, now_ms, "log-in"
            )
            return consent_pb2.StartCitizenLoginResponse(
                challenge_id=challenge_id,
                otp_sent_to=masked,
                expires_at_ms=now_ms + self.settings.otp_ttl_ms,
            )
        if request.method == usage_pb2.CONSENT_METHOD_EDS:
            challenge_id, nonce = _new_id(), os.urandom(32)
            await self.store.add_challenge(
                Challenge(
                    challenge_id=challenge_id,
                    subject=request.subject,
                    kind="login",
                    method=usage_pb2.CONSENT_METHOD_EDS,
                    code_hash=b"",
                    nonce=nonce,
                    phone="",
                    phone_masked="",
                    created_ms=now_ms,
                    expires_ms=now_ms + self.settings.otp_ttl_ms,
                ),
                since_ms=now_ms,
                limit=0,
            )
            return consent_pb2.StartCitizenLoginResponse(
                challenge_id=challenge_id,
                challenge=login_challenge_bytes(challenge_id, nonce),
                expires_at_ms=now_ms + self.settings.otp_ttl_ms,
            )
        raise InvalidRequest("a citizen logs in by OTP or EDS")

    async def complete_login(
        self, request: consent_pb2.CompleteCitizenLoginRequest
    ) -> usage_pb2.SignedCitizenToken:
        now_ms = self.now_ms()
        how = request.WhichOneof("how")
        if how == "otp":
            challenge = await self._answer_code(
                request.challenge_id, request.otp.code, "login", now_ms
            )
            method = usage_pb2.CONSENT_METHOD_OTP
        elif how == "eds":
            found = await self.store.get_challenge(request.challenge_id)
            if found is None or found.kind != "login" or found.code_hash:
                raise NotFound(f"no EDS log-in challenge {request.challenge_id!r}")
            verify_citizen_signature(
                self.anchor(),
                login_challenge_bytes(found.challenge_id, found.nonce),
                request.eds.signature,
                request.eds.certificate,
                found.subject,
                at=ms_to_datetime(now_ms),
            )
            outcome = await self.store.use_challenge(found.challenge_id, now_ms)
            if outcome is not AttemptOutcome.ACCEPTED:
                raise Unauthenticated(
                    f"this log-in challenge is {outcome.value}; start a new log-in"
                )
            challenge, method = found, usage_pb2.CONSENT_METHOD_EDS
        else:
            raise InvalidRequest("say how the citizen logs in: otp or eds")
        return issue_citizen_token(
            self.key, challenge.subject, method, now_ms, ttl_ms=self.settings.token_ttl_ms
        )

    async def find_my_usage(
        self, request: usage_pb2.FindMyUsageRequest
    ) -> usage_pb2.FindMyUsageResponse:
        verify_citizen_token(request.citizen, self.anchor(), self.now_ms())
        view = self._globalconf()
        if view is None or self._channel_factory is None:
            raise FailedPrecondition(
                "the consent service runs without a global configuration, so it does not know "
                "the provider security servers to ask",
                origin=Origin.CONSENT_SERVICE,
            )
        return await find_usage_everywhere(
            view,
            request.citizen,
            request.since_ms,
            request.until_ms,
            self._channel_factory,
            wait_s=self.settings.usage_timeout,
        )


def _record(stored: StoredConsent, now_ms: int) -> consent_pb2.ConsentRecord:
    return consent_pb2.ConsentRecord(
        signed_consent=stored.signed,
        state=cast(consent_pb2.ConsentState, stored.state(now_ms)),
        revoked_at_ms=stored.revoked_ms,
        revocation_seq=stored.revocation_seq,
        revoked_by=stored.revoked_by,
    )


# --- gRPC -----------------------------------------------------------------------------


def peer_identity(context: grpc.aio.ServicerContext, anchor: TrustAnchor) -> Identity | None:
    """The validated identity of a mutual-TLS client, or None on the public port."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    if not pems:
        return None
    return anchor.validate(certificate_der(load_certificate(pems[0])))


class ConsentGrpcServicer(consent_pb2_grpc.ConsentServiceServicer):
    """`govbus.v1.ConsentService` over `ConsentService`; every failure is a vocabulary error."""

    def __init__(self, service: ConsentService) -> None:
        self.service = service

    async def _call(
        self, context: grpc.aio.ServicerContext, work: Callable[[Identity | None], Awaitable[T]]
    ) -> T:
        try:
            caller = peer_identity(context, self.service.anchor())
            return await work(caller)
        except GovbusError as exc:
            error = exc
        except Exception:  # a bug must become INTERNAL, never a hang or a crash
            log.exception("consent service call failed")
            error = Internal("the consent service failed; see its log")
        if error.origin in (Origin.PROVIDER_SS, Origin.PROVIDER, Origin.CONSUMER_SS):
            error = error.with_origin(Origin.CONSENT_SERVICE)
        await error.abort(context)
        raise AssertionError("unreachable: abort raises")

    async def RequestConsent(
        self, request: consent_pb2.RequestConsentRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.RequestConsentResponse:
        return await self._call(
            context,
            lambda caller: self.service.request_consent(request, caller.name if caller else ""),
        )

    async def DescribeRequest(
        self, request: consent_pb2.DescribeRequestRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.RequestConsentResponse:
        return await self._call(
            context, lambda _: self.service.describe_request(request.request_id)
        )

    async def ConfirmConsent(
        self, request: consent_pb2.ConfirmConsentRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ConsentRecord:
        return await self._call(context, lambda caller: self.service.confirm(request, caller))

    async def GetConsent(
        self, request: consent_pb2.GetConsentRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ConsentRecord:
        return await self._call(context, lambda _: self.service.get(request.consent_id))

    async def ListConsents(
        self, request: consent_pb2.ListConsentsRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ListConsentsResponse:
        return await self._call(context, lambda caller: self.service.list(request, caller))

    async def RevokeConsent(
        self, request: consent_pb2.RevokeConsentRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ConsentRecord:
        return await self._call(context, lambda caller: self.service.revoke(request, caller))

    async def GetRevocationFeed(
        self, request: consent_pb2.RevocationFeedRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.SignedRevocationFeedPage:
        return await self._call(context, lambda _: self.service.feed_page(request))

    async def SetPhone(
        self, request: consent_pb2.SetPhoneRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.SetPhoneResponse:
        return await self._call(context, lambda caller: self.service.set_phone(request, caller))

    async def StartCitizenLogin(
        self, request: consent_pb2.StartCitizenLoginRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.StartCitizenLoginResponse:
        return await self._call(context, lambda _: self.service.start_login(request))

    async def CompleteCitizenLogin(
        self, request: consent_pb2.CompleteCitizenLoginRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.SignedCitizenToken:
        return await self._call(context, lambda _: self.service.complete_login(request))

    async def FindMyUsage(
        self, request: usage_pb2.FindMyUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.FindMyUsageResponse:
        return await self._call(context, lambda _: self.service.find_my_usage(request))


# --- running it -----------------------------------------------------------------------


def load_or_create_secret(path: Path) -> bytes:
    """The service secret (32 random bytes, hex in a 0600 file), created on first start."""
    if path.exists():
        try:
            secret = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ConfigInvalid(f"consent service secret {path} is unreadable: {exc}") from None
        if len(secret) < 32:
            raise ConfigInvalid(f"consent service secret {path} is shorter than 32 bytes")
        return secret
    secret = secrets.token_bytes(32)
    atomic_write(path, secret.hex().encode() + b"\n", 0o600)
    return secret


def mtls_channel_factory(ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> ChannelFactory:
    """Channels to security servers, authenticated by the consent service's TLS certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )

    def factory(server: object) -> grpc.aio.Channel:
        address = getattr(server, "address", "")
        return grpc.aio.secure_channel(address, credentials, options=DEFAULT_OPTIONS)

    return factory


@dataclass(frozen=True)
class ServeOptions:
    state_dir: Path
    ca_cert: Path
    signing_key: Path
    signing_cert: Path
    tls_key: Path
    tls_cert: Path
    passphrase: bytes
    pg_dsn: str | None = None
    outbox: Path | None = None
    secret_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    operator_port: int = 0
    globalconf_file: Path | None = None
    registry_address: str | None = None
    ready_file: Path | None = None
    settings: ConsentSettings = field(default_factory=ConsentSettings)


async def serve(options: ServeOptions, *, stop: asyncio.Event | None = None) -> None:
    """Run the consent service until SIGTERM/SIGINT (or `stop`)."""
    ca = load_certificate(options.ca_cert)
    ca_pem = certificate_pem(ca)
    static_anchor = TrustAnchor([ca])
    globalconf: GlobalConfClient | None = None
    if options.globalconf_file is not None or options.registry_address:
        fetch = (
            file_source(options.globalconf_file)
            if options.globalconf_file is not None
            else grpc_source(options.registry_address or "", ca_pem)
        )
        globalconf = GlobalConfClient(
            [ca], fetch, options.state_dir / "globalconf.bin", interval=30.0
        )
        try:
            await globalconf.refresh()
        except GovbusError as exc:
            log.warning("global configuration not loaded yet: %s", exc)

    def current_view() -> GlobalConfView | None:
        if globalconf is None:
            return None
        try:
            return globalconf.current()
        except GovbusError:
            return None

    def anchor() -> TrustAnchor:
        view = current_view()
        return view.anchor if view is not None else static_anchor

    key = ConsentServiceKey.load(
        options.signing_key, options.signing_cert, options.passphrase, static_anchor
    )
    tls_key_pem = private_key_pem(load_private_key(options.tls_key, options.passphrase))
    tls_cert_pem = certificate_pem(load_certificate(options.tls_cert))
    secret = load_or_create_secret(options.secret_file or options.state_dir / "secret.key")
    store = await SqlConsentStore.open(
        sqlite_path=options.state_dir / "consent.db", pg_dsn=options.pg_dsn
    )
    outbox = options.outbox or options.state_dir / "sms-outbox.jsonl"
    service = ConsentService(
        store,
        key,
        anchor,
        OutboxSmsGateway(outbox),
        secret,
        settings=options.settings,
        globalconf=current_view,
        channel_factory=mtls_channel_factory(ca_pem, tls_key_pem, tls_cert_pem),
    )
    server = grpc.aio.server(options=DEFAULT_OPTIONS)
    consent_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentGrpcServicer(service), server)
    health = add_health_and_reflection(server, [SERVICE_NAME])
    pair = [(tls_key_pem, tls_cert_pem)]
    try:
        port = server.add_secure_port(
            f"{options.host}:{options.port}", grpc.ssl_server_credentials(pair)
        )
        operator_port = server.add_secure_port(
            f"{options.host}:{options.operator_port}",
            grpc.ssl_server_credentials(pair, root_certificates=ca_pem, require_client_auth=True),
        )
    except RuntimeError as exc:
        await store.close()
        raise ConfigInvalid(f"cannot bind the consent service ports: {exc}") from None
    await server.start()
    await set_serving(health, [SERVICE_NAME], True)
    if globalconf is not None:
        globalconf.start()
    write_ready_file(
        options.ready_file,
        {
            "port": port,
            "operator_port": operator_port,
            "pid": os.getpid(),
            "outbox": str(outbox),
            "backend": store.backend_name,
        },
    )
    log.info("consent service on %s:%d (operators: %d)", options.host, port, operator_port)

    async def close() -> None:
        if globalconf is not None:
            await globalconf.stop()
        await store.close()

    await run_until_signalled(server, on_stop=[close], health_servicer=health, stop=stop)
