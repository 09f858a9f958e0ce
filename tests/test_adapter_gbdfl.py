"""ГБД ФЛ (IIN registry) over real gRPC: reads match the world; writes keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import MaritalStatus, Person, Role, World
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2 as pb
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2_grpc as pb_grpc

WORLD = World(seed=5, persons=800)
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("gbdfl") / "gbdfl.db"
    agency = load("gbdfl")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.PersonRegistryStub:
    return pb_grpc.PersonRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Person):
            list(result)
    return from_rpc_error(failure.value)


def _family() -> tuple[Person, Person, list[Person]]:
    for household in WORLD.households():
        m = household.marriage
        members = household.members
        if m and m.divorced is None and len(members) >= 4 and all(p.alive for p in members):
            return members[0], members[1], list(members[2:])
    raise AssertionError("no family")


def _single(n: int) -> Person:
    singles = [p for p in WORLD.persons() if p.role is Role.SINGLE and p.alive]
    return singles[n]


def test_get_person_matches_the_world(stub: pb_grpc.PersonRegistryStub) -> None:
    for index in (0, 1, 2, 399, 799):
        p = WORLD.person(index)
        got = stub.GetPerson(pb.GetPersonRequest(iin=p.iin))
        assert (got.last_name, got.first_name, got.patronymic) == (
            p.last_name,
            p.first_name,
            p.patronymic,
        )
        assert got.birth_date == p.birth_date.isoformat()
        assert got.sex == (pb.SEX_MALE if p.sex is Sex.MALE else pb.SEX_FEMALE)
        alive = pb.LIFE_STATUS_ALIVE if p.alive else pb.LIFE_STATUS_DECEASED
        assert got.life_status == alive
        assert got.HasField("document") == (p.document is not None)


def test_deceased_person_has_a_death_date(stub: pb_grpc.PersonRegistryStub) -> None:
    dead = next(p for p in WORLD.persons() if not p.alive)
    got = stub.GetPerson(pb.GetPersonRequest(iin=dead.iin))
    assert got.life_status == pb.LIFE_STATUS_DECEASED
    assert got.death_date == str(dead.death_date)


def test_search_finds_by_name_and_honours_the_limit(stub: pb_grpc.PersonRegistryStub) -> None:
    p = WORLD.person(3)
    found = list(
        stub.SearchPersons(pb.SearchPersonsRequest(last_name=p.last_name, first_name=p.first_name))
    )
    assert p.iin in {f.iin for f in found}
    assert all(f.last_name == p.last_name for f in found)
    limited = list(stub.SearchPersons(pb.SearchPersonsRequest(last_name=p.last_name, limit=1)))
    assert len(limited) == 1
    error = _error(lambda: stub.SearchPersons(pb.SearchPersonsRequest(last_name="А", limit=501)))
    assert error.code == "INVALID_REQUEST"


def test_relatives_follow_the_world_links(stub: pb_grpc.PersonRegistryStub) -> None:
    father, mother, children = _family()
    relatives = list(stub.ListRelatives(pb.ListRelativesRequest(iin=mother.iin)))
    by_relation: dict[int, set[str]] = {}
    for r in relatives:
        by_relation.setdefault(r.relation, set()).add(r.iin)
    assert by_relation[pb.RELATION_SPOUSE] == {father.iin}
    assert by_relation[pb.RELATION_CHILD] == {c.iin for c in children}
    of_child = list(stub.ListRelatives(pb.ListRelativesRequest(iin=children[0].iin)))
    assert {(r.relation, r.iin) for r in of_child} == {
        (pb.RELATION_FATHER, father.iin),
        (pb.RELATION_MOTHER, mother.iin),
    }


def test_divorced_spouse_is_a_former_spouse(stub: pb_grpc.PersonRegistryStub) -> None:
    household = next(
        h
        for h in WORLD.households()
        if h.marriage and h.marriage.divorced and all(p.alive for p in h.members[:2])
    )
    husband, wife = household.members[:2]
    assert husband.marital_status is MaritalStatus.DIVORCED
    relatives = list(stub.ListRelatives(pb.ListRelativesRequest(iin=husband.iin)))
    assert (pb.RELATION_FORMER_SPOUSE, wife.iin) in {(r.relation, r.iin) for r in relatives}


def _newborn(mother: Person, father: Person | None, application: str, **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "last_name": "Тестов",
        "first_name": "Алихан",
        "birth_date": TODAY.isoformat(),
        "sex": pb.SEX_MALE,
        "birth_place": "Алматы",
        "mother_iin": mother.iin,
        "father_iin": father.iin if father else "",
        "application_id": application,
    }
    fields.update(kw)
    return pb.AssignIinRequest(**fields)


def test_assign_iin_gives_a_valid_new_iin_and_is_idempotent(
    stub: pb_grpc.PersonRegistryStub,
) -> None:
    father, mother, _children = _family()
    first = stub.AssignIin(_newborn(mother, father, "app-1"))
    iin = Iin(first.iin)
    assert iin.birth_date == TODAY and iin.sex is Sex.MALE
    assert WORLD.index_of(first.iin) is None
    again = stub.AssignIin(_newborn(mother, father, "app-1"))
    assert again.iin == first.iin
    twin = stub.AssignIin(_newborn(mother, father, "app-2"))
    assert twin.iin != first.iin and Iin(twin.iin).birth_date == TODAY
    relatives = list(stub.ListRelatives(pb.ListRelativesRequest(iin=first.iin)))
    assert {(r.relation, r.iin) for r in relatives} == {
        (pb.RELATION_FATHER, father.iin),
        (pb.RELATION_MOTHER, mother.iin),
    }
    other = _error(lambda: stub.AssignIin(_newborn(mother, father, "app-1", first_name="Другой")))
    assert other.code == "ALREADY_EXISTS"


def test_assign_iin_refuses_bad_input_and_changes_nothing(
    stub: pb_grpc.PersonRegistryStub,
) -> None:
    father, mother, children = _family()

    def count_children() -> int:
        relatives = stub.ListRelatives(pb.ListRelativesRequest(iin=mother.iin))
        return sum(r.relation == pb.RELATION_CHILD for r in relatives)

    before = count_children()
    cases = {
        "INVALID_IDENTIFIER": _newborn(mother, father, "bad-1", mother_iin=mother.iin[:11] + "x"),
        "INVALID_REQUEST": _newborn(mother, father, "bad-2", birth_date="2999-01-01"),
        "FAILED_PRECONDITION": _newborn(father, None, "bad-3"),  # a man as the mother
        "NOT_FOUND": _newborn(mother, WORLD.person(0), "bad-4", father_iin=UNKNOWN_IIN),
    }
    for code, request in cases.items():
        assert _error(lambda r=request: stub.AssignIin(r)).code == code, code
    no_sex = _newborn(mother, father, "bad-5", sex=pb.SEX_UNSPECIFIED)
    assert _error(lambda: stub.AssignIin(no_sex)).code == "INVALID_REQUEST"
    assert count_children() == before
    assert len(children) <= before


def test_change_last_name_and_death(stub: pb_grpc.PersonRegistryStub) -> None:
    single = _single(0)
    changed = stub.ChangeLastName(
        pb.ChangeLastNameRequest(iin=single.iin, new_last_name="Новая", basis_record_id="M1")
    )
    assert changed.last_name == "Новая"
    same = pb.ChangeLastNameRequest(iin=single.iin, new_last_name="Новая", basis_record_id="M1")
    assert _error(lambda: stub.ChangeLastName(same)).code == "FAILED_PRECONDITION"

    father, mother, _children = _family()
    dead = stub.RegisterDeath(
        pb.RegisterDeathRequest(iin=father.iin, death_date=TODAY.isoformat(), death_record_id="D1")
    )
    assert dead.life_status == pb.LIFE_STATUS_DECEASED
    widow = stub.GetPerson(pb.GetPersonRequest(iin=mother.iin))
    assert widow.marital_status == pb.MARITAL_STATUS_WIDOWED
    again = pb.RegisterDeathRequest(
        iin=father.iin, death_date=TODAY.isoformat(), death_record_id="D2"
    )
    assert _error(lambda: stub.RegisterDeath(again)).code == "ALREADY_EXISTS"
    future = pb.RegisterDeathRequest(
        iin=_single(1).iin, death_date="2999-01-01", death_record_id="D3"
    )
    assert _error(lambda: stub.RegisterDeath(future)).code == "INVALID_REQUEST"
