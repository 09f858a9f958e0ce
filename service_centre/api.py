"""A client of the service centre's JSON API (`/api/…`), for the demo, tests and scripts.

Plain HTTP/1.1 with the standard library; an error answer is raised as the
vocabulary error it names, so callers see the same codes as the pages show.

    centre = CentreApi("http://127.0.0.1:8080")
    visit = centre.open_visit("personal-data", "900517400015", consent={"method": "otp",
                              "phone": "+77011234567"})
    visit = centre.confirm(visit["id"], code_from_sms)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from govbus.errors import (
    DeadlineExceeded,
    GovbusError,
    Internal,
    InvalidRequest,
    Origin,
    error_class,
)

__all__ = ["CentreApi"]


class CentreApi:
    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest(f"the service centre URL must be http(s)://…, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(status, decoded JSON) — for callers that look at the status themselves."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        # S310: the URL was checked to be http(s) in __init__ (no file: or custom schemes).
        request = urllib.request.Request(  # noqa: S310
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {
                    "error": {"code": "INTERNAL", "message": raw.decode(errors="replace")}
                }

    def _json(self, method: str, path: str, body: object = None) -> Any:
        status, data = self.request(method, path, body)
        if status >= 400:
            raise _error(data)
        return data

    def services(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/services"))

    def open_visit(
        self,
        service: str,
        iin: str,
        *,
        inputs: Mapping[str, str] | None = None,
        consent: Mapping[str, str] | None = None,
        operator: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"service": service, "iin": iin, "inputs": dict(inputs or {})}
        if consent is not None:
            body["consent"] = dict(consent)
        if operator is not None:
            body["operator"] = operator
        return dict(self._json("POST", "/api/visits", body))

    def confirm(self, visit_id: str, code: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/api/visits/{visit_id}/consent", {"code": code}))

    def visit(self, visit_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/visits/{visit_id}"))

    def visits(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/visits"))

    def situation(self) -> dict[str, Any]:
        return dict(self._json("GET", "/api/situation"))

    def retry_now(self) -> int:
        return int(self._json("POST", "/api/queue/retry")["made_due"])

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll an observable condition (never a guessed sleep), or DEADLINE_EXCEEDED."""
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise DeadlineExceeded(f"timed out waiting for {what}", origin=Origin.CLIENT)
            time.sleep(0.1)


def _error(data: Any) -> GovbusError:
    found = data.get("error") if isinstance(data, dict) else None
    if not isinstance(found, dict):
        return Internal(f"the service centre answered {data!r}", origin=Origin.CLIENT)
    cls = error_class(str(found.get("code", "INTERNAL"))) or Internal
    try:
        origin = Origin(found.get("origin", "CLIENT"))
    except ValueError:
        origin = Origin.CLIENT
    return cls(str(found.get("message", "")), origin=origin)
