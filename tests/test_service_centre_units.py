"""The service centre's parts without a bus: composites, the durable store and queue,
the engine's degradation rules, the HTTP server, the pages and the configuration.

The engine runs real composites whose steps need no registry (they succeed, fail
retryably or fail for good on their own), on a real SQLite store; nothing stands in
for a part of the bus — the parts that need one are tested in test_stack_bus.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest

from consent.client import ConsentClient
from govbus.client import Bus
from govbus.errors import (
    ConfigInvalid,
    FailedPrecondition,
    GovbusError,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    UnknownService,
)
from service_centre.composites import (
    Catalogue,
    CompositeService,
    InputField,
    Step,
    StepContext,
    document_number,
)
from service_centre.config import CentreConfig, write_config
from service_centre.consents import ConsentDesk
from service_centre.engine import ConsentChoice, VisitEngine
from service_centre.life_events import CATALOGUE
from service_centre.pages import situation_page, visit_page
from service_centre.situation import build_situation
from service_centre.store import DONE, QUEUED, VisitStore
from service_centre.web import HttpServer, Request, Response, Router, status_of

SERVICE = "KZ/GOV/010140100000/alpha/alpha/v1"


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


CLIENT = "KZ/GOV/030140100014/service-centre"


# --- inputs and composites ---------------------------------------------------------------------


def test_inputs_are_validated_before_anything_runs() -> None:
    iin = InputField("father_iin", "father", kind="iin", required=False)
    assert iin.check("") == ""
    with pytest.raises(InvalidIdentifier):
        iin.check("123456789012")
    date = InputField("birth_date", "born", kind="past-date")
    assert date.check(" 2020-02-29 ") == "2020-02-29"
    with pytest.raises(InvalidRequest, match="future"):
        date.check((dt.date.today() + dt.timedelta(days=2)).isoformat())
    with pytest.raises(InvalidRequest, match="YYYY-MM-DD"):
        date.check("29.02.2020")
    choice = InputField("sex", "sex", kind="choice", choices=(("male", "m"), ("female", "f")))
    with pytest.raises(InvalidRequest, match="one of male, female"):
        choice.check("other")
    text = InputField("name", "Имя")
    with pytest.raises(InvalidRequest, match="required"):
        text.check("   ")
    with pytest.raises(InvalidRequest, match="printable"):
        text.check("Ай\x00ару")
    with pytest.raises(InvalidRequest, match="must be text"):
        text.check(12)  # type: ignore[arg-type]
    assert document_number("msr-204 711") == "MSR204711"
    with pytest.raises(InvalidRequest, match="Latin"):
        document_number("МСР-204711")


def test_newborn_inputs_take_defaults_and_refuse_unknown_names() -> None:
    newborn = CATALOGUE.get("newborn-registration")
    checked = newborn.check_inputs(
        {
            "last_name": "Есимова",
            "first_name": "Аружан",
            "sex": "female",
            "birth_certificate": "MSR1",
        }
    )
    assert checked["birth_place"] == "г. Алматы"
    assert dt.date.fromisoformat(checked["birth_date"]) < dt.date.today()
    with pytest.raises(InvalidRequest, match="takes no input"):
        newborn.check_inputs({"colour": "red"})


def test_catalogue_offers_a_service_only_when_its_registries_are_published() -> None:
    five = {
        c: f"KZ/GOV/010140100000/{c}/x/v1"
        for c in ("gbdfl", "zags", "address", "migration", "education")
    }
    offered = [c.code for c in CATALOGUE.offered(five)]
    assert offered[0] == "newborn-registration"
    assert "no-criminal-record" not in offered
    assert "no-criminal-record" in [
        c.code for c in CATALOGUE.offered({**five, "criminal": SERVICE})
    ]
    newborn = CATALOGUE.get("newborn-registration")
    assert newborn.consent_agencies("applicant") == ("migration", "gbdfl")
    assert set(newborn.consent_agencies("child")) == {"zags", "migration", "education"}
    with pytest.raises(UnknownService):
        CATALOGUE.get("passport")


async def _ok(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


def test_a_composite_with_a_broken_graph_is_refused() -> None:
    with pytest.raises(ConfigInvalid, match="needs later/unknown"):
        CompositeService(
            "broken", "t", "d", "p", "p", (Step("first", "a", "alpha", _ok, needs=("second",)),)
        )
    with pytest.raises(ConfigInvalid, match="repeated"):
        CompositeService(
            "broken",
            "t",
            "d",
            "p",
            "p",
            (Step("first", "a", "alpha", _ok), Step("first", "a", "alpha", _ok)),
        )
    with pytest.raises(ConfigInvalid, match="ASCII"):
        CompositeService("broken", "t", "d", "цель", "p", (Step("first", "a", "alpha", _ok),))
    catalogue = Catalogue()
    catalogue.register(
        CompositeService("one", "t", "d", "p", "p", (Step("first", "a", "alpha", _ok),))
    )
    with pytest.raises(ConfigInvalid, match="twice"):
        catalogue.register(
            CompositeService("one", "t", "d", "p", "p", (Step("first", "a", "alpha", _ok),))
        )


# --- the engine and the queue --------------------------------------------------------------------


class _Flaky:
    """A step that fails retryably until `healthy` is set (a registry that is down)."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    async def __call__(self, ctx: StepContext) -> dict[str, Any]:
        self.calls += 1
        if not self.healthy:
            raise ServiceUnavailable("alpha is down", retry_after=0.0)
        return {"value": 42}


async def _refused(ctx: StepContext) -> dict[str, Any]:
    raise FailedPrecondition("the registry's rule says no")


async def _uses(ctx: StepContext) -> dict[str, Any]:
    return {"got": ctx.results["flaky"]["value"]}


async def _slow(ctx: StepContext) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


async def _bug(ctx: StepContext) -> dict[str, Any]:
    raise KeyError("a bug in a step")


def _engine(tmp_path: Path, flaky: _Flaky) -> tuple[VisitEngine, VisitStore]:
    composite = CompositeService(
        "test-visit",
        "Test",
        "steps that need no registry",
        "testing",
        "testing",
        (
            Step("flaky", "flaky", "alpha", flaky, subject=""),
            Step("uses", "uses", "alpha", _uses, needs=("flaky",), subject=""),
            Step("refused", "refused", "alpha", _refused, subject=""),
            Step("after-refused", "after", "alpha", _ok, needs=("refused",), subject=""),
            Step("slow", "slow", "alpha", _slow, subject="", deadline_s=0.1),
            Step("bug", "bug", "alpha", _bug, subject=""),
            Step("fine", "fine", "alpha", _ok, subject=""),
        ),
    )
    store = VisitStore(tmp_path / "centre.db")
    # The bus and the consent desk are real clients; these steps never use them.
    bus = Bus("127.0.0.1:9", CLIENT)
    desk = ConsentDesk(ConsentClient(grpc.aio.insecure_channel("127.0.0.1:9")), CLIENT)
    engine = VisitEngine(
        store, bus, desk, Catalogue().extend([composite]), {"alpha": SERVICE}, max_backoff_s=5
    )
    return engine, store


@run
async def test_a_visit_degrades_step_by_step_and_the_queue_finishes_it(tmp_path: Path) -> None:
    flaky = _Flaky()
    engine, store = _engine(tmp_path, flaky)
    visit = await engine.open_visit("test-visit", "900517400015", "operator-1", {}, ConsentChoice())
    states = {s.name: (s.state, s.error_code) for s in visit.steps}
    assert states == {
        "flaky": ("queued", "SERVICE_UNAVAILABLE"),
        "uses": ("waiting", ""),
        "refused": ("failed", "FAILED_PRECONDITION"),
        "after-refused": ("blocked", "FAILED_PRECONDITION"),
        "slow": ("queued", "DEADLINE_EXCEEDED"),
        "bug": ("failed", "INTERNAL"),
        "fine": ("done", ""),
    }
    assert visit.status == "partial"
    assert "error id" in visit.step("bug").error
    stats = store.queue_stats()
    assert (stats.depth, stats.queued, stats.waiting, stats.partial_visits) == (3, 2, 1, 1)
    assert stats.failures["alpha"][0] in {states[name][1] for name in states}  # the newest

    # Not due yet: nothing is retried before its time ...
    assert store.due_visits(engine.now_ms() - 10_000) == []
    # ... until the operator says "now"; the registry is back.
    flaky.healthy = True
    assert engine.retry_now() == 2
    assert await engine.retry_due() == 1
    visit = store.visit(visit.id)
    assert visit.step("flaky").state == DONE and visit.step("flaky").attempts == 2
    assert visit.step("uses").result == {"got": 42}
    assert visit.step("slow").state == QUEUED  # still slow: queued again
    assert store.queue_stats().depth == 1


@run
async def test_the_queue_survives_a_restart_of_the_application(tmp_path: Path) -> None:
    flaky = _Flaky()
    engine, store = _engine(tmp_path, flaky)
    visit = await engine.open_visit("test-visit", "900517400015", "operator-1", {}, ConsentChoice())
    store.close()
    reopened = VisitStore(tmp_path / "centre.db")
    assert reopened.visit(visit.id).step("flaky").state == QUEUED
    assert reopened.queue_stats().depth == 3
    assert reopened.make_all_due() == 2
    assert visit.id in reopened.due_visits(engine.now_ms())


@run
async def test_bad_visits_are_refused_and_record_nothing(tmp_path: Path) -> None:
    engine, store = _engine(tmp_path, _Flaky())
    bad: list[tuple[tuple[Any, ...], type[GovbusError]]] = [
        (("test-visit", "123", "op", {}, ConsentChoice()), InvalidIdentifier),
        (("nothing", "900517400015", "op", {}, ConsentChoice()), UnknownService),
        (("test-visit", "900517400015", "op", {"x": "1"}, ConsentChoice()), InvalidRequest),
        (("test-visit", "900517400015", "op", {}, ConsentChoice(method="fax")), InvalidRequest),
        (
            ("test-visit", "900517400015", "op", {}, ConsentChoice(method="in-person")),
            InvalidRequest,
        ),
        (("test-visit", "900517400015", "оператор", {}, ConsentChoice()), InvalidRequest),
    ]
    for args, error in bad:
        with pytest.raises(error):
            await engine.open_visit(*args)
    assert store.recent() == []
    with pytest.raises(NotFound):
        store.visit("nope")
    with pytest.raises(FailedPrecondition):
        await engine.confirm_consent(
            (await engine.open_visit("test-visit", "900517400015", "op", {}, ConsentChoice())).id,
            "123456",
        )


@run
async def test_backoff_grows_is_capped_and_honours_retry_info(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path, _Flaky())
    engine._jitter = lambda: 1.0
    assert [engine._backoff(n, None) for n in (1, 2, 3, 10)] == [0.5, 1.0, 2.0, 5.0]
    assert engine._backoff(1, 3.0) == 3.0
    assert engine._backoff(1, 60.0) == 5.0


# --- HTTP ----------------------------------------------------------------------------------------


async def _http(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


@run
async def test_the_http_server_refuses_malformed_requests_and_maps_errors() -> None:
    async def hello(request: Request) -> Response:
        return Response.json({"name": request.params.get("name"), "q": request.query})

    async def fails(request: Request) -> Response:
        raise ServiceUnavailable("the registry is down")

    async def bug(request: Request) -> Response:
        raise ZeroDivisionError

    async def echo(request: Request) -> Response:
        return Response.json(request.json())

    router = Router()
    router.add("GET", "/api/hello/{name}", hello)
    router.add("GET", "/api/fails", fails)
    router.add("GET", "/api/bug", bug)
    router.add("POST", "/api/echo", echo)
    server = HttpServer(router)
    port = await server.start("127.0.0.1", 0)
    try:
        status, headers, body = await _http(
            port, b"GET /api/hello/al?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert status == 200 and json.loads(body) == {"name": "al", "q": {"x": "1"}}
        assert headers["connection"] == "close"
        assert (await _http(port, b"HEAD /api/hello/al HTTP/1.1\r\n\r\n"))[2] == b""
        cases = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /api/hello/al HTTP/2.0\r\n\r\n", 400),
            (b"GET /api/hello/al HTTP/1.1\r\nBad Header\r\n\r\n", 400),
            (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", 414),
            (b"POST /api/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
            (b"POST /api/echo HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (b"POST /api/echo HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413),
            (b"POST /api/echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n[1]", 400),
            (b"DELETE /api/echo HTTP/1.1\r\n\r\n", 405),
            (b"GET /api/nothing HTTP/1.1\r\n\r\n", 404),
            (b"GET /api/fails HTTP/1.1\r\n\r\n", 503),
            (b"GET /api/bug HTTP/1.1\r\n\r\n", 500),
        ]
        for raw, expected in cases:
            status, _, body = await _http(port, raw)
            assert status == expected, (raw[:40], status, body)
        status, _, body = await _http(port, b"GET /api/bug HTTP/1.1\r\n\r\n")
        assert b"error id" in body and b"ZeroDivision" not in body
        status, _, body = await _http(
            port, b'POST /api/echo HTTP/1.1\r\nContent-Length: 11\r\n\r\n{"a": "\xd0\xb0"}'
        )
        assert status == 200 and json.loads(body) == {"a": "а"}
    finally:
        await server.stop()


def test_errors_map_to_http_statuses() -> None:
    assert status_of(InvalidIdentifier("x")) == 400
    assert status_of(NotFound("x")) == 404
    assert status_of(ServiceUnavailable("x")) == 503
    assert status_of(FailedPrecondition("x")) == 409


# --- pages, situation, configuration ------------------------------------------------------------


@run
async def test_pages_escape_what_came_from_outside(tmp_path: Path) -> None:
    engine, store = _engine(tmp_path, _Flaky())
    visit = await engine.open_visit("test-visit", "900517400015", "op<b>", {}, ConsentChoice())
    html = visit_page(visit, engine.catalogue.get("test-visit"))
    assert "op&lt;b&gt;" in html and "op<b>" not in html
    situation = build_situation(
        None, ServiceUnavailable("<ss down>"), {"alpha": SERVICE}, store.queue_stats()
    )
    page = situation_page(situation)
    assert "&lt;ss down&gt;" in page and "alpha" in page
    row = situation.rows[0]
    assert (row.queued_steps, row.waiting_steps, row.health) == (2, 1, "degraded")


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        client=CLIENT,
        security_server="127.0.0.1:8081",
        operator="operator-1",
        ca_cert=tmp_path / "ca.pem",
        operator_key=tmp_path / "op.key",
        operator_cert=tmp_path / "op.cert",
        consent_address="127.0.0.1:7000",
        consent_operator_address="127.0.0.1:7001",
        services={"alpha": SERVICE},
    )
    config = CentreConfig.load(path)
    assert config.services == {"alpha": SERVICE} and config.state_dir == tmp_path / "state"
    text = path.read_text()
    for bad, message in [
        (text.replace(CLIENT, "KZ/GOV/1/x"), "client"),
        (text.replace('"127.0.0.1:8081"', '"nowhere"'), "security_server"),
        (text.replace("max_backoff_s = 30.0", "max_backoff_s = -1"), "max_backoff_s"),
        (text.replace(f'alpha = "{SERVICE}"', 'alpha = "bad"'), "alpha"),
        (text + "\n[web\n", "not valid TOML"),
    ]:
        path.write_text(bad)
        with pytest.raises(ConfigInvalid, match=message):
            CentreConfig.load(path)
    with pytest.raises(ConfigInvalid, match="cannot read"):
        CentreConfig.load(tmp_path / "absent.toml")
