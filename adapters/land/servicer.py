"""The land cadastre as a gRPC service: `kz.gov.land.v1.LandCadastre`.

Reads of a plot by cadastral number and of the plots a person or company holds;
one write, the registration of a new right on a plot (sale, gift, inheritance,
lease), which ends the previous right on the same day. Rules a cadastre enforces:

- permanent land use is granted only to legal entities (state bodies and
  enterprises), never to a person;
- agricultural land is never owned or leased by a foreign (non-resident) entity;
- a right starts on or after the current one and on or after the holder's birth;
- registering the right a holder already has is ALREADY_EXISTS.

A person's data leaves only for the consent's subject: when `govbus-subject` is
given, a plot held by another person is refused (CONSENT_SCOPE).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.land.cadastre import parse_cadastral
from adapters.land.store import LandStore
from adapters.sdk.context import RequestContext
from adapters.sdk.fields import bin_field, enum_field, iin_field, optional_date_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Bin, EntityKind, Iin
from govbus.pb.agencies.land.v1 import land_pb2 as pb
from govbus.pb.agencies.land.v1 import land_pb2_grpc as pb_grpc

__all__ = ["LandCadastreServicer"]

_RIGHTS = (pb.LAND_RIGHT_OWNERSHIP, pb.LAND_RIGHT_PERMANENT_USE, pb.LAND_RIGHT_LEASE)


def _plot(row: sqlite3.Row) -> pb.LandPlot:
    plot = pb.LandPlot(
        cadastral_number=row["cadastral_number"],
        rca=row["rca"],
        address_line=row["address_line"],
        area_m2=row["area_m2"],
        purpose=row["purpose"],
        right=row["land_right"],
        registered_date=row["since_date"],
        cadastral_value_tiyn=row["cadastral_value_tiyn"],
    )
    if row["holder_iin"] is not None:
        plot.holder_iin = row["holder_iin"]
    else:
        plot.holder_bin = row["holder_bin"]
    return plot


def _holder(request: Any, iin_name: str, bin_name: str) -> Iin | Bin:
    """The IIN or BIN of a `holder` oneof, validated."""
    which = request.WhichOneof("holder")
    if which == iin_name:
        return iin_field(getattr(request, iin_name), iin_name)
    if which == bin_name:
        return bin_field(getattr(request, bin_name), bin_name)
    raise InvalidRequest(f"{iin_name} or {bin_name} is required")


class LandCadastreServicer(pb_grpc.LandCadastreServicer):
    def __init__(self, store: LandStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def GetPlot(self, request: pb.GetPlotRequest, context: Any) -> pb.LandPlot:
        number = parse_cadastral(request.cadastral_number)
        row = self.store.plot(number)
        if row is None:
            raise NotFound(f"no land plot with cadastral number {number}")
        if row["holder_iin"] is not None:
            RequestContext.current().check_subject(row["holder_iin"], "holder_iin")
        return _plot(row)

    async def ListPlotsByHolder(
        self, request: pb.ListPlotsByHolderRequest, context: Any
    ) -> AsyncIterator[pb.LandPlot]:
        holder = _holder(request, "iin", "bin")
        if isinstance(holder, Iin):
            rows = self.store.plots_of_person(holder.value)
        else:
            rows = self.store.plots_of_company(holder.value)
        for row in rows:
            yield _plot(row)

    async def RegisterPlotRight(
        self, request: pb.RegisterPlotRightRequest, context: Any
    ) -> pb.LandPlot:
        number = parse_cadastral(request.cadastral_number)
        holder = _holder(request, "holder_iin", "holder_bin")
        right = enum_field(request.right, "right", _RIGHTS, name="land right")
        today = self.today()
        since = optional_date_field(request.since_date, "since_date") or today
        if since > today:
            raise InvalidRequest(f"since_date {since} is in the future")
        row = self.store.plot(number)
        if row is None:
            raise NotFound(f"no land plot with cadastral number {number}")
        if isinstance(holder, Iin):
            if right == pb.LAND_RIGHT_PERMANENT_USE:
                raise FailedPrecondition(
                    "permanent land use is granted only to legal entities, not to a person"
                )
            if since < holder.birth_date:
                raise FailedPrecondition("since_date is before the holder's birth date")
        elif row["agricultural"] and holder.value[4] == str(EntityKind.NON_RESIDENT.value):
            raise FailedPrecondition(
                "agricultural land cannot be owned or leased by a foreign (non-resident) entity"
            )
        if since.isoformat() < row["since_date"]:
            raise FailedPrecondition(
                f"since_date is before the current right's start {row['since_date']}"
            )
        same_holder = (
            row["holder_iin"] == holder.value
            if isinstance(holder, Iin)
            else row["holder_bin"] == holder.value
        )
        if same_holder and row["land_right"] == right:
            raise AlreadyExists(f"this right is registered on the plot since {row['since_date']}")
        iin = holder.value if isinstance(holder, Iin) else None
        bin_ = holder.value if isinstance(holder, Bin) else None
        self.store.register_right(
            (number, right, iin, bin_, since.isoformat()), int(row["right_id"])
        )
        updated = self.store.plot(number)
        assert updated is not None
        return _plot(updated)
