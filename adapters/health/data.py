"""Fill the health registry from the synthetic world, and the contract samples.

- Clinics are the world's polyclinics (their addresses are in the address
  register); each has `DISTRICTS` districts, with a paediatrician and a general
  practitioner each.
- Every living person is attached to the clinic serving their street (one in
  twelve chose another clinic of their city) since they moved in; a person who had
  an earlier registration was attached to that address's clinic before. A person's
  district follows from their building. The dead were detached on their death.
- Vaccinations follow the national calendar from 2008 (the electronic register):
  childhood doses, АДС-М at 16, HPV for girls of 11 since September 2024, two doses
  against COVID-19 in 2021 for about half the adults; one child in fifty is
  unvaccinated after the maternity ward (parents' refusal). Each dose is recorded
  by the clinic the person was attached to on that day.

Choices come from `world.draw("health", …)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.health.store import (
    ATTACHMENT_INSERT,
    CLINIC_INSERT,
    DISTRICTS,
    DOCTOR_INSERT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    VACCINATION_INSERT,
)
from adapters.health.vaccines import SCHEDULE
from adapters.population import Address, Institution, InstitutionKind, Person, World
from adapters.population.names import FEMALE_FIRST, MALE_FIRST, SURNAMES, NameStyle, surname_for
from adapters.population.world import SUPERBLOCK
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.ids import Iin, Sex
from govbus.pb.agencies.health.v1 import health_pb2 as pb

__all__ = ["CLINIC", "contract_samples", "district_of", "populate"]

CLINIC = InstitutionKind.CLINIC
_RECORDS_FROM = dt.date(2008, 1, 1)
_HPV_FROM = dt.date(2024, 9, 1)
_COVID_FROM = dt.date(2021, 2, 1)
_OTHER_CLINIC_PER_MILLE = 85
_REFUSED_PER_MILLE = 20
_COVID_PER_MILLE = 550
_AT_BIRTH = {"BCG", "HEPB"}
_LAST_CHILDHOOD_DOSE = dt.timedelta(days=max(d.age_days for d in SCHEDULE) + 14)


def district_of(iin: str) -> int:
    """The district of a new attachment, before the clinic assigns one by address."""
    return int(iin) % DISTRICTS + 1


def _district(address: Address) -> int:
    # One building (a superblock of the world) is one district's.
    return address.sequence // SUPERBLOCK % DISTRICTS + 1


def _doctors(world: World, clinics: tuple[Institution, ...]) -> Iterator[tuple[Any, ...]]:
    for clinic in clinics:
        for district in range(1, DISTRICTS + 1):
            for paediatric in (1, 0):
                draw = world.draw("health", "doctor", clinic.id, district, paediatric)
                style = NameStyle.KAZAKH if draw.chance(650) else NameStyle.RUSSIAN
                male = draw.chance(200)
                first = draw.pick((MALE_FIRST if male else FEMALE_FIRST)[style])
                surname = surname_for(draw.pick(SURNAMES[style]), male)
                father = draw.pick(MALE_FIRST[style])
                yield clinic.id, district, paediatric, f"{surname} {first[0]}. {father[0]}."


class _Fill:
    def __init__(self, world: World) -> None:
        self.world = world
        self.today = world.today
        self.by_city: dict[str, list[Institution]] = {}
        for clinic in world.institutions(CLINIC):
            self.by_city.setdefault(clinic.city.code, []).append(clinic)
        self.attachments: list[tuple[Any, ...]] = []
        self.vaccinations: list[tuple[Any, ...]] = []

    def person(self, person: Person) -> None:
        world, today = self.world, self.today
        draw = world.draw("health", person.index)
        clinic = world.institution_for(CLINIC, person.address)
        if draw.chance(_OTHER_CLINIC_PER_MILLE):
            clinic = draw.pick(self.by_city[person.address.city.code])
        attached = person.registered_since + dt.timedelta(days=draw.between(0, 30))
        attached = min(attached, today - dt.timedelta(days=1))
        death = person.death_date
        previous: tuple[str, dt.date] | None = None
        if person.previous_registration is not None:
            address, since, until = person.previous_registration
            before = world.institution_for(CLINIC, address)
            start = min(since + dt.timedelta(days=draw.between(0, 30)), until)
            if start < attached and (death is None or start < death):
                end = attached if death is None else min(attached, death)
                self.attachments.append(
                    (person.iin, before.id, _district(address), start.isoformat(), end.isoformat())
                )
                previous = before.id, attached
        if death is None or attached < death:
            self.attachments.append(
                (
                    person.iin,
                    clinic.id,
                    _district(person.address),
                    attached.isoformat(),
                    None if death is None else death.isoformat(),
                )
            )
        self.vaccinate(person, draw, clinic.id, previous)

    def vaccinate(
        self, person: Person, draw: Any, clinic: str, previous: tuple[str, dt.date] | None
    ) -> None:
        born, today = person.birth_date, self.today
        end = min(today, person.death_date or today)

        def record(code: str, dose: int, day: dt.date) -> None:
            if _RECORDS_FROM <= day < end:
                at = previous[0] if previous is not None and day < previous[1] else clinic
                self.vaccinations.append((person.iin, code, dose, day.isoformat(), at))

        refused = draw.chance(_REFUSED_PER_MILLE)
        visits: dict[int, dt.date] = {}
        # Childhood doses are all before the register for anyone born long before it.
        calendar = SCHEDULE if born + _LAST_CHILDHOOD_DOSE >= _RECORDS_FROM else ()
        for due in calendar:
            if refused and (due.code not in _AT_BIRTH or due.dose > 1):
                continue
            day = visits.get(due.age_days)
            if day is None:
                delay = 0 if due.age_days <= 1 else draw.between(0, 14)
                day = visits[due.age_days] = born + dt.timedelta(days=due.age_days + delay)
            record(due.code, due.dose, day)
        if person.sex is Sex.FEMALE and not refused and draw.chance(700):
            day = born + dt.timedelta(days=11 * 365 + draw.between(0, 60))
            if day >= _HPV_FROM:
                record("HPV", 1, day)
        adult_in_2021 = born <= dt.date(2003, 6, 1)
        if adult_in_2021 and draw.chance(_COVID_PER_MILLE):
            first = _COVID_FROM + dt.timedelta(days=draw.between(0, 300))
            record("COVID19", 1, first)
            if draw.chance(900) and first < end:
                record("COVID19", 2, first + dt.timedelta(days=draw.between(21, 35)))


def populate(db_path: Path, world: World) -> None:
    clinics = world.institutions(CLINIC)
    fill = _Fill(world)
    for person in world.persons():
        fill.person(person)
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(
            CLINIC_INSERT, ((c.id, c.name, c.city.name, c.address.rca) for c in clinics)
        )
        conn.executemany(DOCTOR_INSERT, _doctors(world, clinics))
        conn.executemany(ATTACHMENT_INSERT, fill.attachments)
        fill.vaccinations.sort()
        conn.executemany(VACCINATION_INSERT, fill.vaccinations)


def contract_samples(world: World) -> ContractSamples:
    today = world.today
    child = next(p for p in world.persons() if p.alive and 2 <= p.age(today) < 10)
    clinic = world.institution_for(CLINIC, child.address)
    newborn = Iin.build(today, Sex.MALE, 9300 + world.seed % 300 * 2) or Iin.build(
        today, Sex.MALE, 9301 + world.seed % 300 * 2
    )
    assert newborn is not None
    return ContractSamples(
        valid={
            "GetAttachment": [pb.GetAttachmentRequest(iin=child.iin)],
            "ListVaccinations": [pb.ListVaccinationsRequest(iin=child.iin)],
            "ListClinics": [
                pb.ListClinicsRequest(city=child.address.city.name),
                pb.ListClinicsRequest(),
            ],
            "AttachToClinic": [
                pb.AttachToClinicRequest(
                    iin=newborn.value, clinic_id=clinic.id, attached_date=today.isoformat()
                )
            ],
            "RecordVaccination": [
                pb.RecordVaccinationRequest(
                    iin=newborn.value,
                    vaccine_code="BCG",
                    dose=1,
                    given_date=today.isoformat(),
                    clinic_id=clinic.id,
                )
            ],
        },
        unknown={
            "ListClinics": [pb.ListClinicsRequest(city="Атлантида")],
            "AttachToClinic": [
                pb.AttachToClinicRequest(iin=newborn.value, clinic_id="PHC-XXX-999")
            ],
            "RecordVaccination": [
                pb.RecordVaccinationRequest(
                    iin=newborn.value, vaccine_code="HEPB", dose=1, clinic_id="PHC-XXX-999"
                )
            ],
        },
    )
