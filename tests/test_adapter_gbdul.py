"""ГБД ЮЛ over real gRPC: entities match the world; registrations keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.gbdul.data import adult_on
from adapters.population import Company, Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Bin, Iin, Sex
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2 as pb
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2_grpc as pb_grpc

WORLD = World(seed=12, persons=1200)
TODAY = dt.date.today()
COMPANIES = list(WORLD.companies())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("gbdul") / "gbdul.db"
    agency = load("gbdul")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.LegalEntityRegistryStub:
    return pb_grpc.LegalEntityRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _adults(count: int, skip: int = 0) -> list[Person]:
    found = [p for p in WORLD.persons() if p.alive and p.age() >= 25][skip : skip + count]
    assert len(found) == count
    return found


def _minor() -> str:
    built = Iin.build(TODAY.replace(year=TODAY.year - 15, day=1), Sex.MALE, 9994)
    built = built or Iin.build(TODAY.replace(year=TODAY.year - 15, day=1), Sex.MALE, 9995)
    assert built is not None
    return built.value


def _active(skip: int = 0) -> Company:
    return [c for c in COMPANIES if c.liquidated is None][skip]


def test_entities_match_the_world(stub: pb_grpc.LegalEntityRegistryStub) -> None:
    for company in COMPANIES[:40]:
        entity = stub.GetEntity(pb.GetEntityRequest(bin=company.bin))
        director = WORLD.person(company.director)
        assert (entity.bin, entity.name) == (company.bin, company.name)
        assert entity.registration_date == company.registered.isoformat()
        assert entity.legal_form == (
            pb.LEGAL_FORM_AO if company.legal_form == "АО" else pb.LEGAL_FORM_TOO
        )
        assert (entity.director_iin, entity.director_name) == (director.iin, director.full_name)
        assert (entity.rca, entity.address_line) == (company.address.rca, company.address.line())
        assert (entity.oked_code, entity.oked_name) == (company.oked_code, company.oked_name)
        liquidated = company.liquidated is not None
        assert entity.status == (
            pb.ENTITY_STATUS_LIQUIDATED if liquidated else pb.ENTITY_STATUS_ACTIVE
        )
        assert entity.liquidation_date == (str(company.liquidated) if liquidated else "")
    assert any(c.liquidated for c in COMPANIES), "the test world needs a liquidated company"


def test_founders_were_adults_or_earlier_entities(stub: pb_grpc.LegalEntityRegistryStub) -> None:
    by_bin = {c.bin: c for c in COMPANIES}
    kinds = set()
    for company in COMPANIES:
        founders = list(stub.ListFounders(pb.ListFoundersRequest(bin=company.bin)))
        assert founders and sum(f.share_basis_points for f in founders) == 10_000
        for founder in founders:
            kinds.add(founder.WhichOneof("founder"))
            if founder.HasField("iin"):
                index = WORLD.index_of(founder.iin)
                assert index is not None
                person = WORLD.person(index)
                assert founder.name == person.full_name
                if company.director != index:
                    assert adult_on(person, company.registered)
            else:
                parent = by_bin[founder.bin]
                assert parent.registered < company.registered
                assert founder.name == parent.name
    assert kinds == {"iin", "bin"}


def test_entities_by_person(stub: pb_grpc.LegalEntityRegistryStub) -> None:
    company = COMPANIES[0]
    director = WORLD.person(company.director)
    links = list(stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=director.iin)))
    assert (company.bin, pb.ENTITY_ROLE_DIRECTOR) in {(x.bin, x.role) for x in links}
    assert all(x.name for x in links)
    for founder in stub.ListFounders(pb.ListFoundersRequest(bin=company.bin)):
        if founder.HasField("iin"):
            links = stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=founder.iin))
            assert (company.bin, pb.ENTITY_ROLE_FOUNDER) in {(x.bin, x.role) for x in links}
    nobody = WORLD.unknown_iin()
    assert list(stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=nobody))) == []


def _registration(director: Person, partner: Person, **kw: Any) -> pb.RegisterEntityRequest:
    fields: dict[str, Any] = {
        "name": "ТОО «Тестовая компания»",
        "legal_form": pb.LEGAL_FORM_TOO,
        "director_iin": director.iin,
        "founders": [
            pb.Founder(iin=director.iin, name=director.full_name, share_basis_points=7000),
            pb.Founder(iin=partner.iin, name=partner.full_name, share_basis_points=3000),
        ],
        "rca": COMPANIES[0].address.rca,
        "oked_code": "62010",
    }
    fields.update(kw)
    return pb.RegisterEntityRequest(**fields)


def test_register_entity(stub: pb_grpc.LegalEntityRegistryStub) -> None:
    director, partner = _adults(2)
    entity = stub.RegisterEntity(_registration(director, partner))
    assert Bin.parse(entity.bin).value == entity.bin
    assert entity.bin[:4] == f"{TODAY:%y%m}"
    assert entity.registration_date == TODAY.isoformat()
    assert entity.status == pb.ENTITY_STATUS_ACTIVE
    assert (entity.director_iin, entity.director_name) == (director.iin, director.full_name)
    assert entity.oked_name == "Разработка программного обеспечения"
    assert stub.GetEntity(pb.GetEntityRequest(bin=entity.bin)) == entity
    founders = list(stub.ListFounders(pb.ListFoundersRequest(bin=entity.bin)))
    assert [(f.iin, f.share_basis_points) for f in founders] == [
        (director.iin, 7000),
        (partner.iin, 3000),
    ]
    links = stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=partner.iin))
    assert (entity.bin, pb.ENTITY_ROLE_FOUNDER) in {(x.bin, x.role) for x in links}
    # The same name, whatever its case and spacing, is taken while the entity is active.
    again = _registration(director, partner, name="ТОО  «ТЕСТОВАЯ компания»")
    assert _error(lambda: stub.RegisterEntity(again)).code == "ALREADY_EXISTS"
    other = stub.RegisterEntity(_registration(director, partner, name="ТОО «Вторая»"))
    assert other.bin != entity.bin


def test_register_entity_refuses_what_a_registry_would(
    stub: pb_grpc.LegalEntityRegistryStub,
) -> None:
    director, partner = _adults(2, skip=5)
    liquidated = next(c for c in COMPANIES if c.liquidated is not None)
    parent = _active(3)
    minor = _minor()

    def founders(*items: pb.Founder) -> dict[str, Any]:
        return {"founders": list(items)}

    me = pb.Founder(iin=director.iin, name=director.full_name, share_basis_points=10_000)
    cases: dict[str, list[pb.RegisterEntityRequest]] = {
        "FAILED_PRECONDITION": [
            _registration(director, partner, director_iin=minor),
            _registration(
                director,
                partner,
                **founders(
                    pb.Founder(iin=director.iin, name="Взрослый", share_basis_points=5000),
                    pb.Founder(iin=minor, name="Подросток", share_basis_points=5000),
                ),
            ),
            _registration(
                director,
                partner,
                **founders(
                    pb.Founder(bin=liquidated.bin, name="Старая", share_basis_points=10_000)
                ),
            ),
            _registration(director, partner, legal_form=pb.LEGAL_FORM_GU, **founders(me)),
        ],
        "NOT_FOUND": [
            _registration(
                director,
                partner,
                **founders(pb.Founder(bin=_unknown_bin(), name="Никто", share_basis_points=10_000)),
            )
        ],
        "INVALID_REQUEST": [
            _registration(
                director,
                partner,
                **founders(
                    pb.Founder(iin=director.iin, name="А", share_basis_points=6000),
                    pb.Founder(iin=partner.iin, name="Б", share_basis_points=3000),
                ),
            ),
            _registration(
                director,
                partner,
                **founders(
                    pb.Founder(iin=director.iin, name="А", share_basis_points=5000),
                    pb.Founder(iin=director.iin, name="А", share_basis_points=5000),
                ),
            ),
            _registration(director, partner, **founders()),
            _registration(director, partner, oked_code="99999"),
            _registration(director, partner, oked_code="62.01"),
            _registration(director, partner, legal_form=pb.LEGAL_FORM_UNSPECIFIED),
            _registration(director, partner, name="   "),
        ],
        "INVALID_IDENTIFIER": [
            _registration(director, partner, rca="0220000000000"),
            _registration(director, partner, director_iin=director.iin[:11] + "x"),
            _registration(director, partner, **founders(pb.Founder(name="Без ИИН"))),
            _registration(director, partner, **founders(pb.Founder(bin="123456789012", name="X"))),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.RegisterEntity(r)).code == code, request
    # Nothing was registered on the way: the director directs nothing new.
    links = stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=director.iin))
    assert not [x for x in links if x.bin[:4] == f"{TODAY:%y%m}"]
    # A corporate founder that is active is fine; a state institution may be founded by it.
    state = stub.RegisterEntity(
        _registration(
            director,
            partner,
            name="ГУ «Тестовое учреждение»",
            legal_form=pb.LEGAL_FORM_GU,
            oked_code="84110",
            **founders(pb.Founder(bin=parent.bin, name=parent.name, share_basis_points=10_000)),
        )
    )
    assert state.legal_form == pb.LEGAL_FORM_GU


def _unknown_bin() -> str:
    built = Bin.build(1999, 12, 99_998) or Bin.build(1999, 12, 99_999)
    assert built is not None
    return built.value


def test_change_director(stub: pb_grpc.LegalEntityRegistryStub) -> None:
    company = _active(1)
    old = WORLD.person(company.director)
    new = next(p for p in _adults(40, skip=10) if p.index != old.index)
    request = pb.ChangeDirectorRequest(bin=company.bin, director_iin=new.iin)
    entity = stub.ChangeDirector(request)
    assert entity.director_iin == new.iin
    assert stub.GetEntity(pb.GetEntityRequest(bin=company.bin)).director_iin == new.iin
    old_links = stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=old.iin))
    assert (company.bin, pb.ENTITY_ROLE_DIRECTOR) not in {(x.bin, x.role) for x in old_links}
    new_links = stub.ListEntitiesByPerson(pb.ListEntitiesByPersonRequest(iin=new.iin))
    assert (company.bin, pb.ENTITY_ROLE_DIRECTOR) in {(x.bin, x.role) for x in new_links}
    assert _error(lambda: stub.ChangeDirector(request)).code == "FAILED_PRECONDITION"

    liquidated = next(c for c in COMPANIES if c.liquidated is not None)
    other = _active(2)
    cases = {
        "FAILED_PRECONDITION": [
            pb.ChangeDirectorRequest(bin=liquidated.bin, director_iin=new.iin),
            pb.ChangeDirectorRequest(bin=other.bin, director_iin=_minor()),
            # Before the current director took office.
            pb.ChangeDirectorRequest(bin=other.bin, director_iin=new.iin, since_date="1990-01-01"),
        ],
        "INVALID_REQUEST": [
            pb.ChangeDirectorRequest(bin=other.bin, director_iin=new.iin, since_date="2999-01-01"),
            pb.ChangeDirectorRequest(bin=other.bin, director_iin=new.iin, since_date="01.01.2020"),
        ],
        "NOT_FOUND": [pb.ChangeDirectorRequest(bin=_unknown_bin(), director_iin=new.iin)],
        "INVALID_IDENTIFIER": [
            pb.ChangeDirectorRequest(bin=other.bin[:11], director_iin=new.iin),
            pb.ChangeDirectorRequest(bin=other.bin, director_iin=""),
        ],
    }
    for code, requests in cases.items():
        for req in requests:
            assert _error(lambda r=req: stub.ChangeDirector(r)).code == code, req
    assert stub.GetEntity(pb.GetEntityRequest(bin=other.bin)).director_iin == (
        WORLD.person(other.director).iin
    )


def test_reads_refuse_bad_and_unknown_bins(stub: pb_grpc.LegalEntityRegistryStub) -> None:
    bad = COMPANIES[0].bin[:11] + str((int(COMPANIES[0].bin[11]) + 1) % 10)
    assert _error(lambda: stub.GetEntity(pb.GetEntityRequest(bin=bad))).code == (
        "INVALID_IDENTIFIER"
    )
    unknown = _unknown_bin()
    assert _error(lambda: stub.GetEntity(pb.GetEntityRequest(bin=unknown))).code == "NOT_FOUND"
    assert _error(lambda: stub.ListFounders(pb.ListFoundersRequest(bin=unknown))).code == (
        "NOT_FOUND"
    )
    # An IIN where a BIN is expected is not a BIN.
    person = WORLD.person(0).iin
    assert _error(lambda: stub.GetEntity(pb.GetEntityRequest(bin=person))).code == (
        "INVALID_IDENTIFIER"
    )


def test_contract_kit_passes(running: RunningAdapter) -> None:
    # Last: the kit's sample writes change the store the tests above read.
    check_agency(running.channel(), load("gbdul"), WORLD).raise_for_failures()
