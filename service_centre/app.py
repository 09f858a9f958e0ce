"""The ЦОН service-centre application: pages, JSON API, engine and queue, wired.

`ServiceCentre(config)` opens its SQLite store, a `govbus.client.Bus` on the ЦОН's
own consumer security server (the only way it reaches a registry), the consent
desk on the consent service's operator port, the retrier, and the web server.
`serve(config_path, ready_file)` runs it as a process (`govbus centre serve`) and
writes `{"url", "port", "pid"}` to the ready file.

Routes (HTML for people, `/api/…` JSON for programs and tests):

| route | what |
|---|---|
| `GET /` | services offered, recent visits |
| `GET /visits/new?service=C`, `POST /visits` | start a visit (form) |
| `GET /visits/{id}`, `POST /visits/{id}/consent` | results, missing, queued; the SMS code |
| `GET /situation`, `POST /queue/retry` | every registry: breaker, in flight, failures, queue |
| `GET /api/services` | composite services offered, with their inputs |
| `GET /api/visits`, `POST /api/visits` | recent visits; open one (JSON below) |
| `GET /api/visits/{id}`, `POST /api/visits/{id}/consent` | a visit; `{"code": "123456"}` |
| `GET /api/situation`, `POST /api/queue/retry` | the situation snapshot; retry the queue now |

`POST /api/visits` takes `{"service", "iin", "operator"?, "inputs"?: {…}, "consent":
{"method": "otp"|"in-person", "phone"?, "document_type"?, "document_number"?}}`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

from govbus.client import Bus
from govbus.errors import GovbusError, InvalidRequest, Origin
from govbus.serving import write_ready_file
from service_centre import pages
from service_centre.composites import Catalogue, CompositeService
from service_centre.config import CentreConfig
from service_centre.consents import ConsentDesk
from service_centre.engine import ConsentChoice, Retrier, VisitEngine
from service_centre.life_events import CATALOGUE
from service_centre.situation import Situation, build_situation, read_status
from service_centre.store import Visit, VisitStore
from service_centre.web import HttpServer, Request, Response, Router, status_of

__all__ = ["ServiceCentre", "serve", "visit_json"]

log = logging.getLogger("govbus.centre")


def visit_json(visit: Visit, composite: CompositeService | None) -> dict[str, Any]:
    titles = {s.name: s.title for s in composite.steps} if composite is not None else {}
    data: dict[str, Any] = {
        "id": visit.id,
        "service": visit.service,
        "iin": visit.iin,
        "operator": visit.operator,
        "status": visit.status,
        "stage": visit.stage,
        "note": visit.note,
        "created_ms": visit.created_ms,
        "updated_ms": visit.updated_ms,
        "inputs": visit.inputs,
        "steps": [
            {
                "name": s.name,
                "title": titles.get(s.name, s.name),
                "agency": s.agency,
                "state": s.state,
                "attempts": s.attempts,
                "next_attempt_ms": s.next_attempt_ms,
                "error_code": s.error_code,
                "error": s.error,
                "result": s.result,
            }
            for s in visit.steps
        ],
        "consents": [
            {
                "role": c.role,
                "consent_id": c.consent_id,
                "method": c.method,
                "expires_ms": c.expires_ms,
            }
            for c in visit.consents
        ],
        "missing": [s.name for s in visit.steps if s.state != "done"],
    }
    if composite is not None and composite.certificate is not None and visit.stage == "running":
        data["certificate"] = {
            "title": composite.certificate_title,
            "lines": [
                {"label": line.label, "value": line.value, "missing": line.missing}
                for line in composite.certificate(visit.results())
            ],
        }
    return data


def _consent_choice(data: Any) -> ConsentChoice:
    if data is None:
        return ConsentChoice()
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InvalidRequest("consent must be an object of strings", origin=Origin.CLIENT)
    known = {"method", "phone", "document_type", "document_number"}
    if set(data) - known:
        raise InvalidRequest(f"consent takes only {', '.join(sorted(known))}", origin=Origin.CLIENT)
    return ConsentChoice(
        method=data.get("method", "otp"),
        phone=data.get("phone", ""),
        document_type=data.get("document_type", "id-card") or "id-card",
        document_number=data.get("document_number", ""),
    )


class ServiceCentre:
    def __init__(self, config: CentreConfig, catalogue: Catalogue = CATALOGUE) -> None:
        self.config = config
        self.catalogue = catalogue
        self.store = VisitStore(config.state_dir / "centre.db")
        self.bus = Bus(config.security_server, config.client, initiator=config.operator)
        self.desk = ConsentDesk.connect(
            config.consent_operator_address,
            ca=config.ca_certificate,
            key=config.operator_key,
            cert=config.operator_certificate,
            grantee=config.client,
            passphrase_file=config.passphrase_file,
        )
        self.engine = VisitEngine(
            self.store,
            self.bus,
            self.desk,
            catalogue,
            config.services,
            max_backoff_s=config.max_backoff_s,
        )
        self.retrier = Retrier(self.engine, tick_s=config.tick_s)
        self.http = HttpServer(self._router(), self._error_page)
        self.port = 0

    async def start(self) -> int:
        host, _, port = self.config.web_listen.rpartition(":")
        self.port = await self.http.start(host, int(port))
        self.retrier.start()
        log.info("service centre on http://%s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        await self.http.stop()
        await self.retrier.stop()
        await self.bus.close()
        await self.desk.close()
        self.store.close()

    # --- routes ----------------------------------------------------------------------------------

    def _router(self) -> Router:
        router = Router()
        for method, path, handler in (
            ("GET", "/", self.home),
            ("GET", "/visits/new", self.new_visit),
            ("POST", "/visits", self.post_visit),
            ("GET", "/visits/{visit_id}", self.show_visit),
            ("POST", "/visits/{visit_id}/consent", self.post_code),
            ("GET", "/situation", self.show_situation),
            ("POST", "/queue/retry", self.post_retry),
            ("GET", "/api/services", self.api_services),
            ("GET", "/api/visits", self.api_visits),
            ("POST", "/api/visits", self.api_open),
            ("GET", "/api/visits/{visit_id}", self.api_visit),
            ("POST", "/api/visits/{visit_id}/consent", self.api_code),
            ("GET", "/api/situation", self.api_situation),
            ("POST", "/api/queue/retry", self.api_retry),
            ("GET", "/api/health", self.api_health),
        ):
            router.add(method, path, handler)
        return router

    def _error_page(self, request: Request, status: int, error: GovbusError) -> Response:
        return Response.html(pages.error_page(status, error), status)

    def _composite_of(self, visit: Visit) -> CompositeService | None:
        return self.catalogue.services.get(visit.service)

    async def situation(self) -> Situation:
        reply, error = None, None
        try:
            reply = await read_status(self.bus.channel)
        except GovbusError as exc:
            error = exc
        return build_situation(reply, error, self.config.services, self.store.queue_stats())

    # HTML

    async def home(self, request: Request) -> Response:
        offered = self.engine.offered()
        unavailable = [
            (c, c.missing_agencies(self.config.services))
            for c in self.catalogue
            if not c.available(self.config.services)
        ]
        titles = {c.code: c.title for c in self.catalogue}
        return Response.html(
            pages.home_page(
                offered, unavailable, self.store.recent(), titles, self.store.queue_stats().depth
            )
        )

    async def new_visit(self, request: Request) -> Response:
        composite = self.engine.composite(request.query.get("service", ""))
        return Response.html(pages.new_visit_page(composite, self.config.operator))

    async def post_visit(self, request: Request) -> Response:
        form = request.form()
        composite = self.engine.composite(form.get("service", ""))
        inputs = {spec.name: form.get(spec.name, "") for spec in composite.inputs}
        choice = ConsentChoice(
            method=form.get("consent_method", "otp"),
            phone=form.get("phone", "").strip(),
            document_number=form.get("document_number", "").strip(),
        )
        try:
            visit = await self.engine.open_visit(
                composite.code,
                form.get("iin", "").strip(),
                form.get("operator", "").strip() or self.config.operator,
                inputs,
                choice,
            )
        except GovbusError as exc:
            page = pages.new_visit_page(composite, self.config.operator, form, str(exc))
            return Response.html(page, status_of(exc))
        return Response.redirect(f"/visits/{visit.id}")

    async def show_visit(self, request: Request) -> Response:
        visit = self.store.visit(request.params["visit_id"])
        return Response.html(pages.visit_page(visit, self._composite_of(visit)))

    async def post_code(self, request: Request) -> Response:
        visit_id = request.params["visit_id"]
        try:
            await self.engine.confirm_consent(visit_id, request.form().get("code", ""))
        except GovbusError as exc:
            visit = self.store.visit(visit_id)
            page = pages.visit_page(visit, self._composite_of(visit), str(exc))
            return Response.html(page, status_of(exc))
        return Response.redirect(f"/visits/{visit_id}")

    async def show_situation(self, request: Request) -> Response:
        return Response.html(pages.situation_page(await self.situation()))

    async def post_retry(self, request: Request) -> Response:
        self.engine.retry_now()
        return Response.redirect("/situation")

    # JSON

    async def api_services(self, request: Request) -> Response:
        return Response.json(
            [
                {
                    "code": c.code,
                    "title": c.title,
                    "agencies": list(c.agencies),
                    "purpose": c.purpose,
                    "inputs": [
                        {
                            "name": f.name,
                            "label": f.label,
                            "kind": f.kind,
                            "required": f.required,
                            "choices": [v for v, _ in f.choices],
                            "default": f.default_value(),
                        }
                        for f in c.inputs
                    ],
                }
                for c in self.engine.offered()
            ]
        )

    async def api_visits(self, request: Request) -> Response:
        return Response.json([visit_json(v, self._composite_of(v)) for v in self.store.recent()])

    async def api_open(self, request: Request) -> Response:
        data = request.json()
        known = {"service", "iin", "operator", "inputs", "consent"}
        if set(data) - known:
            raise InvalidRequest(
                f"unknown field(s) {', '.join(sorted(set(data) - known))}", origin=Origin.CLIENT
            )
        inputs = data.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise InvalidRequest("inputs must be an object", origin=Origin.CLIENT)
        for name in ("service", "iin", "operator"):
            if name in data and not isinstance(data[name], str):
                raise InvalidRequest(f"{name} must be a string", origin=Origin.CLIENT)
        visit = await self.engine.open_visit(
            data.get("service", ""),
            data.get("iin", ""),
            data.get("operator") or self.config.operator,
            inputs,
            _consent_choice(data.get("consent")),
        )
        return Response.json(visit_json(visit, self._composite_of(visit)), 201)

    async def api_visit(self, request: Request) -> Response:
        visit = self.store.visit(request.params["visit_id"])
        return Response.json(visit_json(visit, self._composite_of(visit)))

    async def api_code(self, request: Request) -> Response:
        code = request.json().get("code", "")
        if not isinstance(code, str):
            raise InvalidRequest("code must be a string", origin=Origin.CLIENT)
        visit = await self.engine.confirm_consent(request.params["visit_id"], code)
        return Response.json(visit_json(visit, self._composite_of(visit)))

    async def api_situation(self, request: Request) -> Response:
        return Response.json((await self.situation()).as_json())

    async def api_retry(self, request: Request) -> Response:
        return Response.json({"made_due": self.engine.retry_now()})

    async def api_health(self, request: Request) -> Response:
        return Response.json({"ok": True, "queue_depth": self.store.queue_stats().depth})


async def serve(config_path: Path, ready_file: Path | None) -> None:
    """Run the application until SIGTERM or SIGINT."""
    config = CentreConfig.load(config_path)
    centre = ServiceCentre(config)
    port = await centre.start()
    host = config.web_listen.rpartition(":")[0]
    write_ready_file(ready_file, {"url": f"http://{host}:{port}", "port": port, "pid": os.getpid()})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await centre.stop()
