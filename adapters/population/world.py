"""The synthetic world: persons, households, companies, addresses, vehicles, properties.

`World(seed, persons=N)` describes a population in which everything is a pure
function of (seed, index): `world.person(i)` gives the same person in every
process, so each agency fills its own store on its own and the same person —
same IIN, name, birth date, parents, address — appears in every registry.

Layout (all by index arithmetic, no shared state):

- Persons come in *superblocks* of 40. A superblock is split into households by
  one of a few fixed size patterns (chosen by the seed); a household's id is the
  index of its first member. A household of one is a single adult; a larger one
  is a married couple (husband first, wife second) and their children.
- A superblock lives in one apartment building (flats 1…k) or one row of private
  houses on one street slot; its households' addresses follow from that.
- Each superblock owns two companies (`2·s` and `2·s+1`); the director of each is
  the head of one of the superblock's households.
- A person owns `person.vehicles` vehicles, numbered `(i, 0)`, `(i, 1)`.

IIN uniqueness: a person's birth date is chosen among the days whose ordinal is
congruent to `i mod 800`, and the IIN serial is `2·(i // 800)` or the next one (one
of the two always has a check digit: the last serial digit weighs 11 ≡ 0 in the
first pass and 2 in the second). Two persons thus differ in birth date or serial,
for up to 4,000,000 persons, and `World.index_of(iin)` inverts the mapping.

This module must never touch files, the clock or global random state.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from dataclasses import dataclass

from adapters.population.draw import Draw
from adapters.population.geography import (
    CITIES,
    STREET_SLOTS,
    AddressKind,
    City,
    Region,
    format_rca,
)
from adapters.population.names import (
    FEMALE_FIRST,
    MALE_FIRST,
    SURNAMES,
    NameStyle,
    nationality,
    patronymic,
    surname_for,
)
from govbus.errors import InvalidRequest
from govbus.ids import Bin, Iin, Sex

__all__ = [
    "CAPACITY",
    "REFERENCE_DATE",
    "SUPERBLOCK",
    "Address",
    "Company",
    "Household",
    "IdentityDocument",
    "Institution",
    "InstitutionKind",
    "LandPlot",
    "MaritalStatus",
    "Marriage",
    "Person",
    "Property",
    "PropertyKind",
    "Role",
    "Vehicle",
    "World",
]

#: The world's "today": ages, queues and document validity are computed against it.
REFERENCE_DATE = dt.date(2026, 1, 1)
SUPERBLOCK = 40
_STRIDE = 800  # birth-date residue classes
_SERIAL_PAIRS = 5000  # IIN serials 0..9999 used in pairs
CAPACITY = _STRIDE * _SERIAL_PAIRS
_COMPANIES_PER_SUPERBLOCK = 2
_BIN_MONTHS = 300  # companies registered 2000-01 … 2024-12
_BIN_PAIRS = 50_000
_SLOT_STEP = 7919  # coprime with the number of street slots: spreads superblocks
_YEAR = 365.2425

# Household sizes of a superblock; each pattern sums to SUPERBLOCK and has ≥ 2 households.
_PATTERNS: tuple[tuple[int, ...], ...] = (
    (5, 4, 3, 2, 1, 5, 6, 4, 3, 2, 5),
    (4, 4, 3, 5, 2, 1, 6, 3, 4, 2, 1, 5),
    (6, 5, 4, 3, 2, 1, 1, 5, 4, 3, 6),
    (3, 3, 4, 4, 5, 2, 2, 1, 6, 5, 5),
)
_PATTERN_STARTS = tuple(
    tuple(sum(p[:k]) for k in range(len(p))) for p in _PATTERNS
)  # offset of each household in its superblock
assert all(sum(p) == SUPERBLOCK for p in _PATTERNS)

# One entry per street slot: a uniform pick is a city weighted by its size.
_CITY_BY_SLOT = tuple(slot.city for slot in STREET_SLOTS)
_PHONE_OPERATORS = ("701", "702", "705", "707", "747")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAKES = (
    ("XTA", "LADA", ("Granta", "Vesta", "Niva", "Largus")),
    ("KMH", "Hyundai", ("Accent", "Elantra", "Tucson", "Creta")),
    ("JTD", "Toyota", ("Camry", "Corolla", "RAV4", "Land Cruiser")),
    ("XWB", "Chevrolet", ("Cobalt", "Nexia", "Onix", "Tracker")),
    ("KNA", "Kia", ("Rio", "Sportage", "K5", "Seltos")),
    ("WVW", "Volkswagen", ("Polo", "Passat", "Tiguan", "Jetta")),
)
_COLOURS = ("белый", "чёрный", "серебристый", "серый", "синий", "красный", "зелёный")
_COMPANY_WORDS_A = ("Алтын", "Степь", "Казах", "Евразия", "Нур", "Сарыарка", "Жетысу", "Астана")
_COMPANY_WORDS_B = ("Строй", "Транс", "Агро", "Логистик", "Сервис", "Трейд", "Медиа", "Энерго")
_OKED = (
    ("41201", "Строительство жилых зданий"),
    ("47111", "Розничная торговля продуктами питания"),
    ("49410", "Грузовые перевозки автомобильным транспортом"),
    ("62010", "Разработка программного обеспечения"),
    ("01110", "Выращивание зерновых культур"),
    ("86210", "Общая врачебная практика"),
    ("56101", "Деятельность ресторанов"),
    ("68201", "Аренда собственной недвижимости"),
)


class Role(enum.Enum):
    HEAD = "head"
    SPOUSE = "spouse"
    CHILD = "child"
    SINGLE = "single"


class MaritalStatus(enum.Enum):
    SINGLE = "single"
    MARRIED = "married"
    DIVORCED = "divorced"
    WIDOWED = "widowed"


class InstitutionKind(enum.Enum):
    KINDERGARTEN = "KG"
    SCHOOL = "SCH"
    CLINIC = "PHC"


# One institution of each kind per so many street slots of a city (at least one).
_STREETS_PER_INSTITUTION = {
    InstitutionKind.KINDERGARTEN: 2,
    InstitutionKind.SCHOOL: 3,
    InstitutionKind.CLINIC: 5,
}
_INSTITUTION_NAMES = {
    InstitutionKind.KINDERGARTEN: "Детский сад №{n}",
    InstitutionKind.SCHOOL: "Школа-гимназия №{n}",
    InstitutionKind.CLINIC: "Городская поликлиника №{n}",
}
_INSTITUTION_CAPACITY = {
    InstitutionKind.KINDERGARTEN: (120, 280),
    InstitutionKind.SCHOOL: (600, 1800),
    InstitutionKind.CLINIC: (20_000, 60_000),
}


class PropertyKind(enum.Enum):
    FLAT = "flat"
    HOUSE = "house"


@dataclass(frozen=True, slots=True)
class Address:
    sequence: int
    rca: str
    kind: AddressKind
    slot: int  # index into geography.STREET_SLOTS
    city: City
    street: str
    house: str
    flat: str  # "" when the address is a whole building
    postal_code: str

    @property
    def region(self) -> Region:
        return self.city.region

    def line(self) -> str:
        flat = f", кв. {self.flat}" if self.flat else ""
        return f"{self.city.name}, {self.street}, д. {self.house}{flat}"


@dataclass(frozen=True, slots=True)
class Institution:
    id: str  # e.g. "KG-ALA-003"
    kind: InstitutionKind
    name: str
    city: City
    address: Address
    capacity: int


@dataclass(frozen=True, slots=True)
class IdentityDocument:
    number: str
    issued: dt.date
    expires: dt.date


@dataclass(frozen=True, slots=True)
class Marriage:
    household: int
    record_id: str
    husband: int
    wife: int
    date: dt.date
    city: City
    wife_surname_before: str
    wife_surname_after: str
    divorced: dt.date | None


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    iin: str
    last_name: str
    first_name: str
    patronymic: str
    sex: Sex
    birth_date: dt.date
    birth_place: City
    nationality: str
    household: int
    role: Role
    father: int | None
    mother: int | None
    #: The current spouse, or the former one when divorced or widowed.
    spouse: int | None
    children: tuple[int, ...]
    marital_status: MaritalStatus
    death_date: dt.date | None
    address: Address
    registered_since: dt.date
    #: The registration before the current one: (address, since, until).
    previous_registration: tuple[Address, dt.date, dt.date] | None
    phone: str
    document: IdentityDocument | None
    employer: int | None
    vehicles: int

    @property
    def alive(self) -> bool:
        return self.death_date is None

    @property
    def full_name(self) -> str:
        return f"{self.last_name} {self.first_name} {self.patronymic}".strip()

    @property
    def birth_record_id(self) -> str:
        return f"B{self.index:010d}"

    @property
    def death_record_id(self) -> str | None:
        return None if self.death_date is None else f"D{self.index:010d}"

    def age(self, on: dt.date = REFERENCE_DATE) -> int:
        born = self.birth_date
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


@dataclass(frozen=True, slots=True)
class Household:
    id: int
    members: tuple[Person, ...]
    address: Address
    apartment: bool
    moved_in: dt.date
    marriage: Marriage | None

    @property
    def head(self) -> Person:
        return self.members[0]


@dataclass(frozen=True, slots=True)
class Company:
    index: int
    bin: str
    name: str
    legal_form: str
    registered: dt.date
    director: int
    address: Address
    oked_code: str
    oked_name: str
    liquidated: dt.date | None


@dataclass(frozen=True, slots=True)
class Vehicle:
    owner: int
    slot: int
    vin: str
    plate: str
    make: str
    model: str
    year: int
    colour: str
    registered: dt.date


@dataclass(frozen=True, slots=True)
class Property:
    cadastral_number: str
    household: int
    address: Address
    kind: PropertyKind
    area_m2: int
    owners: tuple[int, ...]
    registered: dt.date


@dataclass(frozen=True, slots=True)
class LandPlot:
    cadastral_number: str
    household: int
    address: Address
    area_m2: int
    purpose: str
    holder: int
    registered: dt.date


def _years(n: float) -> int:
    return round(n * _YEAR)


_REF = REFERENCE_DATE.toordinal()
_MIN_BIRTH = dt.date(1940, 1, 1).toordinal()
_MIN_MOTHER = dt.date(1945, 1, 1).toordinal()
_Y1, _Y3, _Y8, _Y10, _Y16, _Y18 = (_years(n) for n in (1, 3, 8, 10, 16, 18))


class World:
    """A deterministic synthetic population. Cheap to create; everything is computed on demand."""

    def __init__(self, seed: int = 1, persons: int = 100_000) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise InvalidRequest("world seed must be a non-negative integer")
        if not isinstance(persons, int) or persons < 1:
            raise InvalidRequest("a world needs at least one person")
        if persons > CAPACITY:
            raise InvalidRequest(f"a world holds at most {CAPACITY:,} persons (unique IINs)")
        self.seed = seed
        #: Number of superblocks: the size is rounded up so that every family is whole.
        self.superblocks = -(-persons // SUPERBLOCK)
        self.size = self.superblocks * SUPERBLOCK
        self.today = REFERENCE_DATE
        self._institutions: dict[tuple[InstitutionKind, str], tuple[Institution, ...]] | None = None
        self._cache: list[tuple[Household, ...]] | None = None

    def __repr__(self) -> str:
        return f"World(seed={self.seed}, persons={self.size})"

    # --- draws any agency may use for its own derived data ------------------------

    def draw(self, *key: object) -> Draw:
        """A deterministic stream for agency-specific data, e.g. `draw("fines", i)`."""
        return Draw(self.seed, *key)

    # --- persons and households ---------------------------------------------------

    def _pattern(self, superblock: int) -> int:
        return Draw(self.seed, "pattern", superblock).below(len(_PATTERNS))

    def _locate(self, index: int) -> tuple[int, int, int]:
        """(household id, household size, position of the household in its superblock)."""
        superblock, offset = divmod(index, SUPERBLOCK)
        pattern = self._pattern(superblock)
        starts = _PATTERN_STARTS[pattern]
        position = len(starts) - 1
        while starts[position] > offset:
            position -= 1
        base = superblock * SUPERBLOCK
        return base + starts[position], _PATTERNS[pattern][position], position

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise InvalidRequest(f"person index {index} is outside this world (0…{self.size - 1})")

    def person(self, index: int) -> Person:
        household = self.household_of(index)
        return household.members[index - household.id]

    def household_of(self, index: int) -> Household:
        self._check_index(index)
        household, size, position = self._locate(index)
        if self._cache is not None:
            return self._cache[index // SUPERBLOCK][position]
        return self._household(household, size, position)

    def materialise(self) -> None:
        """Compute every household once and keep them in memory (for many passes)."""
        if self._cache is None:
            self._cache = [tuple(self._superblock(s)) for s in range(self.superblocks)]

    def households(self, start: int = 0, stop: int | None = None) -> Iterator[Household]:
        """Every household of superblocks [start, stop), in index order."""
        stop = self.superblocks if stop is None else min(stop, self.superblocks)
        for superblock in range(start, stop):
            if self._cache is not None:
                yield from self._cache[superblock]
            else:
                yield from self._superblock(superblock)

    def _superblock(self, superblock: int) -> Iterator[Household]:
        pattern = self._pattern(superblock)
        base = superblock * SUPERBLOCK
        for position, (offset, size) in enumerate(
            zip(_PATTERN_STARTS[pattern], _PATTERNS[pattern], strict=True)
        ):
            yield self._household(base + offset, size, position)

    def persons(self, start: int = 0, stop: int | None = None) -> Iterator[Person]:
        for household in self.households(start, stop):
            yield from household.members

    def index_of(self, iin: str) -> int | None:
        """The index of the person with this IIN in this world, or None."""
        try:
            parsed = Iin(iin)
        except Exception:  # noqa: BLE001 - any invalid text is simply not in the world
            return None
        index = (int(iin[7:11]) // 2) * _STRIDE + parsed.birth_date.toordinal() % _STRIDE
        if index >= self.size or self.person(index).iin != iin:
            return None
        return index

    def unknown_iin(self) -> str:
        """A valid IIN that no person of any world has (born before the world's earliest year)."""
        built = Iin.build(dt.date(1899, 12, 31), Sex.MALE, 9990)
        assert built is not None
        return built.value

    # --- addresses --------------------------------------------------------------------

    def _slot(self, superblock: int) -> tuple[int, int]:
        count = len(STREET_SLOTS)
        return (superblock * _SLOT_STEP) % count, superblock // count

    def _apartment(self, superblock: int) -> bool:
        slot, _ = self._slot(superblock)
        city = STREET_SLOTS[slot].city
        return Draw(self.seed, "building", superblock).chance(city.apartments_per_mille)

    def residential_address(self, household: int) -> Address:
        self._check_index(household)
        superblock = household // SUPERBLOCK
        starts = _PATTERN_STARTS[self._pattern(superblock)]
        if household % SUPERBLOCK not in starts:
            raise InvalidRequest(f"{household} is not the id of a household (its first member)")
        return self._residential_address(
            superblock, starts.index(household % SUPERBLOCK), household
        )

    def _residential_address(self, superblock: int, position: int, household: int) -> Address:
        slot_index, block = self._slot(superblock)
        slot = STREET_SLOTS[slot_index]
        if self._apartment(superblock):
            house, flat = str(block + 1), str(position + 1)
        else:
            # Private houses of one superblock share a number with letters: 7А, 7Б, …
            house, flat = f"{block + 1}{'АБВГДЕЖИКЛМНПРСТ'[position]}", ""
        return Address(
            sequence=household,
            rca=format_rca(slot.city.region.code, AddressKind.RESIDENTIAL, household),
            kind=AddressKind.RESIDENTIAL,
            slot=slot_index,
            city=slot.city,
            street=slot.street,
            house=house,
            flat=flat,
            postal_code=f"{slot.city.postal_base + slot.local:06d}",
        )

    def commercial_address(self, company: int) -> Address:
        count = len(STREET_SLOTS)
        slot_index = (company * 104_729) % count
        slot = STREET_SLOTS[slot_index]
        # Office buildings are numbered from 1001, above any residential number
        # (a residential building number stays below 1000 up to the world's capacity).
        return Address(
            sequence=company,
            rca=format_rca(slot.city.region.code, AddressKind.COMMERCIAL, company),
            kind=AddressKind.COMMERCIAL,
            slot=slot_index,
            city=slot.city,
            street=slot.street,
            house=str(1001 + company // count),
            flat="",
            postal_code=f"{slot.city.postal_base + slot.local:06d}",
        )

    def addresses(self) -> Iterator[Address]:
        """Every address of the world: households, then companies, then institutions."""
        for household in self.households():
            yield household.address
        for company in range(self.company_count):
            yield self.commercial_address(company)
        for institution in self.institutions():
            yield institution.address

    # --- institutions (the same in every world size: they depend on the seed only) -----

    def institutions(self, kind: InstitutionKind | None = None) -> tuple[Institution, ...]:
        if self._institutions is None:
            self._institutions = self._build_institutions()
        if kind is None:
            return tuple(i for group in self._institutions.values() for i in group)
        return tuple(i for (k, _), group in self._institutions.items() if k is kind for i in group)

    def institution_for(self, kind: InstitutionKind, address: Address) -> Institution:
        """The institution of a kind that serves an address (by its street)."""
        if self._institutions is None:
            self._institutions = self._build_institutions()
        group = self._institutions[(kind, address.city.code)]
        return group[STREET_SLOTS[address.slot].local % len(group)]

    def _build_institutions(self) -> dict[tuple[InstitutionKind, str], tuple[Institution, ...]]:
        built: dict[tuple[InstitutionKind, str], tuple[Institution, ...]] = {}
        first_slot = 0
        for city_index, city in enumerate(CITIES):
            for kind_index, kind in enumerate(InstitutionKind):
                count = city.streets // _STREETS_PER_INSTITUTION[kind] + 1
                low, high = _INSTITUTION_CAPACITY[kind]
                group = []
                for n in range(count):
                    slot_index = first_slot + n % city.streets
                    slot = STREET_SLOTS[slot_index]
                    sequence = city_index * 10_000 + kind_index * 1000 + n
                    # Numbered from 2001, above residential and office buildings.
                    address = Address(
                        sequence=sequence,
                        rca=format_rca(city.region.code, AddressKind.INSTITUTION, sequence),
                        kind=AddressKind.INSTITUTION,
                        slot=slot_index,
                        city=city,
                        street=slot.street,
                        house=str(2001 + 100 * kind_index + n),
                        flat="",
                        postal_code=f"{city.postal_base + slot.local:06d}",
                    )
                    draw = Draw(self.seed, "institution", kind.value, city.code, n)
                    group.append(
                        Institution(
                            id=f"{kind.value}-{city.code}-{n + 1:03d}",
                            kind=kind,
                            name=_INSTITUTION_NAMES[kind].format(n=n + 1),
                            city=city,
                            address=address,
                            capacity=draw.between(low, high),
                        )
                    )
                built[(kind, city.code)] = tuple(group)
            first_slot += city.streets
        return built

    # --- building one household ---------------------------------------------------------

    def _birth(self, index: int, low: int, high: int, sex: Sex, draw: Draw) -> tuple[int, str]:
        """A birth date in [low, high] (ordinals) and the IIN that goes with it."""
        residue = index % _STRIDE
        first = low + (residue - low) % _STRIDE
        count = (high - first) // _STRIDE + 1
        if count < 1:
            raise AssertionError(f"birth window too narrow for person {index}")
        ordinal = first + _STRIDE * draw.below(count)
        born = dt.date.fromordinal(ordinal)
        serial = 2 * (index // _STRIDE)
        # The next serial differs only in the digit of weight 11 (≡ 0) and 2: one of
        # the two always has a check digit.
        iin = Iin.build(born, sex, serial) or Iin.build(born, sex, serial + 1)
        assert iin is not None
        return ordinal, iin.value

    def _draw_of(self, index: int) -> Draw:
        return Draw(self.seed, "person", index)

    def _death(self, draw: Draw, born: int, earliest: int) -> int | None:
        age = (_REF - born) / _YEAR
        per_mille = (
            500 if age >= 80 else 250 if age >= 70 else 100 if age >= 60 else 30 if age >= 40 else 3
        )
        if not draw.chance(per_mille):
            return None
        low = max(born + 1, earliest)
        return draw.between(low, _REF - 1) if low <= _REF - 1 else None

    def _city(self, draw: Draw) -> City:
        return draw.pick(_CITY_BY_SLOT)

    def _household(self, household: int, size: int, position: int) -> Household:
        seed = self.seed
        superblock = household // SUPERBLOCK
        draw = Draw(seed, "household", household)
        address = self._residential_address(superblock, position, household)
        apartment = self._apartment(superblock)
        style = NameStyle.KAZAKH if draw.chance(700) else NameStyle.RUSSIAN
        surname = draw.pick(SURNAMES[style])
        kazakh_patronymic = style is NameStyle.KAZAKH and draw.chance(150)

        if size == 1:
            return self._single(household, address, apartment, style, surname, draw)

        children = size - 2
        husband, wife = household, household + 1
        mother_born, wife_iin = self._birth(
            wife, _MIN_MOTHER, _REF - _years(19 + 3 * children) - 1, Sex.FEMALE, draw
        )
        father_born, husband_iin = self._birth(
            husband, max(_MIN_BIRTH, mother_born - _Y8), mother_born, Sex.MALE, draw
        )
        kid_births: list[tuple[int, str, Sex]] = []
        for k in range(children):
            sex = Sex.MALE if draw.chance(510) else Sex.FEMALE
            low = mother_born + _years(19 + 3 * k)
            born, iin = self._birth(household + 2 + k, low, low + _Y3 - 1, sex, draw)
            kid_births.append((born, iin, sex))
        first_child = kid_births[0][0] if kid_births else _REF
        last_child = kid_births[-1][0] if kid_births else mother_born + _Y18
        married = draw.between(mother_born + _Y18 + 1, first_child - 30)

        husband_draw, wife_draw = self._draw_of(husband), self._draw_of(wife)
        husband_death = self._death(husband_draw, father_born, max(married, last_child) + 1)
        wife_death = self._death(wife_draw, mother_born, max(married, last_child) + 1)
        first_death = min(d for d in (husband_death, wife_death, _REF) if d is not None)
        divorced: int | None = None
        if draw.chance(120) and married + _Y1 < first_death - 1:
            divorced = draw.between(married + _Y1, first_death - 1)
        moved_in = min(married + draw.between(0, _Y3), _REF - 1)

        wife_style = style if draw.chance(900) else _other(style)
        husband_first = draw.pick(MALE_FIRST[style])
        wife_first = draw.pick(FEMALE_FIRST[wife_style])
        maiden = surname_for(draw.pick(SURNAMES[wife_style]), male=False)
        wife_surname = surname_for(surname, male=False) if draw.chance(800) else maiden
        husband_patronymic = patronymic(draw.pick(MALE_FIRST[style]), True)
        wife_patronymic = patronymic(draw.pick(MALE_FIRST[wife_style]), False)
        marriage_city = address.city if draw.chance(700) else self._city(draw)
        previous = self._previous_address(superblock, draw)

        def status(own: int | None, other: int | None) -> MaritalStatus:
            if divorced is not None:
                return MaritalStatus.DIVORCED
            if other is not None and (own is None or other < own):
                return MaritalStatus.WIDOWED
            return MaritalStatus.MARRIED

        kids = tuple(range(household + 2, household + 2 + children))
        members = [
            self._person(
                husband,
                draw=husband_draw,
                iin=husband_iin,
                last_name=surname,
                first_name=husband_first,
                patronymic_=husband_patronymic,
                sex=Sex.MALE,
                born=father_born,
                birth_place=self._city(draw),
                style=style,
                household=household,
                role=Role.HEAD,
                father=None,
                mother=None,
                spouse=wife,
                children=kids,
                marital=status(husband_death, wife_death),
                death=husband_death,
                address=address,
                moved_in=moved_in,
                previous=previous,
            ),
            self._person(
                wife,
                draw=wife_draw,
                iin=wife_iin,
                last_name=wife_surname,
                first_name=wife_first,
                patronymic_=wife_patronymic,
                sex=Sex.FEMALE,
                born=mother_born,
                birth_place=self._city(draw),
                style=wife_style,
                household=household,
                role=Role.SPOUSE,
                father=None,
                mother=None,
                spouse=husband,
                children=kids,
                marital=status(wife_death, husband_death),
                death=wife_death,
                address=address,
                moved_in=moved_in,
                previous=previous,
            ),
        ]
        for k, (born, iin, sex) in enumerate(kid_births):
            index = household + 2 + k
            male = sex is Sex.MALE
            child_draw = self._draw_of(index)
            members.append(
                self._person(
                    index,
                    draw=child_draw,
                    iin=iin,
                    last_name=surname_for(surname, male),
                    first_name=draw.pick((MALE_FIRST if male else FEMALE_FIRST)[style]),
                    patronymic_=patronymic(husband_first, male, kazakh_form=kazakh_patronymic),
                    sex=sex,
                    born=born,
                    birth_place=address.city,
                    style=style,
                    household=household,
                    role=Role.CHILD,
                    father=husband,
                    mother=wife,
                    spouse=None,
                    children=(),
                    marital=MaritalStatus.SINGLE,
                    death=self._death(child_draw, born, born + 1),
                    address=address,
                    moved_in=moved_in,
                    previous=previous,
                )
            )
        marriage = Marriage(
            household=household,
            record_id=f"M{household:010d}",
            husband=husband,
            wife=wife,
            date=dt.date.fromordinal(married),
            city=marriage_city,
            wife_surname_before=maiden,
            wife_surname_after=wife_surname,
            divorced=None if divorced is None else dt.date.fromordinal(divorced),
        )
        return Household(
            household, tuple(members), address, apartment, dt.date.fromordinal(moved_in), marriage
        )

    def _single(
        self,
        household: int,
        address: Address,
        apartment: bool,
        style: NameStyle,
        surname: str,
        draw: Draw,
    ) -> Household:
        sex = Sex.MALE if draw.chance(500) else Sex.FEMALE
        male = sex is Sex.MALE
        born, iin = self._birth(household, _MIN_BIRTH, _REF - _Y18, sex, draw)
        moved_in = min(born + _Y18 + draw.between(0, _Y10), _REF - 1)
        own = self._draw_of(household)
        person = self._person(
            household,
            draw=own,
            iin=iin,
            last_name=surname_for(surname, male),
            first_name=draw.pick((MALE_FIRST if male else FEMALE_FIRST)[style]),
            patronymic_=patronymic(draw.pick(MALE_FIRST[style]), male),
            sex=sex,
            born=born,
            birth_place=self._city(draw),
            style=style,
            household=household,
            role=Role.SINGLE,
            father=None,
            mother=None,
            spouse=None,
            children=(),
            marital=MaritalStatus.SINGLE,
            death=self._death(own, born, born + 1),
            address=address,
            moved_in=moved_in,
            previous=self._previous_address(household // SUPERBLOCK, draw),
        )
        return Household(
            household, (person,), address, apartment, dt.date.fromordinal(moved_in), None
        )

    def _previous_address(self, superblock: int, draw: Draw) -> Address | None:
        if superblock == 0:
            return None
        # The first household of an earlier superblock: always a real household.
        earlier = draw.below(superblock)
        return self._residential_address(earlier, 0, earlier * SUPERBLOCK)

    def _person(
        self,
        index: int,
        *,
        draw: Draw,
        iin: str,
        last_name: str,
        first_name: str,
        patronymic_: str,
        sex: Sex,
        born: int,
        birth_place: City,
        style: NameStyle,
        household: int,
        role: Role,
        father: int | None,
        mother: int | None,
        spouse: int | None,
        children: tuple[int, ...],
        marital: MaritalStatus,
        death: int | None,
        address: Address,
        moved_in: int,
        previous: Address | None,
    ) -> Person:
        since = max(born, moved_in)
        previous_registration = None
        if previous is not None and born < moved_in:
            start = max(born, moved_in - draw.between(365, 3650))
            previous_registration = (
                previous,
                dt.date.fromordinal(start),
                dt.date.fromordinal(moved_in),
            )
        end = _REF if death is None else death
        age = (end - born) / _YEAR
        document = None
        if age >= 16:
            renewals = int((end - born - _Y16) // _Y10)
            issued = born + _Y16 + renewals * _Y10
            document = IdentityDocument(
                number=f"{(index * 48_271 + 100_000_000 + self.seed * 7) % 10**9:09d}",
                issued=dt.date.fromordinal(issued),
                expires=dt.date.fromordinal(issued + _Y10),
            )
        phone = ""
        if age >= 14:
            slot = (index * 7919 + self.seed * 104_729) % (len(_PHONE_OPERATORS) * 10**7)
            operator, number = divmod(slot, 10**7)
            phone = f"+7{_PHONE_OPERATORS[operator]}{number:07d}"
        employer = None
        vehicles = 0
        if death is None and age >= 18:
            superblock = index // SUPERBLOCK
            if age < 63 and draw.chance(700):
                employer = _COMPANIES_PER_SUPERBLOCK * draw.between(
                    max(0, superblock - 20), superblock
                ) + draw.below(_COMPANIES_PER_SUPERBLOCK)
            roll = draw.below(1000)
            vehicles = 0 if roll < 600 else 1 if roll < 930 else 2
        return Person(
            index=index,
            iin=iin,
            last_name=last_name,
            first_name=first_name,
            patronymic=patronymic_,
            sex=sex,
            birth_date=dt.date.fromordinal(born),
            birth_place=birth_place,
            nationality=nationality(style),
            household=household,
            role=role,
            father=father,
            mother=mother,
            spouse=spouse,
            children=children,
            marital_status=marital,
            death_date=None if death is None else dt.date.fromordinal(death),
            address=address,
            registered_since=dt.date.fromordinal(since),
            previous_registration=previous_registration,
            phone=phone,
            document=document,
            employer=employer,
            vehicles=vehicles,
        )

    # --- companies ---------------------------------------------------------------------

    @property
    def company_count(self) -> int:
        return self.superblocks * _COMPANIES_PER_SUPERBLOCK

    def company(self, index: int) -> Company:
        if not 0 <= index < self.company_count:
            raise InvalidRequest(f"company index {index} is outside this world")
        draw = Draw(self.seed, "company", index)
        month_index = (index * 97) % _BIN_MONTHS
        year, month = 2000 + month_index // 12, month_index % 12 + 1
        pair = index // _BIN_MONTHS
        assert pair < _BIN_PAIRS
        bin_ = Bin.build(year, month, 2 * pair) or Bin.build(year, month, 2 * pair + 1)
        assert bin_ is not None  # the same two-serial argument as for IINs
        superblock, which = divmod(index, _COMPANIES_PER_SUPERBLOCK)
        starts = _PATTERN_STARTS[self._pattern(superblock)]
        director = superblock * SUPERBLOCK + starts[which]
        director_death = self.person(director).death_date
        liquidated = None
        if director_death is not None:
            day = director_death.toordinal() + draw.between(30, 365)
            liquidated = dt.date.fromordinal(day) if day < _REF else None
        legal_form = "АО" if draw.chance(100) else "ТОО"
        words = f"{draw.pick(_COMPANY_WORDS_A)} {draw.pick(_COMPANY_WORDS_B)}"
        oked_code, oked_name = draw.pick(_OKED)
        return Company(
            index=index,
            bin=bin_.value,
            name=f"{legal_form} «{words}-{index + 1}»",
            legal_form=legal_form,
            registered=dt.date(year, month, draw.between(1, 28)),
            director=director,
            address=self.commercial_address(index),
            oked_code=oked_code,
            oked_name=oked_name,
            liquidated=liquidated,
        )

    def companies(self) -> Iterator[Company]:
        for index in range(self.company_count):
            yield self.company(index)

    # --- vehicles, properties, land -------------------------------------------------------

    def vehicles_of(self, person: Person) -> tuple[Vehicle, ...]:
        return tuple(self._vehicle(person, slot) for slot in range(person.vehicles))

    def _vehicle(self, owner: Person, slot: int) -> Vehicle:
        draw = Draw(self.seed, "vehicle", owner.index, slot)
        number = 2 * owner.index + slot
        letters = number // 1000
        plate = (
            f"{number % 1000:03d}"
            f"{_LETTERS[letters // 676 % 26]}{_LETTERS[letters // 26 % 26]}{_LETTERS[letters % 26]}"
            f"{owner.address.region.code:02d}"
        )
        wmi, make, models = draw.pick(_MAKES)
        adult = _anniversary(owner.birth_date, 18).toordinal()
        # An owner who turns 18 on the reference date itself registers the car that day;
        # for everyone else the latest day is the day before (the draws are unchanged).
        latest = max(_REF - 1, adult)
        year = draw.between(
            max(1995, dt.date.fromordinal(adult).year), dt.date.fromordinal(latest).year
        )
        registered = draw.between(max(adult, dt.date(year, 1, 1).toordinal()), latest)
        return Vehicle(
            owner=owner.index,
            slot=slot,
            vin=f"{wmi}Z{number:013d}",
            plate=plate,
            make=make,
            model=draw.pick(models),
            year=year,
            colour=draw.pick(_COLOURS),
            registered=dt.date.fromordinal(registered),
        )

    def property_of(self, household: Household) -> Property:
        draw = Draw(self.seed, "property", household.id)
        head = household.head
        owners: tuple[int, ...] = (head.index,)
        if household.marriage is not None and draw.chance(500):
            owners = (head.index, household.marriage.wife)
        if household.apartment:
            kind, area = PropertyKind.FLAT, draw.between(35, 120)
        else:
            kind, area = PropertyKind.HOUSE, draw.between(60, 250)
        return Property(
            cadastral_number=_cadastral(household.address.region.code, household.id),
            household=household.id,
            address=household.address,
            kind=kind,
            area_m2=area,
            owners=owners,
            registered=household.moved_in,
        )

    def land_plot_of(self, household: Household) -> LandPlot | None:
        """The plot under a private house (apartment buildings have none of their own)."""
        if household.apartment:
            return None
        draw = Draw(self.seed, "land", household.id)
        return LandPlot(
            cadastral_number=_cadastral(household.address.region.code, household.id),
            household=household.id,
            address=household.address,
            area_m2=draw.between(400, 1500),
            purpose="ИЖС",
            holder=household.head.index,
            registered=household.moved_in,
        )


def _anniversary(day: dt.date, years: int) -> dt.date:
    """The calendar date `years` after `day` (29 February → 1 March)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def _other(style: NameStyle) -> NameStyle:
    return NameStyle.RUSSIAN if style is NameStyle.KAZAKH else NameStyle.KAZAKH


def _cadastral(region: int, household: int) -> str:
    return f"{region:02d}-{household // 10**6:03d}-{household % 10**6:06d}"
