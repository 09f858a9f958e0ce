"""Regions, cities and streets of Kazakhstan, and the address code (РКА) format.

The world's addresses are built from *street slots*: every (city, street) pair is a
slot, bigger cities have more slots. A superblock of the world (40 persons) lives in
one building or row of houses on one slot, so addresses are unique by construction
and computable from an index alone.

The address register code (РКА, 16 digits) is parsed here, in one place, for every
agency that takes an address: two region digits, one kind digit, thirteen digits
of sequence. A malformed code is an `InvalidIdentifier`, never a lookup.

Pure data and pure functions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from govbus.errors import InvalidIdentifier

__all__ = [
    "CITIES",
    "REGIONS",
    "STREET_SLOTS",
    "AddressKind",
    "City",
    "Region",
    "StreetSlot",
    "format_rca",
    "parse_rca",
]


@dataclass(frozen=True, slots=True)
class Region:
    code: int  # two digits, as on vehicle plates
    name: str


@dataclass(frozen=True, slots=True)
class City:
    code: str  # short ASCII code used in ids (kindergartens, schools, clinics)
    name: str
    region: Region
    postal_base: int
    streets: int  # how many street slots the city gets (its weight)
    apartments_per_mille: int  # share of superblocks that are apartment buildings


@dataclass(frozen=True, slots=True)
class StreetSlot:
    index: int
    city: City
    street: str
    local: int  # index of the street within its city


class AddressKind(enum.Enum):
    RESIDENTIAL = 1
    COMMERCIAL = 2
    REGISTERED = 3  # added later through the address register's own write
    INSTITUTION = 4  # schools, kindergartens, clinics


_R = Region
REGIONS: tuple[Region, ...] = (
    _R(1, "г. Астана"),
    _R(2, "г. Алматы"),
    _R(3, "Акмолинская область"),
    _R(4, "Актюбинская область"),
    _R(5, "Алматинская область"),
    _R(6, "Атырауская область"),
    _R(7, "Западно-Казахстанская область"),
    _R(8, "Жамбылская область"),
    _R(9, "Карагандинская область"),
    _R(10, "Костанайская область"),
    _R(11, "Кызылординская область"),
    _R(12, "Мангистауская область"),
    _R(13, "Туркестанская область"),
    _R(14, "Павлодарская область"),
    _R(15, "Северо-Казахстанская область"),
    _R(16, "Восточно-Казахстанская область"),
    _R(17, "г. Шымкент"),
    _R(18, "область Абай"),
    _R(19, "область Жетісу"),
    _R(20, "область Ұлытау"),
)
_BY_CODE = {r.code: r for r in REGIONS}


def _city(code: str, name: str, region: int, postal: int, streets: int, flats: int) -> City:
    return City(code, name, _BY_CODE[region], postal, streets, flats)


CITIES: tuple[City, ...] = (
    _city("ALA", "Алматы", 2, 50000, 40, 850),
    _city("AST", "Астана", 1, 10000, 30, 900),
    _city("SHY", "Шымкент", 17, 160000, 25, 600),
    _city("KGF", "Караганда", 9, 100000, 12, 800),
    _city("AKX", "Актобе", 4, 30000, 12, 700),
    _city("DMB", "Тараз", 8, 80000, 10, 550),
    _city("PWQ", "Павлодар", 14, 140000, 9, 800),
    _city("UKK", "Усть-Каменогорск", 16, 70000, 9, 750),
    _city("PLX", "Семей", 18, 71000, 8, 650),
    _city("GUW", "Атырау", 6, 60000, 8, 600),
    _city("KSN", "Костанай", 10, 110000, 7, 700),
    _city("KZO", "Кызылорда", 11, 120000, 7, 450),
    _city("URA", "Уральск", 7, 90000, 7, 600),
    _city("PPK", "Петропавловск", 15, 150000, 6, 700),
    _city("SCO", "Актау", 12, 130000, 6, 900),
    _city("TUR", "Туркестан", 13, 161200, 6, 300),
    _city("TDK", "Талдыкорган", 19, 40000, 5, 550),
    _city("KOV", "Кокшетау", 3, 20000, 5, 600),
    _city("KNV", "Конаев", 5, 40400, 4, 400),
    _city("DZN", "Жезказган", 20, 100600, 3, 600),
)

_STREETS = (
    "ул. Абая",
    "пр. Достык",
    "ул. Сатпаева",
    "ул. Толе би",
    "ул. Жибек жолы",
    "ул. Райымбека",
    "ул. Кабанбай батыра",
    "ул. Богенбай батыра",
    "пр. Республики",
    "ул. Мира",
    "ул. Победы",
    "ул. Пушкина",
    "ул. Гагарина",
    "ул. Жамбыла",
    "ул. Ауэзова",
    "ул. Сейфуллина",
    "ул. Момышулы",
    "ул. Желтоксан",
    "ул. Тауелсиздик",
    "ул. Кенесары",
    "ул. Байтурсынова",
    "ул. Есенберлина",
    "ул. Курмангазы",
    "ул. Валиханова",
    "пр. Абылай хана",
    "пр. Туран",
    "ул. Кунаева",
    "ул. Айтеке би",
    "ул. Казыбек би",
    "ул. Алтынсарина",
    "ул. Махамбета",
    "ул. Молодёжная",
    "ул. Строительная",
    "ул. Центральная",
    "ул. Школьная",
    "ул. Садовая",
    "ул. Степная",
    "ул. Северная",
    "ул. Южная",
    "ул. Набережная",
)


def _slots() -> tuple[StreetSlot, ...]:
    slots: list[StreetSlot] = []
    for city in CITIES:
        for local in range(city.streets):
            slots.append(StreetSlot(len(slots), city, _STREETS[local % len(_STREETS)], local))
    return tuple(slots)


STREET_SLOTS: tuple[StreetSlot, ...] = _slots()

_RCA_DIGITS = 16
_SEQUENCE_LIMIT = 10**13


def format_rca(region: int, kind: AddressKind, sequence: int) -> str:
    """The 16-digit address code for a region, kind and sequence number."""
    if not 0 <= sequence < _SEQUENCE_LIMIT:
        raise InvalidIdentifier(f"address sequence {sequence} is out of range")
    return f"{region:02d}{kind.value}{sequence:013d}"


def parse_rca(text: object) -> str:
    """Validate an address code (РКА): 16 digits, a known region, a known kind."""
    if not isinstance(text, str):
        raise InvalidIdentifier("address code (РКА) must be a string of 16 digits")
    value = text.strip()
    if len(value) != _RCA_DIGITS or not value.isascii() or not value.isdigit():
        shown = value if len(value) <= 24 else value[:24] + "…"
        raise InvalidIdentifier(f"address code (РКА) must be exactly 16 digits, got {shown!r}")
    if int(value[:2]) not in _BY_CODE:
        raise InvalidIdentifier(f"address code {value}: unknown region {value[:2]}")
    if int(value[2]) not in {k.value for k in AddressKind}:
        raise InvalidIdentifier(f"address code {value}: unknown address kind {value[2]}")
    return value
