"""Fill the migration police store from the synthetic world, and the contract samples.

Every person is registered (permanently) at their household's address since they
moved in or were born, with the previous registration before that; a deceased
person's registration ends on the day of death.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.migration.store import ADDRESS_INSERT, INDEXES, INSERT, SCHEMA_VERSION, TABLES
from adapters.population import Role, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.pb.agencies.migration.v1 import migration_pb2 as pb

__all__ = ["contract_samples", "populate"]

_PERMANENT = pb.REGISTRATION_KIND_PERMANENT


def _addresses(world: World) -> Iterator[tuple[str, str]]:
    for address in world.addresses():
        yield address.rca, address.line()


def _registrations(world: World) -> Iterator[tuple[Any, ...]]:
    for p in world.persons():
        if p.previous_registration is not None:
            previous, since, until = p.previous_registration
            yield p.iin, previous.rca, _PERMANENT, since.isoformat(), until.isoformat()
        end = None if p.death_date is None else p.death_date.isoformat()
        yield p.iin, p.address.rca, _PERMANENT, p.registered_since.isoformat(), end


def populate(db_path: Path, world: World) -> None:
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(ADDRESS_INSERT, _addresses(world))
        conn.executemany(INSERT, _registrations(world))


def contract_samples(world: World) -> ContractSamples:
    mover = next(p for p in world.persons() if p.alive and p.role is Role.HEAD)
    leaver = next(
        p for p in world.persons() if p.alive and p.role is Role.CHILD and p.index != mover.index
    )
    other_home = next(h.address for h in world.households() if h.address.rca != mover.address.rca)
    return ContractSamples(
        valid={
            "GetRegistration": [pb.GetRegistrationRequest(iin=mover.iin)],
            "ListRegistrationHistory": [pb.ListRegistrationHistoryRequest(iin=mover.iin)],
            "ListResidents": [pb.ListResidentsRequest(rca=mover.address.rca)],
            "RegisterAtAddress": [
                pb.RegisterAtAddressRequest(
                    iin=mover.iin,
                    rca=other_home.rca,
                    kind=_PERMANENT,
                    since_date=world.today.isoformat(),
                )
            ],
            "Deregister": [
                pb.DeregisterRequest(
                    iin=leaver.iin, until_date=world.today.isoformat(), reason="выезд за рубеж"
                )
            ],
        },
        unknown={
            "ListResidents": [
                pb.ListResidentsRequest(rca=f"{mover.address.region.code:02d}19999999999999")
            ]
        },
        invalid={
            "ListResidents": [pb.ListResidentsRequest(rca="0000000000000000")],
            "RegisterAtAddress": [
                pb.RegisterAtAddressRequest(iin=mover.iin, rca="12345", kind=_PERMANENT)
            ],
        },
    )
