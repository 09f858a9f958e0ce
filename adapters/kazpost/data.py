"""Fill the Kazpost store from the synthetic world, and the contract samples.

- **Addresses**: every address of the world with its postal code; parcel lockers
  (postamats) stand in the larger cities only.
- **Delivery contacts** of every living person from 16: the phone the world gives,
  an e-mail for many (more among the young), the registered address (the same
  РКА code as the migration police's), and a preferred channel — post mostly,
  a parcel locker for a fifth of city dwellers, a courier for some.
- **Deliveries** of the last four years: about 45 % of new identity cards (the
  world's document issue date) and the new driving licences of three drivers in
  ten (the licence register's own issue dates, from
  `adapters.licences.data.driving_record`) were sent by post rather than collected
  at a ЦОН, and some property and vehicle owners got paper tax notices. Each went
  to the address the person was registered at on the day (the previous one before
  a move); most were delivered within days, a few returned, the latest are still
  on their way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.kazpost.store import (
    ADDRESS_INSERT,
    CONTACT_INSERT,
    DELIVERY_INSERT,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    tracking_number,
)
from adapters.licences.data import driving_record
from adapters.population import Address, Draw, Household, Person, World
from adapters.population.geography import City
from adapters.sdk.contract import ContractSamples
from adapters.sdk.database import bulk_load
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2 as pb

__all__ = [
    "DOCUMENT_KINDS",
    "SENDER_ID_CARD",
    "SENDER_LICENCE",
    "SENDER_TAX",
    "Delivery",
    "contract_samples",
    "has_postamats",
    "household_deliveries",
    "populate",
]

DOCUMENT_KINDS = (
    "ID_CARD",
    "PASSPORT",
    "DRIVING_LICENCE",
    "VEHICLE_REGISTRATION",
    "BIRTH_CERTIFICATE",
    "MARRIAGE_CERTIFICATE",
    "MILITARY_ID",
    "PENSION_NOTICE",
    "TAX_NOTICE",
    "COURT_NOTICE",
)
SENDER_ID_CARD = "Министерство внутренних дел РК"
SENDER_LICENCE = "Специализированный ЦОН (водительские удостоверения)"
SENDER_TAX = "Комитет государственных доходов МФ РК"
_POSTAMAT_MIN_STREETS = 8  # cities this big have parcel lockers
_WINDOW_DAYS = 4 * 365
_SERIALS_PER_PERSON = 16
# Cyrillic (Russian and Kazakh letters) to Latin, for e-mail addresses.
_TRANSLIT = (
    "а:a б:b в:v г:g д:d е:e ё:e ж:zh з:z и:i й:i к:k л:l м:m н:n о:o п:p р:r с:s т:t у:u "
    "ф:f х:kh ц:ts ч:ch ш:sh щ:sch ъ: ы:y ь: э:e ю:yu я:ya ә:a ғ:g қ:k ң:n ө:o ұ:u ү:u һ:h і:i"
)
_LATIN = dict(pair.split(":") for pair in _TRANSLIT.split(" "))
_MAIL_DOMAINS = ("mail.ru", "gmail.com", "mail.kz", "inbox.ru", "yandex.kz")


def has_postamats(city: City) -> bool:
    return city.streets >= _POSTAMAT_MIN_STREETS


def _latin(text: str) -> str:
    return "".join(_LATIN.get(c, c) for c in text.lower())


def _email(person: Person, draw: Draw) -> str:
    share = 600 if person.age() < 35 else 400 if person.age() < 60 else 120
    if not draw.chance(share):
        return ""
    local = f"{_latin(person.first_name)}.{_latin(person.last_name)}"
    return f"{local}{person.birth_date.year % 100:02d}@{draw.pick(_MAIL_DOMAINS)}"


def _preferred(city: City, draw: Draw) -> int:
    roll = draw.below(1000)
    if roll < 200 and has_postamats(city):
        return pb.DELIVERY_CHANNEL_POSTAMAT
    if roll >= 900:
        return pb.DELIVERY_CHANNEL_COURIER
    return pb.DELIVERY_CHANNEL_POST


def _address_on(person: Person, day: dt.date) -> Address:
    previous = person.previous_registration
    if previous is not None and day < person.registered_since:
        return previous[0]
    return person.address


#: A delivery row: (tracking, iin, kind, sender, channel, status, created, delivered, rca).
Delivery = tuple[Any, ...]


def _delivery(
    world: World, person: Person, draw: Draw, serial: int, kind: str, sender: str, day: dt.date
) -> Delivery:
    channel = _preferred(_address_on(person, day).city, draw)
    created = day + dt.timedelta(days=draw.between(1, 7))
    delivered: dt.date | None = created + dt.timedelta(days=draw.between(2, 9))
    status = pb.DELIVERY_STATUS_DELIVERED
    assert delivered is not None
    if delivered >= world.today:
        status, delivered = pb.DELIVERY_STATUS_IN_TRANSIT, None
        if created >= world.today - dt.timedelta(days=1):
            status = pb.DELIVERY_STATUS_CREATED
    elif draw.chance(40):
        status, delivered = pb.DELIVERY_STATUS_RETURNED, None
    return (
        tracking_number(channel, serial),
        person.iin,
        kind,
        sender,
        channel,
        status,
        created.isoformat(),
        None if delivered is None else delivered.isoformat(),
        _address_on(person, created).rca,
    )


def household_deliveries(world: World, household: Household) -> Iterator[Delivery]:
    """Every delivery to a household's members (see the module docstring)."""
    since = world.today - dt.timedelta(days=_WINDOW_DAYS)
    last = world.today - dt.timedelta(days=1)
    owners = set(world.property_of(household).owners)
    for person in household.members:
        if not person.alive:
            continue
        draw = world.draw("kazpost", person.index)
        serial = person.index * _SERIALS_PER_PERSON
        events: list[tuple[str, str, dt.date]] = []
        document = person.document
        if document is not None and since <= document.issued <= last and draw.chance(450):
            events.append(("ID_CARD", SENDER_ID_CARD, document.issued))
        # Three drivers in ten have their licences posted rather than collect them.
        by_post = person.age() >= 18 and draw.chance(300)
        record = driving_record(world, person) if by_post else None
        for licence in () if record is None else record.licences:
            if since <= licence.issued <= last:
                events.append(("DRIVING_LICENCE", SENDER_LICENCE, licence.issued))
        if person.index in owners or person.vehicles:
            for year in range(world.today.year - 3, world.today.year):
                if draw.chance(150):
                    events.append(("TAX_NOTICE", SENDER_TAX, dt.date(year, 9, draw.between(1, 28))))
        for k, (kind, sender, day) in enumerate(events[:_SERIALS_PER_PERSON]):
            yield _delivery(world, person, draw, serial + k, kind, sender, day)


def _contact(world: World, person: Person) -> tuple[Any, ...] | None:
    if not person.alive or person.age() < 16:
        return None
    draw = world.draw("kazpost-contact", person.index)
    return (
        person.iin,
        person.phone,
        _email(person, draw),
        person.address.rca,
        _preferred(person.address.city, draw),
        max(
            person.registered_since, world.today - dt.timedelta(days=draw.between(1, 2000))
        ).isoformat(),
    )


def _addresses(world: World) -> Iterator[tuple[Any, ...]]:
    for address in world.addresses():
        yield (
            address.rca,
            address.postal_code,
            address.city.name,
            1 if has_postamats(address.city) else 0,
        )


def populate(db_path: Path, world: World) -> None:
    contacts: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []
    for household in world.households():
        for person in household.members:
            contact = _contact(world, person)
            if contact is not None:
                contacts.append(contact)
        deliveries.extend(household_deliveries(world, household))
    with bulk_load(db_path, tables=TABLES, indexes=INDEXES, schema_version=SCHEMA_VERSION) as conn:
        conn.executemany(ADDRESS_INSERT, _addresses(world))
        conn.executemany(CONTACT_INSERT, contacts)
        conn.executemany(DELIVERY_INSERT, deliveries)


def contract_samples(world: World) -> ContractSamples:
    addressee: Person | None = None
    for household in world.households():
        if any(True for _ in household_deliveries(world, household)):
            addressee = next(p for p in household.members if p.alive and p.age() >= 16 and p.phone)
            break
    if addressee is None:
        raise LookupError("the world has no delivery: make it bigger")
    movers = [p for p in world.persons() if p.alive and p.age() >= 16]
    mover = movers[len(movers) // 2]
    other = next(h.address for h in world.households() if h.address.rca != mover.address.rca)
    return ContractSamples(
        valid={
            "GetDeliveryContact": [pb.GetDeliveryContactRequest(iin=addressee.iin)],
            "ListDeliveries": [pb.ListDeliveriesRequest(iin=addressee.iin)],
            "CreateDelivery": [
                pb.CreateDeliveryRequest(
                    iin=addressee.iin,
                    document_kind="PASSPORT",
                    sender=SENDER_ID_CARD,
                    channel=pb.DELIVERY_CHANNEL_POST,
                )
            ],
            "UpdateDeliveryContact": [
                pb.UpdateDeliveryContactRequest(
                    iin=mover.iin, rca=other.rca, preferred=pb.DELIVERY_CHANNEL_POST
                )
            ],
        },
        unknown={
            "CreateDelivery": [
                pb.CreateDeliveryRequest(
                    iin=addressee.iin,
                    document_kind="PASSPORT",
                    sender="ЦОН",
                    channel=pb.DELIVERY_CHANNEL_POST,
                    rca=f"{other.region.code:02d}19999999999999",
                )
            ]
        },
        invalid={
            "CreateDelivery": [
                pb.CreateDeliveryRequest(
                    iin=addressee.iin, document_kind="PASSPORT", sender="ЦОН", rca="123"
                )
            ],
            "UpdateDeliveryContact": [
                pb.UpdateDeliveryContactRequest(iin=mover.iin, rca="99" + "0" * 14)
            ],
        },
    )
