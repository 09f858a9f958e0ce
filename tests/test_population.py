"""The synthetic world: deterministic, valid identifiers, unique, and consistently linked."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.population import (
    CAPACITY,
    REFERENCE_DATE,
    InstitutionKind,
    MaritalStatus,
    Role,
    World,
)
from adapters.population.draw import Draw
from adapters.population.geography import STREET_SLOTS, AddressKind, format_rca, parse_rca
from adapters.population.names import patronymic, surname_for
from govbus.errors import InvalidIdentifier, InvalidRequest
from govbus.ids import Bin, Iin, Sex

WORLD = World(seed=3, persons=20_000)
PERSONS = list(WORLD.persons())


def test_size_is_rounded_up_to_whole_superblocks() -> None:
    assert World(1, 1).size == 40
    assert World(1, 100_000).size == 100_000
    assert len(PERSONS) == WORLD.size == 20_000
    assert [p.index for p in PERSONS] == list(range(WORLD.size))


def test_bad_worlds_are_refused() -> None:
    for seed, persons in ((-1, 10), (1, 0), (1, CAPACITY + 1)):
        with pytest.raises(InvalidRequest):
            World(seed, persons)


def test_a_person_is_a_pure_function_of_seed_and_index() -> None:
    other_size = World(seed=3, persons=400)
    for index in (0, 1, 39, 40, 123, 399):
        assert other_size.person(index) == PERSONS[index]
        assert World(seed=3, persons=20_000).person(index) == PERSONS[index]
    assert World(seed=4, persons=400).person(5) != PERSONS[5]


def test_random_access_equals_iteration_and_materialising() -> None:
    world = World(seed=3, persons=2_000)
    for index in range(0, 2_000, 37):
        assert world.person(index) == PERSONS[index]
    world.materialise()
    assert list(world.persons()) == PERSONS[:2_000]


def test_iins_are_valid_unique_and_encode_birth_date_and_sex() -> None:
    iins = [p.iin for p in PERSONS]
    assert len(set(iins)) == len(iins)
    for p in PERSONS:
        parsed = Iin(p.iin)
        assert parsed.birth_date == p.birth_date
        assert parsed.sex is p.sex
        assert WORLD.index_of(p.iin) == p.index
    assert WORLD.index_of(WORLD.unknown_iin()) is None
    assert WORLD.index_of("not an iin") is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, CAPACITY - 1), st.integers(0, CAPACITY - 1))
def test_iins_stay_unique_up_to_the_capacity(a: int, b: int) -> None:
    big = World(seed=9, persons=CAPACITY)
    left, right = big.person(a), big.person(b)
    assert (left.iin == right.iin) == (a == b)
    assert big.index_of(left.iin) == a


def test_companies_have_valid_unique_bins_and_living_links() -> None:
    companies = list(WORLD.companies())
    assert len(companies) == WORLD.company_count == WORLD.superblocks * 2
    assert len({c.bin for c in companies}) == len(companies)
    for c in companies:
        parsed = Bin(c.bin)
        assert parsed.value[:4] == f"{c.registered:%y%m}"
        director = PERSONS[c.director]
        assert director.age() >= 18
        assert (c.liquidated is not None) <= (director.death_date is not None)
    employers = {p.employer for p in PERSONS if p.employer is not None}
    assert employers <= set(range(WORLD.company_count))


def test_families_are_consistent() -> None:
    by_index = {p.index: p for p in PERSONS}
    for household in WORLD.households():
        members = household.members
        assert all(p.household == household.id for p in members)
        assert len({p.address.rca for p in members}) == 1
        if household.marriage is None:
            assert [p.role for p in members] == [Role.SINGLE]
            continue
        husband, wife, *children = members
        assert (husband.sex, wife.sex) == (Sex.MALE, Sex.FEMALE)
        assert husband.spouse == wife.index and wife.spouse == husband.index
        assert husband.children == wife.children == tuple(c.index for c in children)
        marriage = household.marriage
        assert wife.age(marriage.date) >= 18 and husband.age(marriage.date) >= 18
        for child in children:
            assert (child.father, child.mother) == (husband.index, wife.index)
            assert by_index[child.father].children == husband.children
            assert child.birth_date > marriage.date
            assert child.last_name == surname_for(husband.last_name, child.sex is Sex.MALE)
            male = child.sex is Sex.MALE
            assert child.patronymic in {
                patronymic(husband.first_name, male),
                patronymic(husband.first_name, male, kazakh_form=True),
            }
            assert (child.birth_date - wife.birth_date).days >= 19 * 365
            assert child.birth_date < REFERENCE_DATE
        if marriage.divorced is not None:
            assert husband.marital_status is MaritalStatus.DIVORCED
            assert marriage.date < marriage.divorced < REFERENCE_DATE
        for person in (husband, wife):
            if person.death_date is not None:
                assert all(person.death_date > c.birth_date for c in children)


def test_deaths_documents_and_registrations_make_sense() -> None:
    dead = [p for p in PERSONS if p.death_date is not None]
    assert 0.02 < len(dead) / len(PERSONS) < 0.15
    for p in PERSONS:
        if p.death_date is not None:
            assert p.birth_date < p.death_date < REFERENCE_DATE
            assert p.vehicles == 0 and p.employer is None
        if p.document is not None:
            assert p.age(p.document.issued) >= 15
            assert p.document.issued <= (p.death_date or REFERENCE_DATE)
        assert p.registered_since >= p.birth_date
        if p.previous_registration is not None:
            previous, since, until = p.previous_registration
            assert since >= p.birth_date and until == p.registered_since
            assert previous.rca != p.address.rca or since < until
    numbers = [p.document.number for p in PERSONS if p.document]
    assert len(set(numbers)) == len(numbers)
    phones = [p.phone for p in PERSONS if p.phone]
    assert len(set(phones)) == len(phones)
    assert all(len(phone) == 12 and phone.startswith("+77") for phone in phones)


def test_names_are_cyrillic_and_demographics_plausible() -> None:
    for p in PERSONS[:2000]:
        for name in (p.last_name, p.first_name):
            assert name and all(c.isalpha() or c == "-" for c in name)
            assert any("\u0400" <= c <= "\u04ff" for c in name)
    sexes = Counter(p.sex for p in PERSONS)
    assert 0.45 < sexes[Sex.MALE] / len(PERSONS) < 0.55
    ages = [p.age() for p in PERSONS if p.alive]
    assert min(ages) == 0 and max(ages) >= 80
    assert sum(a < 6 for a in ages) > 100  # small children for the kindergarten queue


def test_addresses_are_unique_and_parse() -> None:
    addresses = list(WORLD.addresses())
    rcas = [a.rca for a in addresses]
    assert len(set(rcas)) == len(rcas)
    lines = [a.line() for a in addresses]
    assert len(set(lines)) == len(lines)
    for a in addresses[:: max(1, len(addresses) // 500)]:
        assert parse_rca(a.rca) == a.rca
        assert int(a.rca[:2]) == a.region.code and int(a.rca[2]) == a.kind.value
    kinds = Counter(a.kind for a in addresses)
    assert kinds[AddressKind.RESIDENTIAL] == sum(1 for _ in WORLD.households())
    assert kinds[AddressKind.COMMERCIAL] == WORLD.company_count
    assert kinds[AddressKind.INSTITUTION] == len(WORLD.institutions())


def test_rca_format_is_checked() -> None:
    assert format_rca(2, AddressKind.RESIDENTIAL, 7) == "0210000000000007"
    for bad in ("", "021000000000000", "9910000000000000", "0290000000000000", "02100000000000x7"):
        with pytest.raises(InvalidIdentifier):
            parse_rca(bad)


def test_institutions_serve_every_address() -> None:
    for kind in InstitutionKind:
        group = WORLD.institutions(kind)
        assert len({i.id for i in group}) == len(group)
        assert {i.city.code for i in group} == {s.city.code for s in STREET_SLOTS}
    for p in PERSONS[:500]:
        school = WORLD.institution_for(InstitutionKind.SCHOOL, p.address)
        assert school.city == p.address.city


def test_vehicles_properties_and_plots_link_up() -> None:
    plates, vins = set(), set()
    for p in PERSONS[:5000]:
        for vehicle in WORLD.vehicles_of(p):
            assert vehicle.owner == p.index
            assert p.age(vehicle.registered) >= 18
            assert vehicle.plate.endswith(f"{p.address.region.code:02d}")
            assert len(vehicle.vin) == 17
            plates.add(vehicle.plate)
            vins.add(vehicle.vin)
    assert len(plates) == len(vins) > 100
    for household in list(WORLD.households())[:500]:
        prop = WORLD.property_of(household)
        assert prop.address == household.address and household.head.index in prop.owners
        plot = WORLD.land_plot_of(household)
        assert (plot is None) == household.apartment
        if plot is not None:
            assert plot.cadastral_number == prop.cadastral_number


def test_draws_are_deterministic_and_in_range() -> None:
    first = [Draw(1, "x", 5).below(10) for _ in range(3)]
    assert len(set(first)) == 1
    draw = Draw(1, "y")
    values = [draw.between(3, 7) for _ in range(2000)]
    assert set(values) == {3, 4, 5, 6, 7}
    assert WORLD.draw("fines", 1).below(1000) == World(3, 40).draw("fines", 1).below(1000)


def test_patronymics() -> None:
    assert patronymic("Нурлан", True) == "Нурланович"
    assert patronymic("Сергей", False) == "Сергеевна"
    assert patronymic("Игорь", True) == "Игоревич"
    assert patronymic("Михаил", True) == "Михайлович"
    assert patronymic("Ерлан", False, kazakh_form=True) == "Ерланқызы"


def test_world_today_is_fixed() -> None:
    assert WORLD.today == REFERENCE_DATE == dt.date(2026, 1, 1)


def test_vehicles_of_an_owner_who_turns_18_on_the_reference_date() -> None:
    # Regression: the draw of the model year had an empty range for this owner and
    # `vehicles_of` raised ZeroDivisionError (seed 1, person 81042, born 2008-01-01).
    owner = World(seed=1, persons=100_000).person(81_042)
    assert owner.birth_date == dt.date(2008, 1, 1) and owner.vehicles == 1
    (vehicle,) = World(seed=1, persons=100_000).vehicles_of(owner)
    assert vehicle.registered == REFERENCE_DATE and vehicle.year == REFERENCE_DATE.year
    assert owner.age(vehicle.registered) == 18
