"""Fill the address register from the synthetic world, and the contract samples.

Every household's home, every company's office and every school, kindergarten
and clinic has its address here; other registries refer to them by РКА code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.address.store import INDEXES, INSERT, SCHEMA_VERSION, TABLES
from adapters.population import Address, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.pb.agencies.address.v1 import address_pb2 as pb

__all__ = ["address_row", "contract_samples", "populate"]


def address_row(a: Address) -> tuple[Any, ...]:
    return (
        a.rca,
        a.kind.value,
        a.region.code,
        a.region.name,
        a.city.name,
        a.street,
        a.house,
        a.flat,
        a.postal_code,
    )


def _rows(world: World) -> Iterator[tuple[Any, ...]]:
    for address in world.addresses():
        yield address_row(address)


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(INSERT, _rows(world))


def contract_samples(world: World) -> ContractSamples:
    home = world.person(0).address
    return ContractSamples(
        valid={
            "GetAddress": [pb.GetAddressRequest(rca=home.rca)],
            "SearchAddresses": [
                pb.SearchAddressesRequest(city=home.city.name, street=home.street, limit=10)
            ],
            "RegisterAddress": [
                pb.RegisterAddressRequest(
                    region_code=home.region.code,
                    city=home.city.name,
                    street=home.street,
                    house="999",
                    flat="1",
                    postal_code=home.postal_code,
                )
            ],
        },
        unknown={
            "GetAddress": [pb.GetAddressRequest(rca=f"{home.region.code:02d}19999999999999")],
            "SearchAddresses": [pb.SearchAddressesRequest(city="Атлантида")],
        },
        invalid={
            "GetAddress": [
                pb.GetAddressRequest(rca=home.rca[:15]),
                pb.GetAddressRequest(rca="99" + home.rca[2:]),
                pb.GetAddressRequest(rca="ABCDEFGHIJKLMNOP"),
            ]
        },
    )
