"""Fill the vehicle registry from the synthetic world, and the contract samples.

- Every vehicle of `world.vehicles_of(person)` is registered to its owner, with the
  world's VIN, plate, make, model, year, colour and registration date; its
  registration certificate is numbered from the world's vehicle number.
- Companies have fleets of their own: freight carriers (ОКЭД 49410) three to twelve
  trucks, about a third of the other companies one or two cars, on legal-entity
  plates (three digits, two letters) of their region. Liquidated companies have none.
  These are this registry's own records (`world.draw("vehicles", …)`), not the world's.

The sequences for new plates and certificates start above every number used here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from adapters.population import Company, World
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from adapters.vehicles.identifiers import company_plate
from adapters.vehicles.store import (
    INDEXES,
    OWNERSHIP_INSERT,
    SCHEMA_VERSION,
    SEQUENCE_INSERT,
    TABLES,
    VEHICLE_INSERT,
)
from govbus.ids import Bin
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2 as pb

__all__ = [
    "COMPANY_PLATE_SEQUENCE",
    "PERSON_PLATE_SEQUENCE",
    "contract_samples",
    "new_certificate",
    "populate",
]

PERSON_PLATE_SEQUENCE = "person-plate"
COMPANY_PLATE_SEQUENCE = "company-plate-{region:02d}"
_FREIGHT_OKED = "49410"
_CARS_PER_MILLE = 330
_Models = tuple[tuple[str, str, tuple[str, ...]], ...]
_TRUCKS: _Models = (
    ("XTC", "KAMAZ", ("5490", "65115", "43118")),
    ("WMA", "MAN", ("TGS", "TGX")),
    ("YV2", "Volvo", ("FH", "FM")),
    ("LZG", "Shacman", ("X3000", "F3000")),
)
_CARS: _Models = (
    ("XTA", "LADA", ("Largus", "Vesta")),
    ("KMH", "Hyundai", ("Sonata", "Staria")),
    ("JTD", "Toyota", ("Camry", "Land Cruiser", "Hiace")),
    ("XWB", "Chevrolet", ("Cobalt", "Damas")),
)
_COLOURS = ("белый", "серебристый", "чёрный", "серый", "синий")


def world_certificate(number: int) -> str:
    return f"AA{number:08d}"


def _company_certificate(number: int) -> str:
    return f"AB{number:08d}"


def new_certificate(number: int) -> str:
    """Certificates issued by the registry itself (registrations and transfers)."""
    return f"BA{number:08d}"


class _Fill:
    def __init__(self, world: World) -> None:
        self.world = world
        self.vehicles: list[tuple[Any, ...]] = []
        self.ownerships: list[tuple[Any, ...]] = []
        self.company_plates: dict[int, int] = {}  # region → plates used
        self.fleet = 0  # company vehicles so far: their certificates' numbers

    def persons(self) -> None:
        for person in self.world.persons():
            for v in self.world.vehicles_of(person):
                number = 2 * person.index + v.slot
                region = person.address.region.code
                self.vehicles.append((v.vin, v.plate, v.make, v.model, v.year, v.colour, region))
                self.ownerships.append(
                    (
                        v.vin,
                        person.iin,
                        None,
                        v.registered.isoformat(),
                        None,
                        world_certificate(number),
                    )
                )

    def company(self, company: Company) -> None:
        if company.liquidated is not None:
            return
        draw = self.world.draw("vehicles", "fleet", company.index)
        if company.oked_code == _FREIGHT_OKED:
            models, count = _TRUCKS, draw.between(3, 12)
        elif draw.chance(_CARS_PER_MILLE):
            models, count = _CARS, draw.between(1, 2)
        else:
            return
        region = company.address.region.code
        days = (self.world.today - company.registered).days
        for slot in range(count):
            wmi, make, names = draw.pick(models)
            registered = company.registered + dt.timedelta(days=draw.between(0, days - 1))
            year = max(1995, registered.year - draw.between(0, 3))
            plate_number = self.company_plates.get(region, 0)
            self.company_plates[region] = plate_number + 1
            vin = f"{wmi}Y{company.index:09d}{slot:04d}"
            self.vehicles.append(
                (
                    vin,
                    company_plate(plate_number, region),
                    make,
                    draw.pick(names),
                    year,
                    draw.pick(_COLOURS),
                    region,
                )
            )
            self.ownerships.append(
                (
                    vin,
                    None,
                    company.bin,
                    registered.isoformat(),
                    None,
                    _company_certificate(self.fleet),
                )
            )
            self.fleet += 1


def populate(db_path: Path, world: World) -> None:
    fill = _Fill(world)
    fill.persons()
    for company in world.companies():
        fill.company(company)
    sequences = [(PERSON_PLATE_SEQUENCE, 2 * world.size), ("certificate", 0)]
    sequences += [
        (COMPANY_PLATE_SEQUENCE.format(region=region), used)
        for region, used in sorted(fill.company_plates.items())
    ]
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(VEHICLE_INSERT, sorted(fill.vehicles))
        conn.executemany(OWNERSHIP_INSERT, fill.ownerships)
        conn.executemany(SEQUENCE_INSERT, sequences)


def contract_samples(world: World) -> ContractSamples:
    owners = [p for p in world.persons() if p.vehicles]
    owner, buyer = owners[0], owners[1]
    car = world.vehicles_of(owner)[0]
    sold = world.vehicles_of(buyer)[0]
    by_owner = [pb.ListVehiclesByOwnerRequest(owner=pb.Owner(iin=owner.iin))]
    carrier = next(
        (c for c in world.companies() if c.oked_code == _FREIGHT_OKED and not c.liquidated), None
    )
    if carrier is not None:
        by_owner.append(pb.ListVehiclesByOwnerRequest(owner=pb.Owner(bin=carrier.bin)))
    nobody = Bin.build(1999, 12, 99998) or Bin.build(1999, 12, 99999)
    assert nobody is not None
    return ContractSamples(
        valid={
            "ListVehiclesByOwner": by_owner,
            "GetVehicle": [
                pb.GetVehicleRequest(vin=car.vin),
                pb.GetVehicleRequest(plate=car.plate),
            ],
            "RegisterVehicle": [
                pb.RegisterVehicleRequest(
                    vin=f"XTAR{world.seed:013d}",  # a new car, never in the world
                    make="LADA",
                    model="Vesta",
                    year=world.today.year,
                    colour="белый",
                    owner=pb.Owner(iin=owner.iin),
                    region_code=owner.address.region.code,
                )
            ],
            # The buyer's car goes to the first owner.
            "TransferVehicle": [
                pb.TransferVehicleRequest(
                    vin=sold.vin,
                    new_owner=pb.Owner(iin=owner.iin),
                    transfer_date=world.today.isoformat(),
                )
            ],
        },
        unknown={
            "ListVehiclesByOwner": [
                pb.ListVehiclesByOwnerRequest(owner=pb.Owner(bin=nobody.value))
            ],
            "GetVehicle": [
                pb.GetVehicleRequest(vin="XTAU0000000000000"),
                pb.GetVehicleRequest(plate="999ZZZ20"),
            ],
            "TransferVehicle": [
                pb.TransferVehicleRequest(
                    vin="XTAU0000000000000", new_owner=pb.Owner(iin=owner.iin)
                )
            ],
        },
        invalid={
            "GetVehicle": [
                pb.GetVehicleRequest(vin="XTA12345"),
                pb.GetVehicleRequest(vin="XTAO0000000000000"),  # O is not used in VINs
                pb.GetVehicleRequest(plate="12ABC02"),
                pb.GetVehicleRequest(plate="123ABC99"),
            ],
            "RegisterVehicle": [
                pb.RegisterVehicleRequest(
                    vin="XTA-1",
                    make="LADA",
                    model="Vesta",
                    year=2024,
                    colour="белый",
                    owner=pb.Owner(iin=owner.iin),
                    region_code=2,
                )
            ],
            "TransferVehicle": [
                pb.TransferVehicleRequest(vin="", new_owner=pb.Owner(iin=owner.iin))
            ],
        },
    )
