"""The whole bus as real processes, and the service centre on it, end to end.

One stack for the module (registry, consent service, seven security servers, five
adapters, the service centre). The tests run in file order; the one that kills a
registry brings it back before it ends.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.population import World
from adapters.population.world import Person
from adapters.sdk.agency import load
from govbus.errors import InvalidIdentifier, InvalidRequest, OtpInvalid, UnknownService
from govbus.ids import Iin, Sex
from service_centre.stack import CENTRE_SUBSYSTEM, Stack
from tests.centre_bus import (
    PERSONS,
    SEED,
    Counter,
    live_children,
    pid_alive,
    stack_options,
    store_cache,
)
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    before = set(live_children())
    running = Stack(stack_options(tmp_path_factory.mktemp("bus"), store_cache(tmp_path_factory)))
    try:
        running.start()
        yield running
    finally:
        pids = running.pids()
        running.stop()
        assert not [pid for pid in pids.values() if pid_alive(pid)], "processes left running"
        assert set(live_children()) <= before


@pytest.fixture(scope="module")
def counter(stack: Stack) -> Counter:
    return Counter(stack.info.centre_url, Path(stack.info.consent_outbox))


class People:
    """Distinct sample citizens from the stack's own world."""

    def __init__(self) -> None:
        self.world = World(SEED, PERSONS)
        self.used: set[int] = set()

    def take(self, *, mother: bool = False, moved: bool = False) -> Person:
        for person in self.world.persons():
            if person.index in self.used or not person.alive or person.age() < 18:
                continue
            if mother and not (person.sex is Sex.FEMALE and 20 <= person.age() <= 38):
                continue
            if moved and person.previous_registration is None:
                continue
            self.used.add(person.index)
            return person
        raise AssertionError("no such person")


@pytest.fixture(scope="module")
def people() -> People:
    return People()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post_form(url: str, fields: dict[str, str]) -> tuple[int, str, str]:
    """POST a form without following the redirect: (status, Location, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with opener.open(request, timeout=60) as answer:
            return answer.status, answer.headers.get("Location", ""), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read().decode()


def test_the_stack_runs_every_part_and_the_operator_tools_see_it(stack: Stack) -> None:
    info = stack.info
    pids = stack.pids()
    assert all(pid_alive(pid) for pid in pids.values())
    assert set(info.adapters) == {"gbdfl", "zags", "address", "migration", "education"}
    # One security server per agency, plus the ЦОН's and the portal's.
    assert len(info.servers) == 7
    assert {s.role for s in info.servers.values()} == {"provider", "consumer"}
    assert info.startup_s > 0 and "conf-in-force" in info.timings
    status = run_cli("ss", "status", "--address", info.centre_server.consumer)
    assert "KZ/GOV/030140100014/ss1" in status.stdout
    conf = run_cli("conf", "show", "--registry", info.registry_public, "--ca", info.ca_cert)
    for adapter in info.adapters.values():
        assert adapter.service in conf.stdout
    allowed = run_cli(
        "discover",
        "allowed",
        CENTRE_SUBSYSTEM,
        "--registry",
        info.registry_public,
        "--ca",
        info.ca_cert,
    )
    assert "group:service-centre" in allowed.stdout


def test_publish_argv_is_what_the_registry_cli_takes(stack: Stack, tmp_path: Path) -> None:
    info = stack.info
    adapter = load("address")
    descriptor = tmp_path / "address.binpb"
    descriptor.write_bytes(adapter.descriptor_set())
    argv = adapter.publication.publish_argv(descriptor, info.adapters["address"].server)
    env = {
        "GOVBUS_REGISTRY_ADMIN": info.registry_admin,
        "GOVBUS_ADMIN_CERT": info.operator_cert,
        "GOVBUS_ADMIN_KEY": info.operator_key,
        "GOVBUS_CA": info.ca_cert,
        "GOVBUS_KEY_PASSPHRASE": Path(info.passphrase_file).read_text(),
    }
    done = run_cli(*argv[1:], "--replace", env=env)
    assert f"service {info.adapters['address'].service} published" in done.stdout


def test_a_composite_visit_end_to_end_through_the_bus(counter: Counter, people: People) -> None:
    citizen = people.take()
    visit = counter.visit("personal-data", citizen.iin, citizen.phone)
    assert visit["status"] == "complete", visit
    lines = {line["label"]: line for line in visit["certificate"]["lines"]}  # type: ignore[index]
    assert lines["ФИО"]["value"] == citizen.full_name
    assert lines["Адрес постоянной регистрации"]["value"] == citizen.address.line()
    assert not any(line["missing"] for line in lines.values())
    assert [c["method"] for c in visit["consents"]] == ["otp"]  # type: ignore[union-attr]


def test_newborn_registration_over_five_registries(counter: Counter, people: People) -> None:
    mother = people.take(mother=True)
    visit = counter.visit(
        "newborn-registration",
        mother.iin,
        mother.phone,
        {
            "last_name": mother.last_name,
            "first_name": "Айару",
            "sex": "female",
            "birth_certificate": "MSR-100001",
        },
    )
    assert visit["status"] == "complete", visit
    steps = {s["name"]: s for s in visit["steps"]}  # type: ignore[union-attr]
    child = Iin.parse(steps["assign-iin"]["result"]["iin"])
    assert child.sex is Sex.FEMALE
    assert steps["register-birth"]["result"]["mother_iin"] == mother.iin
    assert steps["register-residence"]["result"]["rca"] == mother.address.rca
    assert steps["kindergarten-queue"]["result"]["status"] == "QUEUE_STATUS_WAITING"
    roles = {c["role"]: c["method"] for c in visit["consents"]}  # type: ignore[union-attr]
    assert roles == {"applicant": "otp", "child": "in-person"}


def test_bad_input_gets_a_clear_error_and_changes_nothing(counter: Counter, people: People) -> None:
    api = counter.api
    before = len(api.visits())
    citizen = people.take()
    with pytest.raises(InvalidIdentifier):
        api.open_visit("personal-data", "123456789012")
    with pytest.raises(UnknownService):
        api.open_visit("passport", citizen.iin)
    with pytest.raises(InvalidRequest):
        api.open_visit("newborn-registration", citizen.iin, inputs={"sex": "dragon"})
    status, body = api.request("POST", "/api/visits", ["not", "an", "object"])
    assert status == 400 and body["error"]["code"] == "INVALID_REQUEST"
    assert len(api.visits()) == before
    # A wrong code is refused and the visit keeps waiting for the right one.
    opened = api.open_visit(
        "marital-status", citizen.iin, consent={"method": "otp", "phone": citizen.phone}
    )
    right = counter.code_for(citizen.phone)
    with pytest.raises(OtpInvalid):
        api.confirm(opened["id"], "000000" if right != "000000" else "111111")
    assert api.visit(opened["id"])["stage"] == "awaiting-consent"
    assert api.confirm(opened["id"], right)["status"] == "complete"


def test_operator_and_situation_pages_answer(stack: Stack, people: People) -> None:
    url = stack.info.centre_url
    status, home = _get(url + "/")
    assert status == 200 and "Регистрация рождения ребёнка" in home
    assert "Справка об отсутствии судимости" in home  # announced, not offered: no criminal adapter
    status, form = _get(url + "/visits/new?service=personal-data")
    assert status == 200 and 'name="iin"' in form
    citizen = people.take()
    status, location, _ = _post_form(
        url + "/visits",
        {
            "service": "personal-data",
            "iin": citizen.iin,
            "consent_method": "otp",
            "phone": citizen.phone,
        },
    )
    assert status == 303 and location.startswith("/visits/")
    status, page = _get(url + location)
    assert status == 200 and 'name="code"' in page
    code = Counter(url, Path(stack.info.consent_outbox)).code_for(citizen.phone)
    status, location2, _ = _post_form(url + location + "/consent", {"code": code})
    assert (status, location2) == (303, location)
    status, page = _get(url + location)
    assert "СПРАВКА о персональных данных" in page and citizen.last_name in page
    status, _, bad = _post_form(url + "/visits", {"service": "personal-data", "iin": "12"})
    assert status == 400 and "INVALID_IDENTIFIER" in bad
    status, situation = _get(url + "/situation")
    assert status == 200
    for agency in stack.info.adapters:
        assert agency in situation
    assert _get(url + "/nothing")[0] == 404


def test_a_registry_down_degrades_visits_and_the_queue_drains(
    stack: Stack, counter: Counter, people: People
) -> None:
    api = counter.api
    old = stack.adapter_pid("migration")
    assert stack.kill_adapter("migration") == old
    assert not pid_alive(old)
    try:
        # A service that does not need the failed registry is untouched.
        unaffected = counter.visit("marital-status", *_who(people.take()))
        assert unaffected["status"] == "complete"
        # One that needs it returns what it can, marks the rest and queues it.
        moved = people.take(moved=True)
        partial = counter.visit("address-certificate", moved.iin, moved.phone)
        states = {s["name"]: s["state"] for s in partial["steps"]}  # type: ignore[union-attr]
        assert partial["status"] == "partial"
        assert states == {
            "person": "done",
            "registration": "queued",
            "history": "queued",
            "address": "waiting",
        }
        codes = {s["error_code"] for s in partial["steps"] if s["state"] == "queued"}  # type: ignore[union-attr]
        assert codes <= {"SERVICE_UNAVAILABLE", "DEADLINE_EXCEEDED"}
        lines = {line["label"]: line for line in partial["certificate"]["lines"]}  # type: ignore[index]
        assert lines["ФИО"]["value"] == moved.full_name
        assert lines["Адрес постоянной регистрации"]["missing"] == "address"
        situation = api.situation()
        migration = next(r for r in situation["rows"] if r["agency"] == "migration")
        assert migration["queued_steps"] >= 2 and situation["queue_depth"] >= 3
        assert migration["last_failure"]
    finally:
        new = stack.restart_adapter("migration")
    assert new != old and pid_alive(new)
    api.retry_now()
    api.wait_until(lambda: api.situation()["queue_depth"] == 0, "the queue to drain", 60)
    done = api.visit(str(partial["id"]))
    assert done["status"] == "complete"
    lines = {line["label"]: line for line in done["certificate"]["lines"]}
    assert lines["Адрес постоянной регистрации"]["value"] == moved.address.line()
    assert next(s for s in done["steps"] if s["name"] == "registration")["attempts"] >= 2


def _who(person: Person) -> tuple[str, str]:
    return person.iin, person.phone


def test_the_demo_runs_on_the_stack(stack: Stack) -> None:
    from service_centre.demo import run_demo

    figures = run_demo(stack)
    assert figures["unaffected_status"] == "complete"
    assert figures["degraded_statuses"] == ["partial", "partial"]
    assert figures["final_statuses"] == ["complete", "complete"]
    assert os.path.exists(stack.info.centre_server.audit_store.removeprefix("sqlite:///"))
