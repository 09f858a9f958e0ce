"""The notary registry as a gRPC service: `kz.gov.notary.v1.NotaryRegistry`.

Powers of attorney (read by number or by person, register, revoke) and inheritance
cases (read, open). The registry's rules: principal and agent are two different
adults, neither known to have died; a power of attorney is valid at most three
years, one year when no date is given (Civil Code art. 170); the same principal
does not give the same agent the same powers twice while one is in force; only the
principal revokes, and only a power still in force. An estate has one open case;
the applicant is an adult heir (a minor applies through a guardian), and opening
the case ends the deceased's powers of attorney, given or received (art. 172).

A request made under a person's consent may only act for that person: the
principal of a power of attorney, the applicant of an inheritance case.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.notary.data import MAX_VALIDITY_YEARS, anniversary
from adapters.notary.store import NotaryStore, parse_poa_number
from adapters.sdk.context import RequestContext
from adapters.sdk.fields import iin_field, optional_date_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Iin
from govbus.pb.agencies.notary.v1 import notary_pb2 as pb
from govbus.pb.agencies.notary.v1 import notary_pb2_grpc as pb_grpc

__all__ = ["E_NOTARY", "NotaryRegistryServicer"]

#: Who certifies what is registered through the bus: the electronic notary service.
E_NOTARY = "Электронный нотариат (ЕНИС)"


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _power(row: sqlite3.Row) -> pb.PowerOfAttorney:
    return pb.PowerOfAttorney(
        number=row["number"],
        principal_iin=row["principal_iin"],
        agent_iin=row["agent_iin"],
        notary=row["notary"],
        issued_date=row["issued_date"],
        valid_until=row["valid_until"],
        scope=row["scope"],
        revoked=row["revoked_date"] is not None,
    )


class NotaryRegistryServicer(pb_grpc.NotaryRegistryServicer):
    def __init__(self, store: NotaryStore, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _case(self, row: sqlite3.Row) -> pb.InheritanceCase:
        return pb.InheritanceCase(
            case_number=row["case_number"],
            deceased_iin=row["deceased_iin"],
            notary=row["notary"],
            opened_date=row["opened_date"],
            heir_iins=self.store.heirs(row["case_number"]),
            closed=row["closed_date"] is not None,
        )

    def _check_living_adult(self, iin: Iin, role: str, on: dt.date) -> None:
        age = _age(iin.birth_date, on)
        if age < 18:
            raise FailedPrecondition(f"the {role} is {max(age, 0)}: only an adult may be {role}")
        if self.store.is_deceased(iin.value):
            raise FailedPrecondition(f"the {role} is deceased (an inheritance case is open)")

    async def ListPowersOfAttorney(
        self, request: pb.ListPowersOfAttorneyRequest, context: Any
    ) -> AsyncIterator[pb.PowerOfAttorney]:
        iin = iin_field(request.iin)
        for row in self.store.powers_of_attorney(iin.value):
            yield _power(row)

    async def GetPowerOfAttorney(
        self, request: pb.GetPowerOfAttorneyRequest, context: Any
    ) -> pb.PowerOfAttorney:
        number = parse_poa_number(request.number)
        row = self.store.power_of_attorney(number)
        if row is None:
            raise NotFound(f"no power of attorney {number}")
        return _power(row)

    async def ListInheritanceCases(
        self, request: pb.ListInheritanceCasesRequest, context: Any
    ) -> AsyncIterator[pb.InheritanceCase]:
        deceased = iin_field(request.deceased_iin, "deceased_iin")
        for row in self.store.cases(deceased.value):
            yield self._case(row)

    async def RegisterPowerOfAttorney(
        self, request: pb.RegisterPowerOfAttorneyRequest, context: Any
    ) -> pb.PowerOfAttorney:
        principal = iin_field(request.principal_iin, "principal_iin")
        agent = iin_field(request.agent_iin, "agent_iin")
        RequestContext.current().check_subject(principal, "principal_iin")
        scope = text_field(request.scope, "scope", max_length=500)
        today = self.today()
        valid_until = optional_date_field(request.valid_until, "valid_until") or anniversary(
            today, 1
        )
        if valid_until <= today:
            raise InvalidRequest(f"valid_until {valid_until} is not in the future")
        if valid_until > anniversary(today, MAX_VALIDITY_YEARS):
            raise InvalidRequest(
                f"valid_until {valid_until} is more than {MAX_VALIDITY_YEARS} years away "
                "(Civil Code art. 170)"
            )
        if principal == agent:
            raise InvalidRequest("principal_iin and agent_iin are the same person")
        self._check_living_adult(principal, "principal", today)
        self._check_living_adult(agent, "agent", today)
        existing = self.store.active_duplicate(
            principal.value, agent.value, scope, today.isoformat()
        )
        if existing is not None:
            raise AlreadyExists(
                f"power of attorney {existing['number']} already gives these powers "
                f"until {existing['valid_until']}"
            )
        number = self.store.add_power_of_attorney(
            (
                principal.value,
                agent.value,
                E_NOTARY,
                today.isoformat(),
                valid_until.isoformat(),
                scope,
            )
        )
        row = self.store.power_of_attorney(number)
        assert row is not None
        return _power(row)

    async def RevokePowerOfAttorney(
        self, request: pb.RevokePowerOfAttorneyRequest, context: Any
    ) -> pb.PowerOfAttorney:
        principal = iin_field(request.principal_iin, "principal_iin")
        number = parse_poa_number(request.number)
        RequestContext.current().check_subject(principal, "principal_iin")
        row = self.store.power_of_attorney(number)
        if row is None:
            raise NotFound(f"no power of attorney {number}")
        if row["principal_iin"] != principal.value:
            raise FailedPrecondition(f"only the principal may revoke power of attorney {number}")
        if row["revoked_date"] is not None:
            raise FailedPrecondition(
                f"power of attorney {number} already ended on {row['revoked_date']} "
                f"({row['revoke_reason']})"
            )
        today = self.today()
        if row["valid_until"] < today.isoformat():
            raise FailedPrecondition(
                f"power of attorney {number} expired on {row['valid_until']}: nothing to revoke"
            )
        self.store.revoke(number, today.isoformat(), "revoked by the principal")
        revoked = self.store.power_of_attorney(number)
        assert revoked is not None
        return _power(revoked)

    async def OpenInheritanceCase(
        self, request: pb.OpenInheritanceCaseRequest, context: Any
    ) -> pb.InheritanceCase:
        deceased = iin_field(request.deceased_iin, "deceased_iin")
        applicant = iin_field(request.applicant_iin, "applicant_iin")
        RequestContext.current().check_subject(applicant, "applicant_iin")
        today = self.today()
        opened = optional_date_field(request.opened_date, "opened_date") or today
        if opened > today:
            raise InvalidRequest(f"opened_date {opened} is in the future")
        if opened < deceased.birth_date:
            raise InvalidRequest("opened_date is before the deceased's birth")
        if deceased == applicant:
            raise InvalidRequest("deceased_iin and applicant_iin are the same person")
        age = _age(applicant.birth_date, opened)
        if age < 18:
            raise FailedPrecondition(
                f"the applicant is {max(age, 0)}: a minor heir applies through a guardian"
            )
        if self.store.is_deceased(applicant.value):
            raise FailedPrecondition("the applicant is deceased (an inheritance case is open)")
        for row in self.store.cases(deceased.value):
            if row["closed_date"] is None:
                raise AlreadyExists(
                    f"inheritance case {row['case_number']} is open since {row['opened_date']} "
                    f"with {row['notary']}: heirs join it there"
                )
        number = self.store.open_case(deceased.value, applicant.value, E_NOTARY, opened.isoformat())
        created = self.store.case(number)
        assert created is not None
        return self._case(created)
