"""A small HTTP/1.1 server on asyncio streams, for the operator's pages and JSON API.

Just enough HTTP for server-rendered pages and a JSON API on loopback: one request
per connection (`Connection: close`), `Content-Length` bodies only, hard limits on
the request line, headers and body, a read timeout. It runs in the application's
event loop, so handlers await the bus directly. Anything malformed gets a 4xx and
the connection is closed; a handler's `GovbusError` becomes a status by its origin
and code; any other exception a 500 with an error id (logged with its traceback).

This module knows nothing about visits; it must never bind anything but the
address it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from govbus.errors import GovbusError, InvalidRequest, NotFound, Origin

__all__ = ["HttpServer", "Request", "Response", "Router", "status_of"]

log = logging.getLogger("govbus.centre.web")

MAX_LINE = 8 * 1024
MAX_HEADERS = 64
MAX_BODY = 256 * 1024
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    @property
    def wants_json(self) -> bool:
        return self.path.startswith("/api/")

    def form(self) -> dict[str, str]:
        kind = self.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            raise InvalidRequest("send the form as application/x-www-form-urlencoded")
        try:
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise InvalidRequest("the form is not UTF-8") from None

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("the body is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"))

    @classmethod
    def json(cls, data: object, status: int = 200) -> Response:
        body = json.dumps(data, ensure_ascii=False, indent=1, default=str).encode("utf-8")
        return cls(status, body, "application/json; charset=utf-8")

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(HTTPStatus.SEE_OTHER, b"", headers=(("Location", location),))


Handler = Callable[[Request], Awaitable[Response]]
ErrorPage = Callable[[Request, int, GovbusError], Response]


def status_of(error: GovbusError) -> int:
    """The HTTP status for a vocabulary error: by code first, then by who is at fault."""
    by_code = {
        "NOT_FOUND": 404,
        "UNKNOWN_SERVICE": 404,
        "OTP_INVALID": 403,
        "OTP_LOCKED": 429,
        "RATE_LIMITED": 429,
        "FAILED_PRECONDITION": 409,
        "ALREADY_EXISTS": 409,
    }
    if error.code in by_code:
        return by_code[error.code]
    if error.origin is Origin.CLIENT:
        return 400
    return 503 if error.retryable else 502


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[A-Za-z0-9_.-]{1,100})", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for verb, regex, handler in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            if verb == method:
                return handler, found.groupdict()
            allowed = True
        if allowed:
            raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise NotFound(f"no page {path}", origin=Origin.CLIENT)


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpServer:
    def __init__(self, router: Router, error_page: ErrorPage | None = None) -> None:
        self.router = router
        self.error_page = error_page
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=MAX_LINE, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_S)
            except _HttpError as exc:
                await _write(writer, _plain(exc.status, exc.message))
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            response = await self._dispatch(request)
            await _write(writer, response, head_only=request.method == "HEAD")
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    async def _dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        try:
            handler, params = self.router.resolve(method, request.path)
            return await handler(
                Request(
                    request.method,
                    request.path,
                    request.query,
                    request.headers,
                    request.body,
                    params,
                )
            )
        except _HttpError as exc:
            return _plain(exc.status, exc.message)
        except GovbusError as exc:
            return self._error(request, status_of(exc), exc)
        except Exception:  # a bug in a page must answer 500, never drop the server
            error_id = uuid.uuid4().hex[:8]
            log.exception("%s %s failed (error id %s)", request.method, request.path, error_id)
            from govbus.errors import Internal

            return self._error(request, 500, Internal(f"internal error (error id {error_id})"))

    def _error(self, request: Request, status: int, error: GovbusError) -> Response:
        if request.wants_json or self.error_page is None:
            return Response.json(
                {
                    "error": {
                        "code": error.code,
                        "origin": error.origin.value,
                        "message": error.message,
                    }
                },
                status,
            )
        return self.error_page(request, status, error)


def _plain(status: int, message: str) -> Response:
    return Response(status, message.encode("utf-8"), "text/plain; charset=utf-8")


async def _read_request(reader: asyncio.StreamReader) -> Request:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise _HttpError(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long") from None
    try:
        method, target, version = line.decode("ascii").rstrip("\r\n").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed request line") from None
    if not version.startswith("HTTP/1.") or not method.isalpha() or not target.startswith("/"):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    headers = await _read_headers(reader)
    if "transfer-encoding" in headers:
        raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length body, not chunked")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = unquote(parts.path, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed URL") from None
    return Request(method.upper(), path, query, headers, body)


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        try:
            raw = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise _HttpError(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line too long"
            ) from None
        if raw == b"\r\n":
            return headers
        if len(headers) >= MAX_HEADERS:
            raise _HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers")
        name, sep, value = raw.decode("latin-1").partition(":")  # latin-1 decodes any byte
        if not sep or not name.strip() or name != name.strip():
            raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed header")
        headers[name.lower()] = value.strip()


async def _write(
    writer: asyncio.StreamWriter, response: Response, *, head_only: bool = False
) -> None:
    reason = (
        HTTPStatus(response.status).phrase
        if response.status in HTTPStatus._value2member_map_
        else ""
    )
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(response.body)
    await writer.drain()
