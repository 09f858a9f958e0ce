"""Migration police as a gRPC service: `kz.gov.migration.v1.ResidenceRegistry`.

Registration of residence by IIN at an address code. A person this registry has
never seen (a newborn) can be registered: the IIN itself gives the birth date the
rules need. A new permanent registration ends the previous one.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.migration.store import ResidenceStore
from adapters.population.geography import parse_rca
from adapters.sdk.fields import enum_field, iin_field, optional_date_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.pb.agencies.migration.v1 import migration_pb2 as pb
from govbus.pb.agencies.migration.v1 import migration_pb2_grpc as pb_grpc

__all__ = ["ResidenceRegistryServicer"]

_PERMANENT = pb.REGISTRATION_KIND_PERMANENT
_TEMPORARY = pb.REGISTRATION_KIND_TEMPORARY


def _registration(row: sqlite3.Row) -> pb.Registration:
    return pb.Registration(
        iin=row["iin"],
        rca=row["rca"],
        address_line=row["line"],
        kind=row["kind"],
        since_date=row["since_date"],
        until_date=row["until_date"] or "",
        current=row["until_date"] is None,
    )


class ResidenceRegistryServicer(pb_grpc.ResidenceRegistryServicer):
    def __init__(self, store: ResidenceStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def GetRegistration(
        self, request: pb.GetRegistrationRequest, context: Any
    ) -> pb.Registration:
        iin = iin_field(request.iin)
        row = self.store.current(iin.value, _PERMANENT)
        if row is None:
            raise NotFound(f"no current permanent registration for IIN {iin.masked()}")
        return _registration(row)

    async def ListRegistrationHistory(
        self, request: pb.ListRegistrationHistoryRequest, context: Any
    ) -> AsyncIterator[pb.Registration]:
        iin = iin_field(request.iin)
        rows = self.store.history(iin.value)
        if not rows:
            raise NotFound(f"no registration was ever made for IIN {iin.masked()}")
        for row in rows:
            yield _registration(row)

    async def ListResidents(
        self, request: pb.ListResidentsRequest, context: Any
    ) -> AsyncIterator[pb.Resident]:
        rca = parse_rca(request.rca)
        if self.store.address(rca) is None:
            raise NotFound(f"no address with code {rca}")
        for row in self.store.residents(rca):
            yield pb.Resident(iin=row["iin"], kind=row["kind"], since_date=row["since_date"])

    async def RegisterAtAddress(
        self, request: pb.RegisterAtAddressRequest, context: Any
    ) -> pb.Registration:
        iin = iin_field(request.iin)
        rca = parse_rca(request.rca)
        kind = enum_field(request.kind, "kind", (_PERMANENT, _TEMPORARY), name="registration kind")
        today = self.today()
        since = optional_date_field(request.since_date, "since_date") or today
        until = optional_date_field(request.until_date, "until_date")
        if since > today:
            raise InvalidRequest(f"since_date {since} is in the future")
        if kind == _TEMPORARY and (until is None or until <= since):
            raise InvalidRequest("a temporary registration needs until_date after since_date")
        if kind == _PERMANENT and until is not None:
            raise InvalidRequest("a permanent registration has no until_date")
        if since < iin.birth_date:
            raise FailedPrecondition("since_date is before the person's birth date")
        if self.store.address(rca) is None:
            raise NotFound(f"no address with code {rca}")
        current = self.store.current(iin.value, kind)
        close_id = None
        if current is not None and kind == _PERMANENT:
            if current["rca"] == rca:
                raise AlreadyExists(
                    f"already registered at this address since {current['since_date']}"
                )
            if since.isoformat() < current["since_date"]:
                raise FailedPrecondition(
                    f"since_date is before the current registration's start {current['since_date']}"
                )
            close_id = int(current["id"])
        new_id = self.store.register(
            (iin.value, rca, kind, since.isoformat(), None if until is None else until.isoformat()),
            close_id,
            since.isoformat(),
        )
        return _registration(self.store.by_id(new_id))

    async def Deregister(self, request: pb.DeregisterRequest, context: Any) -> pb.Registration:
        iin = iin_field(request.iin)
        until = optional_date_field(request.until_date, "until_date") or self.today()
        reason = text_field(request.reason, "reason")
        if until > self.today():
            raise InvalidRequest(f"until_date {until} is in the future")
        current = self.store.current(iin.value, _PERMANENT)
        if current is None:
            raise NotFound(f"no current permanent registration for IIN {iin.masked()}")
        if until.isoformat() < current["since_date"]:
            raise FailedPrecondition("until_date is before the registration's start")
        self.store.deregister(int(current["id"]), until.isoformat(), reason)
        return _registration(self.store.by_id(int(current["id"])))
