"""What the security server tells an adapter about a call: the `govbus-*` metadata.

The provider security server forwards each exchange to the adapter with metadata
naming the caller and intent (see docs/adr/0006-adapters.md):

| key                 | meaning                                                    |
|---------------------|------------------------------------------------------------|
| `govbus-client`     | calling member or subsystem, `KZ/GOV/<BIN>[/<subsystem>]`  |
| `govbus-service`    | the service id called, `KZ/GOV/<BIN>/<sub>/<service>/<v>`  |
| `govbus-subject`    | the IIN the data is about (the consent's subject)          |
| `govbus-purpose`    | why the data is asked for                                  |
| `govbus-consent`    | consent id or legal-basis id the exchange relies on       |
| `govbus-request-id` | the exchange's id, as in the audit log                     |
| `govbus-initiator`  | the official or operator who asked                        |
| `traceparent`       | W3C trace context                                          |

`RequestContext.from_grpc(context)` parses and validates them (a malformed subject
is `INVALID_IDENTIFIER`); inside a call handled by the SDK, `RequestContext.current()`
returns the one the SDK already parsed.

This module must never log or print a raw IIN: `log_fields()` masks the subject.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from govbus.errors import ConsentScope, InvalidIdentifier, InvalidRequest
from govbus.ids import Iin, MemberId, ServiceId, SubsystemId

__all__ = [
    "CLIENT_KEY",
    "CONSENT_KEY",
    "INITIATOR_KEY",
    "PURPOSE_KEY",
    "REQUEST_ID_KEY",
    "SERVICE_KEY",
    "SUBJECT_KEY",
    "TRACEPARENT_KEY",
    "RequestContext",
]

CLIENT_KEY = "govbus-client"
SERVICE_KEY = "govbus-service"
SUBJECT_KEY = "govbus-subject"
PURPOSE_KEY = "govbus-purpose"
CONSENT_KEY = "govbus-consent"
REQUEST_ID_KEY = "govbus-request-id"
INITIATOR_KEY = "govbus-initiator"
TRACEPARENT_KEY = "traceparent"

_LIMITS = {
    CLIENT_KEY: 300,
    SERVICE_KEY: 300,
    SUBJECT_KEY: 32,
    PURPOSE_KEY: 500,
    CONSENT_KEY: 8192,
    REQUEST_ID_KEY: 128,
    INITIATOR_KEY: 300,
    TRACEPARENT_KEY: 128,
}

_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "govbus_request_context", default=None
)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The caller and intent of one call, as the security server passed them on."""

    client: str = ""
    service: str = ""
    subject: Iin | None = None
    purpose: str = ""
    consent: str = ""
    request_id: str = ""
    initiator: str = ""
    traceparent: str = ""

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, Any]] | None) -> RequestContext:
        """Parse invocation metadata; unknown keys are ignored, bad govbus keys refused."""
        found: dict[str, str] = {}
        for key, value in metadata or ():
            limit = _LIMITS.get(key)
            if limit is None:
                continue
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if len(text) > limit:
                raise InvalidRequest(f"metadata {key} is too long ({len(text)} > {limit})")
            found[key] = text
        if not found:
            return _EMPTY
        client = found.get(CLIENT_KEY, "")
        if client:
            _check_client(client)
        service = found.get(SERVICE_KEY, "")
        if service:
            _check_service(service)
        subject_text = found.get(SUBJECT_KEY, "")
        subject = _parse_subject(subject_text) if subject_text else None
        return cls(
            client=client,
            service=service,
            subject=subject,
            purpose=found.get(PURPOSE_KEY, ""),
            consent=found.get(CONSENT_KEY, ""),
            request_id=found.get(REQUEST_ID_KEY, ""),
            initiator=found.get(INITIATOR_KEY, ""),
            traceparent=found.get(TRACEPARENT_KEY, ""),
        )

    @classmethod
    def from_grpc(cls, context: Any) -> RequestContext:
        """Parse the metadata of a grpc (sync or aio) servicer context."""
        return cls.from_metadata(context.invocation_metadata())

    @staticmethod
    def current() -> RequestContext:
        """The context of the call being handled (empty outside a call)."""
        return _current.get() or _EMPTY

    def check_subject(self, iin: Iin | str, field: str = "iin") -> None:
        """Refuse a request about another person than the consent's subject.

        The security servers check consent for `govbus-subject` without reading the
        body; the adapter is the one place that sees both, so it must refuse a body
        that asks about someone else.
        """
        if self.subject is None:
            return
        value = iin.value if isinstance(iin, Iin) else iin
        if value != self.subject.value:
            raise ConsentScope(
                f"request field {field} names another person than {SUBJECT_KEY} "
                f"({self.subject.masked()}): the consent does not cover it"
            )

    def log_fields(self) -> dict[str, str]:
        """The fields worth a log line, with the subject masked."""
        fields = {}
        if self.request_id:
            fields["request_id"] = self.request_id
        if self.client:
            fields["client"] = self.client
        if self.service:
            fields["service"] = self.service
        if self.subject is not None:
            fields["subject"] = self.subject.masked()
        if self.purpose:
            fields["purpose"] = self.purpose
        if self.initiator:
            fields["initiator"] = self.initiator
        return fields


_EMPTY = RequestContext()


# The same callers, services and (within a visit) subjects come again and again:
# validating each distinct value once keeps the per-call cost to a dict lookup.
# Only valid values are cached (an exception is never cached by lru_cache).
@functools.lru_cache(maxsize=1024)
def _check_client(text: str) -> None:
    # A member or one of its subsystems may call.
    (SubsystemId.parse if text.count("/") == 3 else MemberId.parse)(text)


@functools.lru_cache(maxsize=1024)
def _check_service(text: str) -> None:
    ServiceId.parse(text)


@functools.lru_cache(maxsize=8192)
def _parse_subject(text: str) -> Iin:
    try:
        return Iin.parse(text)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(f"{SUBJECT_KEY}: {exc.message}") from None


def _set_current(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(context)


def _reset_current(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)
