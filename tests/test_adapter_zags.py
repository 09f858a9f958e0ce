"""ЗАГС (civil registry) over real gRPC: acts match the world; registrations keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import Person, Role, World
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.zags.v1 import zags_pb2 as pb
from govbus.pb.agencies.zags.v1 import zags_pb2_grpc as pb_grpc

WORLD = World(seed=5, persons=800)
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("zags") / "zags.db"
    agency = load("zags")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.CivilRegistryStub:
    return pb_grpc.CivilRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _singles(sex: Sex) -> list[Person]:
    return [
        p
        for p in WORLD.persons()
        if p.role is Role.SINGLE and p.alive and p.sex is sex and p.age() >= 18
    ]


def _new_iin(born: dt.date, sex: Sex, serial: int) -> str:
    built = Iin.build(born, sex, serial) or Iin.build(born, sex, serial + 1)
    assert built is not None
    return built.value


def test_birth_acts_match_the_world(stub: pb_grpc.CivilRegistryStub) -> None:
    household = next(h for h in WORLD.households() if len(h.members) >= 3 and h.marriage)
    father, mother, child = household.members[:3]
    act = stub.GetBirthRecord(pb.GetBirthRecordRequest(iin=child.iin))
    assert (act.mother_iin, act.father_iin) == (mother.iin, father.iin)
    assert act.birth_date == child.birth_date.isoformat()
    assert act.record_id == child.birth_record_id
    # A wife's birth act carries her maiden name, her parents are not in the world.
    assert household.marriage is not None
    wife_act = stub.GetBirthRecord(pb.GetBirthRecordRequest(iin=mother.iin))
    assert wife_act.last_name == household.marriage.wife_surname_before
    assert wife_act.mother_iin == ""
    births = list(stub.ListBirthsByParent(pb.ListBirthsByParentRequest(parent_iin=father.iin)))
    assert {b.child_iin for b in births} == {p.iin for p in household.members[2:]}


def test_marriages_and_deaths_match_the_world(stub: pb_grpc.CivilRegistryStub) -> None:
    divorced = next(h for h in WORLD.households() if h.marriage and h.marriage.divorced)
    assert divorced.marriage is not None
    acts = list(stub.ListMarriages(pb.ListMarriagesRequest(iin=divorced.members[1].iin)))
    assert len(acts) == 1
    assert acts[0].status == pb.MARRIAGE_STATUS_DISSOLVED
    assert acts[0].dissolved_date == str(divorced.marriage.divorced)
    dead = next(p for p in WORLD.persons() if not p.alive)
    act = stub.GetDeathRecord(pb.GetDeathRecordRequest(iin=dead.iin))
    assert act.death_date == str(dead.death_date)
    alive = WORLD.person(0) if WORLD.person(0).alive else WORLD.person(1)
    error = _error(lambda: stub.GetDeathRecord(pb.GetDeathRecordRequest(iin=alive.iin)))
    assert error.code == "NOT_FOUND"


def _birth(child_iin: str, mother: Person, father: Person | None, **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "child_iin": child_iin,
        "last_name": "Тестова",
        "first_name": "Аяла",
        "birth_date": TODAY.isoformat(),
        "sex": pb.SEX_FEMALE,
        "birth_place": "Астана",
        "mother_iin": mother.iin,
        "father_iin": father.iin if father else "",
        "registry_office": "Отдел ЗАГС г. Астана",
    }
    fields.update(kw)
    return pb.RegisterBirthRequest(**fields)


def test_register_birth(stub: pb_grpc.CivilRegistryStub) -> None:
    household = next(
        h for h in WORLD.households() if h.marriage and all(p.alive for p in h.members[:2])
    )
    father, mother = household.members[:2]
    child = _new_iin(TODAY, Sex.FEMALE, 9500)
    act = stub.RegisterBirth(_birth(child, mother, father))
    assert act.record_id.startswith("B9") and act.registered_date == TODAY.isoformat()
    assert stub.GetBirthRecord(pb.GetBirthRecordRequest(iin=child)).record_id == act.record_id
    again = _error(lambda: stub.RegisterBirth(_birth(child, mother, father)))
    assert again.code == "ALREADY_EXISTS"
    births = stub.ListBirthsByParent(pb.ListBirthsByParentRequest(parent_iin=mother.iin))
    assert child in {b.child_iin for b in births}


def test_register_birth_refuses_inconsistent_acts(stub: pb_grpc.CivilRegistryStub) -> None:
    household = next(h for h in WORLD.households() if h.marriage)
    father, mother = household.members[:2]
    boy = _new_iin(TODAY, Sex.MALE, 9600)
    cases = {
        "INVALID_REQUEST": [
            _birth(boy, mother, father),  # the IIN says male, the act female
            _birth(_new_iin(TODAY, Sex.FEMALE, 9602), father, None),  # a man as mother
            _birth(_new_iin(TODAY, Sex.FEMALE, 9604), mother, father, birth_date="2999-01-01"),
        ],
        "INVALID_IDENTIFIER": [_birth(boy[:11] + "0", mother, father, sex=pb.SEX_MALE)],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.RegisterBirth(r)).code == code
    missing = _error(lambda: stub.GetBirthRecord(pb.GetBirthRecordRequest(iin=boy)))
    assert missing.code == "NOT_FOUND"


def test_register_marriage_and_its_rules(stub: pb_grpc.CivilRegistryStub) -> None:
    groom, bride = _singles(Sex.MALE)[0], _singles(Sex.FEMALE)[0]
    request = pb.RegisterMarriageRequest(
        husband_iin=groom.iin,
        wife_iin=bride.iin,
        wife_surname_after=groom.last_name + "а",
        registry_office="Отдел ЗАГС г. Алматы",
    )
    act = stub.RegisterMarriage(request)
    assert act.status == pb.MARRIAGE_STATUS_REGISTERED
    assert act.wife_surname_before == bride.last_name
    assert act.marriage_date == TODAY.isoformat()
    assert _error(lambda: stub.RegisterMarriage(request)).code == "FAILED_PRECONDITION"
    swapped = pb.RegisterMarriageRequest(
        husband_iin=bride.iin, wife_iin=groom.iin, registry_office="Отдел ЗАГС"
    )
    assert _error(lambda: stub.RegisterMarriage(swapped)).code == "INVALID_REQUEST"
    child = next(p for p in WORLD.persons() if p.role is Role.CHILD and p.alive and p.age() < 10)
    young = pb.RegisterMarriageRequest(
        husband_iin=_singles(Sex.MALE)[1].iin if child.sex is Sex.FEMALE else child.iin,
        wife_iin=child.iin if child.sex is Sex.FEMALE else _singles(Sex.FEMALE)[1].iin,
        registry_office="Отдел ЗАГС",
    )
    assert _error(lambda: stub.RegisterMarriage(young)).code == "FAILED_PRECONDITION"


def test_register_death_once(stub: pb_grpc.CivilRegistryStub) -> None:
    person = _singles(Sex.MALE)[2]
    request = pb.RegisterDeathRequest(
        iin=person.iin,
        death_date=TODAY.isoformat(),
        death_place="Алматы",
        registry_office="Отдел ЗАГС г. Алматы",
    )
    act = stub.RegisterDeath(request)
    assert act.iin == person.iin and act.record_id.startswith("D9")
    assert _error(lambda: stub.RegisterDeath(request)).code == "ALREADY_EXISTS"
    dead = next(p for p in WORLD.persons() if not p.alive)
    # A dead person cannot marry.
    bride = _singles(Sex.FEMALE)[3]
    marriage = pb.RegisterMarriageRequest(
        husband_iin=person.iin, wife_iin=bride.iin, registry_office="Отдел ЗАГС"
    )
    assert _error(lambda: stub.RegisterMarriage(marriage)).code == "FAILED_PRECONDITION"
    assert dead.death_date is not None
