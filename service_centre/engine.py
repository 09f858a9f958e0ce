"""Runs visits: consent first, then the composite's steps through the bus, degrading.

`VisitEngine.open_visit` validates the request (service, IIN, inputs), records
the visit, and obtains the applicant's consent (a code sent by SMS, confirmed
with `confirm_consent`; or in person at once). `advance` then runs every step
whose needs are met — independent steps concurrently —, each under its own
deadline, through the ЦОН's security server with typed stubs (`govbus.client.Bus`):

- a result is kept (`done`);
- a retryable failure (the vocabulary's `retryable`: SERVICE_UNAVAILABLE — also a
  breaker that is open —, DEADLINE_EXCEEDED, RATE_LIMITED, CONSENT_STATUS_STALE, …)
  queues the step with a backoff (honouring the security server's RetryInfo), and
  the steps that need it wait; everything else goes on;
- any other failure is final for that step (`failed`) and blocks only what needs it.

So a visit never fails as a whole because one registry is down: the operator gets
what could be had, sees what is missing, and the `Retrier` finishes the rest in
the background, from the durable queue (`service_centre.store`).

This module never talks to an agency except through the security server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from govbus.client import Bus
from govbus.errors import (
    ConsentRequired,
    DeadlineExceeded,
    FailedPrecondition,
    GovbusError,
    Internal,
    InvalidRequest,
    Origin,
    OtpLocked,
    UnknownService,
)
from govbus.ids import Iin
from service_centre.composites import (
    APPLICANT,
    Catalogue,
    CompositeService,
    Step,
    document_number,
)
from service_centre.consents import ConsentDesk, GivenConsent
from service_centre.store import (
    BLOCKED,
    DONE,
    FAILED,
    QUEUED,
    WAITING,
    HeldConsent,
    Visit,
    VisitStore,
)

__all__ = ["ConsentChoice", "Retrier", "VisitEngine"]

log = logging.getLogger("govbus.centre")


@dataclass(frozen=True)
class ConsentChoice:
    """How the applicant gives consent at the counter."""

    method: str = "otp"  # otp | in-person
    phone: str = ""  # OTP: register this phone first (E.164)
    document_type: str = "id-card"  # in person: what the operator checked
    document_number: str = ""

    def check(self) -> None:
        if self.method not in ("otp", "in-person"):
            raise InvalidRequest("consent method must be otp or in-person", origin=Origin.CLIENT)
        if self.method == "in-person":
            if not self.document_number.strip():
                raise InvalidRequest(
                    "an in-person consent needs the number of the document the operator checked",
                    origin=Origin.CLIENT,
                )
            document_number(self.document_number, "identity document number")


class VisitEngine:
    def __init__(
        self,
        store: VisitStore,
        bus: Bus,
        desk: ConsentDesk,
        catalogue: Catalogue,
        services: Mapping[str, str],
        *,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.bus = bus
        self.desk = desk
        self.catalogue = catalogue
        self.services = dict(services)
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._jitter = jitter
        # One lock per visit being advanced (the retrier and a page may both try); a lock
        # lives only as long as someone holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.wake = asyncio.Event()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def offered(self) -> list[CompositeService]:
        return self.catalogue.offered(self.services)

    def composite(self, code: str) -> CompositeService:
        composite = self.catalogue.get(code)
        missing = composite.missing_agencies(self.services)
        if missing:
            raise UnknownService(
                f"{composite.title} is not offered: {', '.join(missing)} not published on the bus",
                origin=Origin.CLIENT,
            )
        return composite

    def _lock(self, visit_id: str) -> asyncio.Lock:
        lock = self._locks.get(visit_id)
        if lock is None:
            lock = self._locks[visit_id] = asyncio.Lock()
        return lock

    # --- opening a visit -------------------------------------------------------------------------

    async def open_visit(
        self,
        service: str,
        iin: str,
        operator: str,
        inputs: Mapping[str, object],
        consent: ConsentChoice,
    ) -> Visit:
        """Validate and record a visit, then ask for the applicant's consent. Bad input
        raises and records nothing; a consent-service failure is kept on the visit."""
        composite = self.composite(service)
        applicant = Iin.parse(iin).value
        checked = composite.check_inputs(inputs)
        consent.check()
        if not operator or len(operator) > 64 or not operator.isascii():
            raise InvalidRequest("operator must be an ASCII id, e.g. operator-017")
        visit_id = uuid.uuid4().hex
        self.store.create_visit(
            visit_id,
            service=composite.code,
            iin=applicant,
            operator=operator,
            inputs=checked,
            steps=[(s.name, s.agency) for s in composite.steps],
            now_ms=self.now_ms(),
        )
        log.info("visit %s opened: %s by %s", visit_id, composite.code, operator)
        services = self._scopes(composite, APPLICANT)
        if not services:
            self.store.set_stage(visit_id, "running", self.now_ms())
            return await self.advance(visit_id)
        try:
            if consent.method == "otp":
                if consent.phone:
                    await self.desk.register_phone(applicant, consent.phone)
                asked = await self.desk.request_otp(
                    applicant, services, composite.purpose, composite.purpose_text
                )
                self.store.set_stage(
                    visit_id,
                    "awaiting-consent",
                    self.now_ms(),
                    note=f"code sent to {asked.otp_sent_to}",
                    consent_request=asked.request_id,
                )
                return self.store.visit(visit_id)
            given = await self.desk.in_person(
                applicant,
                services,
                composite.purpose,
                composite.purpose_text,
                consent.document_type,
                consent.document_number,
            )
        except GovbusError as exc:
            self.store.set_stage(visit_id, "consent-failed", self.now_ms(), note=str(exc))
            return self.store.visit(visit_id)
        self._hold(visit_id, APPLICANT, given)
        self.store.set_stage(visit_id, "running", self.now_ms())
        return await self.advance(visit_id)

    async def confirm_consent(self, visit_id: str, code: str) -> Visit:
        """The code the citizen read from their phone. A wrong code raises OTP_INVALID and
        leaves the visit waiting; a locked one ends it."""
        visit = self.store.visit(visit_id)
        if visit.stage != "awaiting-consent" or not visit.consent_request:
            raise FailedPrecondition(
                f"visit {visit_id} is not waiting for a code ({visit.stage})", origin=Origin.CLIENT
            )
        code = code.strip() if isinstance(code, str) else ""
        if not (len(code) == 6 and code.isdigit()):
            raise InvalidRequest("the code is 6 digits", origin=Origin.CLIENT)
        try:
            given = await self.desk.confirm_otp(visit.consent_request, code)
        except OtpLocked as exc:
            self.store.set_stage(visit_id, "consent-failed", self.now_ms(), note=str(exc))
            raise
        self._hold(visit_id, APPLICANT, given)
        self.store.set_stage(visit_id, "running", self.now_ms())
        return await self.advance(visit_id)

    def _scopes(self, composite: CompositeService, role: str) -> list[str]:
        return [self.services[code] for code in composite.consent_agencies(role)]

    def _hold(self, visit_id: str, role: str, given: GivenConsent) -> None:
        self.store.hold_consent(
            visit_id,
            HeldConsent(
                role=role,
                consent_id=given.consent_id,
                subject=given.subject,
                method=given.method,
                expires_ms=given.expires_ms,
                artefact=given.artefact,
            ),
        )

    # --- running steps ---------------------------------------------------------------------------

    async def advance(self, visit_id: str) -> Visit:
        """Run every step that can run now, until nothing more can; returns the visit."""
        async with self._lock(visit_id):
            visit = self.store.visit(visit_id)
            if visit.stage != "running":
                return visit
            composite = self.catalogue.get(visit.service)
            while True:
                runnable = self._plan(visit, composite)
                if not runnable:
                    break
                await asyncio.gather(*(self._run(visit, composite, step) for step in runnable))
                visit = self.store.visit(visit_id)
            return self.store.visit(visit_id)

    def _plan(self, visit: Visit, composite: CompositeService) -> list[Step]:
        """The steps to run now; marks the ones that wait or are blocked on the way."""
        now = self.now_ms()
        states = {s.name: s for s in visit.steps}
        runnable = []
        for step in composite.steps:
            record = states[step.name]
            if record.state in (DONE, FAILED, BLOCKED):
                continue
            needs = [states[n] for n in step.needs]
            broken = next((n for n in needs if n.state in (FAILED, BLOCKED)), None)
            if broken is not None:
                self.store.update_step(
                    visit.id,
                    step.name,
                    BLOCKED,
                    now,
                    error_code=broken.error_code or "BLOCKED",
                    error=f"needs {broken.name}, which could not be done",
                )
                continue
            unmet = next((n for n in needs if n.state != DONE), None)
            if unmet is not None:
                if unmet.state in (QUEUED, WAITING) and record.state != WAITING:
                    self.store.update_step(
                        visit.id, step.name, WAITING, now, error=f"after {unmet.name}"
                    )
                continue
            if record.state == QUEUED and record.next_attempt_ms > now:
                continue
            runnable.append(step)
        return runnable

    async def _run(self, visit: Visit, composite: CompositeService, step: Step) -> None:
        record = visit.step(step.name)
        attempts = record.attempts + 1
        context = _Context(self, visit, composite, step)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(step.deadline_s):
                result = await step.run(context)
        except TimeoutError:
            error: GovbusError = DeadlineExceeded(
                f"no answer within the step's {step.deadline_s:g} s", origin=Origin.CLIENT
            )
        except GovbusError as exc:
            error = exc
        except Exception:  # a bug in a step must not take the visit (or the app) down
            error_id = uuid.uuid4().hex[:8]
            log.exception("step %s of visit %s failed (error id %s)", step.name, visit.id, error_id)
            error = Internal(f"the step failed unexpectedly (error id {error_id})")
        else:
            self.store.update_step(
                visit.id, step.name, DONE, self.now_ms(), result=result, attempts=attempts
            )
            log.info(
                "visit %s step %s done in %.0f ms (attempt %d)",
                visit.id,
                step.name,
                (time.perf_counter() - started) * 1000,
                attempts,
            )
            return
        now = self.now_ms()
        if error.retryable:
            delay = self._backoff(attempts, error.retry_after)
            self.store.update_step(
                visit.id,
                step.name,
                QUEUED,
                now,
                error_code=error.code,
                error=f"{error.origin.value}: {error.message}",
                attempts=attempts,
                next_attempt_ms=now + int(delay * 1000),
            )
            log.info(
                "visit %s step %s queued after %s (retry in %.1f s)",
                visit.id,
                step.name,
                error.code,
                delay,
            )
        else:
            self.store.update_step(
                visit.id,
                step.name,
                FAILED,
                now,
                error_code=error.code,
                error=f"{error.origin.value}: {error.message}",
                attempts=attempts,
            )
            log.info("visit %s step %s failed: %s", visit.id, step.name, error.code)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        """Exponential with jitter, at most `max_backoff_s`; never sooner than RetryInfo."""
        base: float = min(self.max_backoff_s, 0.5 * 2.0 ** min(attempts - 1, 16))
        delay: float = base * (0.5 + self._jitter() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff_s))
        return delay

    # --- the queue -------------------------------------------------------------------------------

    async def retry_due(self, limit: int = 16) -> int:
        """Advance visits whose queued steps are due; returns how many were advanced."""
        due = self.store.due_visits(self.now_ms(), limit)
        await asyncio.gather(*(self.advance(visit_id) for visit_id in due))
        return len(due)

    def retry_now(self) -> int:
        """Make every queued step due at once and wake the retrier."""
        count = self.store.make_all_due()
        self.wake.set()
        return count


class _Context:
    """The `StepContext` a step runs with: its inputs, its needs' results, and the bus."""

    def __init__(
        self, engine: VisitEngine, visit: Visit, composite: CompositeService, step: Step
    ) -> None:
        self._engine = engine
        self._visit = visit
        self._composite = composite
        self._step = step
        self.visit_id = visit.id
        self.applicant = visit.iin
        self.inputs: Mapping[str, str] = visit.inputs
        done = visit.results()
        self.results: Mapping[str, Mapping[str, Any]] = {
            name: done[name] for name in step.needs if name in done
        }
        self._deadline: float = time.monotonic() + step.deadline_s

    def _stub(self, agency: str, stub: Callable[[Any], Any], subject: str) -> Any:
        service = self._engine.services.get(agency)
        if service is None:
            raise UnknownService(f"agency {agency} is not published", origin=Origin.CLIENT)
        options: dict[str, Any] = {}
        if subject:
            held = self._visit.consent(subject)
            if held is None:
                raise ConsentRequired(
                    f"no {subject} consent is held for this visit", origin=Origin.CLIENT
                )
            options = {
                "subject": held.subject,
                "consent": held.consent_id,
                "consent_artefact": held.artefact,
            }
        return self._engine.bus.stub(
            stub,
            service,
            purpose=self._composite.purpose,
            initiator=self._visit.operator,
            **options,
        )

    def _remaining(self) -> float:
        left: float = self._deadline - time.monotonic()
        return left if left > 0.05 else 0.05

    async def call(
        self, agency: str, stub: Callable[[Any], Any], method: str, request: Any, *, subject: str
    ) -> Any:
        bound = getattr(self._stub(agency, stub, subject), method)
        return await bound(request, timeout=self._remaining())

    async def stream(
        self, agency: str, stub: Callable[[Any], Any], method: str, request: Any, *, subject: str
    ) -> list[Any]:
        bound = getattr(self._stub(agency, stub, subject), method)
        return [message async for message in bound(request, timeout=self._remaining())]

    async def consent_in_person(
        self, role: str, subject: str, document_type: str, document_number: str
    ) -> Mapping[str, Any]:
        engine = self._engine
        held = self._visit.consent(role)
        if held is None or held.subject != subject:
            given = await engine.desk.in_person(
                subject,
                engine._scopes(self._composite, role),
                self._composite.purpose,
                self._composite.purpose_text,
                document_type,
                document_number,
            )
            engine._hold(self._visit.id, role, given)
            held = engine.store.visit(self._visit.id).consent(role)
            assert held is not None
        return {
            "consent_id": held.consent_id,
            "subject": Iin(held.subject).masked(),
            "method": held.method,
            "document": document_type,
        }


class Retrier:
    """The background task that drains the queue: wakes on a tick, on `retry_now`, or
    when the next queued step is due."""

    def __init__(self, engine: VisitEngine, *, tick_s: float = 0.5) -> None:
        self.engine = engine
        self.tick_s = tick_s
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="centre-retrier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        engine = self.engine
        while True:
            try:
                advanced = await engine.retry_due()
                if advanced:
                    self.rounds += 1
            except (GovbusError, sqlite3.Error) as exc:  # keep draining; say why it stalled
                log.warning("queue round failed: %s", exc)
            except Exception:  # a bug must not stop the queue for good: log it, go on
                log.exception("queue round failed")
            engine.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(engine.wake.wait(), self.tick_s)
