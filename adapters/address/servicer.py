"""The address register as a gRPC service: `kz.gov.address.v1.AddressRegister`.

Addresses are not personal data; they are keyed by the 16-digit РКА code, parsed
by `adapters.population.geography.parse_rca` (a malformed code is INVALID_IDENTIFIER).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.address.store import AddressStore
from adapters.population.geography import REGIONS, AddressKind, format_rca, parse_rca
from adapters.sdk.fields import limit_field, text_field
from govbus.errors import AlreadyExists, InvalidRequest, NotFound
from govbus.pb.agencies.address.v1 import address_pb2 as pb
from govbus.pb.agencies.address.v1 import address_pb2_grpc as pb_grpc

__all__ = ["AddressRegisterServicer"]

_REGIONS = {r.code: r for r in REGIONS}


def _address(row: sqlite3.Row) -> pb.Address:
    flat = f", кв. {row['flat']}" if row["flat"] else ""
    return pb.Address(
        rca=row["rca"],
        kind=row["kind"],
        region_code=row["region_code"],
        region=row["region"],
        city=row["city"],
        street=row["street"],
        house=row["house"],
        flat=row["flat"],
        postal_code=row["postal_code"],
        line=f"{row['city']}, {row['street']}, д. {row['house']}{flat}",
    )


class AddressRegisterServicer(pb_grpc.AddressRegisterServicer):
    def __init__(self, store: AddressStore) -> None:
        self.store = store

    async def GetAddress(self, request: pb.GetAddressRequest, context: Any) -> pb.Address:
        rca = parse_rca(request.rca)
        row = self.store.get(rca)
        if row is None:
            raise NotFound(f"no address with code {rca}")
        return _address(row)

    async def SearchAddresses(
        self, request: pb.SearchAddressesRequest, context: Any
    ) -> AsyncIterator[pb.Address]:
        city = text_field(request.city, "city")
        street = text_field(request.street, "street", required=False)
        house = text_field(request.house, "house", required=False, max_length=20)
        limit = limit_field(request.limit)
        for row in self.store.search(city, street, house, limit):
            yield _address(row)

    async def RegisterAddress(self, request: pb.RegisterAddressRequest, context: Any) -> pb.Address:
        region = _REGIONS.get(request.region_code)
        if region is None:
            raise InvalidRequest(f"region_code {request.region_code} is not a region of Kazakhstan")
        city = text_field(request.city, "city")
        street = text_field(request.street, "street")
        house = text_field(request.house, "house", max_length=20)
        flat = text_field(request.flat, "flat", required=False, max_length=20)
        postal = text_field(request.postal_code, "postal_code", max_length=6)
        if len(postal) != 6 or not postal.isdigit():
            raise InvalidRequest("postal_code must be 6 digits")
        existing = self.store.find(city, street, house, flat)
        if existing is not None:
            raise AlreadyExists(f"the address is already registered as {existing['rca']}")
        rca = self.store.add(
            lambda sequence: format_rca(region.code, AddressKind.REGISTERED, sequence),
            (
                AddressKind.REGISTERED.value,
                region.code,
                region.name,
                city,
                street,
                house,
                flat,
                postal,
            ),
        )
        row = self.store.get(rca)
        assert row is not None
        return _address(row)
