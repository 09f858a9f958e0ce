"""The vehicle registry as a gRPC service: `kz.gov.vehicles.v1.VehicleRegistry`.

Reads by owner (a person's IIN or a company's BIN), by VIN or by plate; writes for
the first registration (a plate of the region is assigned: three letters for a
person, two for a legal entity) and for a change of owner (the plate stays, a new
registration certificate is issued). Rules a registry enforces:

- a vehicle has one owner at a time, and a VIN is registered once;
- a vehicle is registered to an adult: a minor's is registered to a parent;
- a transfer is dated on or after the current registration, to someone else.

A person's data leaves only for the consent's subject: when `govbus-subject` is
given, a vehicle of another person is refused (CONSENT_SCOPE).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.population.geography import REGIONS
from adapters.sdk.context import RequestContext
from adapters.sdk.fields import bin_field, iin_field, optional_date_field, text_field
from adapters.vehicles.data import COMPANY_PLATE_SEQUENCE, PERSON_PLATE_SEQUENCE, new_certificate
from adapters.vehicles.identifiers import company_plate, parse_plate, parse_vin, person_plate
from adapters.vehicles.store import VehicleStore
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.ids import Bin, Iin
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2 as pb
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2_grpc as pb_grpc

__all__ = ["VehicleRegistryServicer"]

_ADULT = 18
_OLDEST_YEAR = 1950
_REGION_CODES = frozenset(r.code for r in REGIONS)


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _owner(owner: pb.Owner, field: str) -> Iin | Bin:
    which = owner.WhichOneof("id")
    if which == "iin":
        return iin_field(owner.iin, f"{field}.iin")
    if which == "bin":
        return bin_field(owner.bin, f"{field}.bin")
    raise InvalidRequest(f"{field}: an IIN or a BIN is required")


def _columns(owner: Iin | Bin) -> tuple[str | None, str | None]:
    return (owner.value, None) if isinstance(owner, Iin) else (None, owner.value)


def _vehicle(row: sqlite3.Row) -> pb.Vehicle:
    owner = pb.Owner(iin=row["owner_iin"]) if row["owner_iin"] else pb.Owner(bin=row["owner_bin"])
    return pb.Vehicle(
        vin=row["vin"],
        plate=row["plate"],
        make=row["make"],
        model=row["model"],
        year=row["year"],
        colour=row["colour"],
        owner=owner,
        registered_date=row["since_date"],
        certificate_number=row["certificate_number"],
    )


class VehicleRegistryServicer(pb_grpc.VehicleRegistryServicer):
    def __init__(self, store: VehicleStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def ListVehiclesByOwner(
        self, request: pb.ListVehiclesByOwnerRequest, context: Any
    ) -> AsyncIterator[pb.Vehicle]:
        owner = _owner(request.owner, "owner")
        if isinstance(owner, Iin):
            RequestContext.current().check_subject(owner, "owner.iin")
            rows = self.store.of_person(owner.value)
        else:
            rows = self.store.of_company(owner.value)
        for row in rows:
            yield _vehicle(row)

    async def GetVehicle(self, request: pb.GetVehicleRequest, context: Any) -> pb.Vehicle:
        which = request.WhichOneof("key")
        if which == "vin":
            vin = parse_vin(request.vin)
            row = self.store.by_vin(vin)
            missing = f"no vehicle with VIN {vin} is registered"
        elif which == "plate":
            plate = parse_plate(request.plate)
            row = self.store.by_plate(plate)
            missing = f"no vehicle with plate {plate} is registered"
        else:
            raise InvalidRequest("vin or plate is required")
        if row is None:
            raise NotFound(missing)
        if row["owner_iin"]:
            RequestContext.current().check_subject(row["owner_iin"], "owner.iin")
        return _vehicle(row)

    def _adult(self, owner: Iin | Bin, on: dt.date) -> None:
        if isinstance(owner, Iin) and _age(owner.birth_date, on) < _ADULT:
            raise FailedPrecondition(
                "a vehicle is registered to an adult: a minor's vehicle is registered to a parent"
            )

    async def RegisterVehicle(self, request: pb.RegisterVehicleRequest, context: Any) -> pb.Vehicle:
        vin = parse_vin(request.vin)
        owner = _owner(request.owner, "owner")
        make = text_field(request.make, "make", max_length=40)
        model = text_field(request.model, "model", max_length=60)
        colour = text_field(request.colour, "colour", max_length=40)
        today = self.today()
        if not _OLDEST_YEAR <= request.year <= today.year + 1:
            raise InvalidRequest(f"year must be {_OLDEST_YEAR}…{today.year + 1}")
        region = request.region_code
        if region not in _REGION_CODES:
            raise InvalidRequest(f"region_code {region} is not a region of Kazakhstan")
        if self.store.by_vin(vin) is not None:
            raise AlreadyExists(f"a vehicle with VIN {vin} is already registered")
        self._adult(owner, today)
        if isinstance(owner, Iin):
            sequence = PERSON_PLATE_SEQUENCE

            def plate_of(number: int) -> str:
                return person_plate(number, region)
        else:
            sequence = COMPANY_PLATE_SEQUENCE.format(region=region)

            def plate_of(number: int) -> str:
                return company_plate(number, region)

        self.store.register(
            (vin, make, model, request.year, colour, region),
            _columns(owner),
            today.isoformat(),
            sequence,
            plate_of,
            new_certificate,
        )
        row = self.store.by_vin(vin)
        assert row is not None
        return _vehicle(row)

    async def TransferVehicle(self, request: pb.TransferVehicleRequest, context: Any) -> pb.Vehicle:
        vin = parse_vin(request.vin)
        owner = _owner(request.new_owner, "new_owner")
        today = self.today()
        on = optional_date_field(request.transfer_date, "transfer_date") or today
        if on > today:
            raise InvalidRequest(f"transfer_date {on} is in the future")
        row = self.store.by_vin(vin)
        if row is None:
            raise NotFound(f"no vehicle with VIN {vin} is registered")
        if _columns(owner) == (row["owner_iin"], row["owner_bin"]):
            raise AlreadyExists("the vehicle is already registered to this owner")
        if on.isoformat() < row["since_date"]:
            raise FailedPrecondition(
                f"transfer_date is before the current registration of {row['since_date']}"
            )
        self._adult(owner, on)
        self.store.transfer(
            vin, int(row["ownership_id"]), _columns(owner), on.isoformat(), new_certificate
        )
        updated = self.store.by_vin(vin)
        assert updated is not None
        return _vehicle(updated)
