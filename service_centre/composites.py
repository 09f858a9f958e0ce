"""Composite life-event services: what a visit to the ЦОН is made of.

A `CompositeService` is a small graph of `Step`s. Each step calls one agency's
registry through the bus (or, for `agency="consent"`, asks the consent service
for a consent given in person), may need the results of earlier steps, and says
whose consent covers it (`subject`: "applicant" — the citizen at the counter —,
"child" — a person the visit creates —, or "" for a registry without personal
data). The engine (`service_centre.engine`) runs independent steps concurrently,
gives each its deadline, and degrades: a step that fails retryably is queued,
the ones that need it wait, everything else goes on.

A step's `run` receives a `StepContext` and returns a JSON-able dict (its result,
shown to the operator and read by the steps that need it). Steps that write must
be safe to run again (a queued write is retried): they read back the existing
record when the registry answers ALREADY_EXISTS.

`Catalogue` holds the services a ЦОН offers; a service is offered only when every
agency it calls is published (its code is in the application's `[services]`), so
new composites can be registered before their adapters land.

Nothing here does I/O by itself; `StepContext` is the only way out.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from govbus.errors import ConfigInvalid, InvalidIdentifier, InvalidRequest, Origin, UnknownService
from govbus.ids import Iin

__all__ = [
    "APPLICANT",
    "CHILD",
    "CONSENT_AGENCY",
    "Catalogue",
    "CertificateLine",
    "CompositeService",
    "InputField",
    "Step",
    "StepContext",
    "document_number",
]

APPLICANT = "applicant"
CHILD = "child"
#: The pseudo-agency of a step that asks the consent service (not a registry).
CONSENT_AGENCY = "consent"
_NAME = re.compile(r"[a-z][a-z0-9-]{1,40}")
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class StepContext(Protocol):
    """What a step may use; the engine provides it."""

    visit_id: str
    applicant: str  # the applicant's IIN
    inputs: Mapping[str, str]
    results: Mapping[str, Mapping[str, Any]]  # results of the steps this one needs

    async def call(
        self, agency: str, stub: Callable[[Any], Any], method: str, request: Any, *, subject: str
    ) -> Any:
        """One unary call through the ЦОН's security server; returns the response message."""
        ...

    async def stream(
        self, agency: str, stub: Callable[[Any], Any], method: str, request: Any, *, subject: str
    ) -> list[Any]:
        """One server-streaming call; returns every message."""
        ...

    async def consent_in_person(
        self, role: str, subject: str, document_type: str, document_number: str
    ) -> Mapping[str, Any]:
        """A consent for `subject` covering the `role` steps, confirmed in person by the
        operator (who checked `document_type` `document_number`)."""
        ...


StepRun = Callable[[StepContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    agency: str  # agency code (a key of [services]) or CONSENT_AGENCY
    run: StepRun
    needs: tuple[str, ...] = ()
    subject: str = APPLICANT  # whose consent covers it; "" = no personal data
    deadline_s: float = 3.0
    write: bool = False


@dataclass(frozen=True)
class InputField:
    """One thing the operator types in for a service, validated before anything runs."""

    name: str
    label: str
    kind: str = "text"  # text | date | past-date | iin | choice | document
    required: bool = True
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    default: Callable[[], str] | str = ""
    max_length: int = 100

    def default_value(self) -> str:
        return self.default() if callable(self.default) else self.default

    def check(self, raw: object) -> str:
        text = raw.strip() if isinstance(raw, str) else ""
        if raw is not None and not isinstance(raw, str):
            raise _bad(f"{self.name} must be text")
        if not text:
            if self.required:
                raise _bad(f"{self.label} ({self.name}) is required")
            return ""
        if len(text) > self.max_length or _CONTROL.search(text):
            raise _bad(f"{self.name} must be at most {self.max_length} printable characters")
        if self.kind == "iin":
            try:
                return Iin.parse(text).value
            except InvalidIdentifier as exc:
                raise InvalidIdentifier(
                    f"{self.name}: {exc.message}", origin=Origin.CLIENT
                ) from None
        if self.kind in ("date", "past-date"):
            try:
                day = dt.date.fromisoformat(text)
            except ValueError:
                raise _bad(f"{self.name} must be a date YYYY-MM-DD, got {text!r}") from None
            if self.kind == "past-date" and day > dt.date.today():
                raise _bad(f"{self.name} {day} is in the future")
            return day.isoformat()
        if self.kind == "document":
            return document_number(text, self.name)
        if self.kind == "choice" and text not in {value for value, _ in self.choices}:
            allowed = ", ".join(value for value, _ in self.choices)
            raise _bad(f"{self.name} must be one of {allowed}")
        return text


_DOCUMENT = re.compile(r"[A-Z0-9]{4,32}")


def document_number(text: str, what: str = "document number") -> str:
    """An identity-document number as the consent service takes it: 4-32 Latin letters or
    digits (spaces and dashes dropped), checked here so a visit does not fail halfway."""
    number = re.sub(r"[\s-]", "", text).upper()
    if not _DOCUMENT.fullmatch(number):
        raise _bad(f"{what} must be 4-32 Latin letters or digits, got {text!r}")
    return number


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, origin=Origin.CLIENT)


@dataclass(frozen=True)
class CertificateLine:
    label: str
    value: str
    missing: str = ""  # the step whose result is not there yet (shown as such)


CertificateBuilder = Callable[[Mapping[str, Mapping[str, Any]]], Sequence[CertificateLine]]


@dataclass(frozen=True)
class CompositeService:
    code: str
    title: str
    description: str
    purpose: str  # purpose code: ASCII, travels as govbus-purpose and in the consent
    purpose_text: str  # what the citizen is shown when asked for consent
    steps: tuple[Step, ...]
    inputs: tuple[InputField, ...] = ()
    certificate_title: str = ""
    certificate: CertificateBuilder | None = None
    #: Applicant consent given in person needs an identity document at the counter.
    consent_document: str = "id-card"
    child_document_input: str = ""  # the input holding the document for a CHILD consent
    order: int = 100

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.code):
            raise ConfigInvalid(f"composite service code {self.code!r} is not valid")
        if not _PURPOSE.fullmatch(self.purpose):
            raise ConfigInvalid(f"{self.code}: purpose {self.purpose!r} must be an ASCII code")
        seen: set[str] = set()
        for step in self.steps:
            if not _NAME.fullmatch(step.name) or step.name in seen:
                raise ConfigInvalid(f"{self.code}: step name {step.name!r} is invalid or repeated")
            unknown = [need for need in step.needs if need not in seen]
            if unknown:
                # Steps are listed in an order that respects their needs: no cycles possible.
                raise ConfigInvalid(f"{self.code}: step {step.name} needs later/unknown {unknown}")
            if step.subject not in (APPLICANT, CHILD, ""):
                raise ConfigInvalid(f"{self.code}: step {step.name} has subject {step.subject!r}")
            if not 0 < step.deadline_s <= 60:
                raise ConfigInvalid(f"{self.code}: step {step.name} deadline must be 0-60 s")
            seen.add(step.name)
        names = [f.name for f in self.inputs]
        if len(set(names)) != len(names):
            raise ConfigInvalid(f"{self.code}: input names repeat")

    @property
    def agencies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.agency for s in self.steps if s.agency != CONSENT_AGENCY))

    def consent_agencies(self, role: str) -> tuple[str, ...]:
        """The registries a consent of `role` must cover."""
        return tuple(
            dict.fromkeys(
                s.agency for s in self.steps if s.subject == role and s.agency != CONSENT_AGENCY
            )
        )

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise UnknownService(f"{self.code} has no step {name}", origin=Origin.CLIENT)

    def available(self, services: Mapping[str, str]) -> bool:
        return all(code in services for code in self.agencies)

    def missing_agencies(self, services: Mapping[str, str]) -> list[str]:
        return [code for code in self.agencies if code not in services]

    def check_inputs(self, raw: Mapping[str, object]) -> dict[str, str]:
        """The operator's inputs, validated; unknown names are refused."""
        unknown = set(raw) - {f.name for f in self.inputs}
        if unknown:
            raise _bad(f"{self.code} takes no input(s) {', '.join(sorted(unknown))}")
        checked: dict[str, str] = {}
        for spec in self.inputs:
            value = raw.get(spec.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                value = spec.default_value()
            checked[spec.name] = spec.check(value)
        return checked


@dataclass
class Catalogue:
    """The composite services a ЦОН offers, in display order."""

    services: dict[str, CompositeService] = field(default_factory=dict)

    def register(self, composite: CompositeService) -> CompositeService:
        if composite.code in self.services:
            raise ConfigInvalid(f"composite service {composite.code} is registered twice")
        self.services[composite.code] = composite
        return composite

    def extend(self, composites: Iterable[CompositeService]) -> Catalogue:
        for composite in composites:
            self.register(composite)
        return self

    def get(self, code: str) -> CompositeService:
        found = self.services.get(code) if isinstance(code, str) else None
        if found is None:
            known = ", ".join(self.services) or "none"
            raise UnknownService(
                f"no composite service {code!r} (known: {known})", origin=Origin.CLIENT
            )
        return found

    def offered(self, services: Mapping[str, str]) -> list[CompositeService]:
        """What can be given now: every agency the service calls is published."""
        return sorted(
            (c for c in self.services.values() if c.available(services)),
            key=lambda c: (c.order, c.code),
        )

    def __iter__(self) -> Any:
        return iter(sorted(self.services.values(), key=lambda c: (c.order, c.code)))
