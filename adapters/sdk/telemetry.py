"""Logs, metrics and traces of an adapter: JSON log lines, Prometheus, OpenTelemetry.

- Logs: one JSON object per line on stderr (`configure_logging`); the SDK writes one
  line per call with request id, method, code and duration. Identifiers that look
  like an IIN or BIN (12 digits) are masked in every message (`mask_identifiers`).
- Metrics: a `CollectorRegistry` per `Telemetry` (several adapters can live in one
  process, e.g. in tests) with calls by method and code and a latency histogram;
  `start_metrics_server` serves it on /metrics.
- Traces: an OpenTelemetry SDK tracer provider, one SERVER span per call continuing
  the caller's W3C `traceparent`. No exporter by default: the spans are then
  non-recording (sampler off) — they carry the trace and span ids and cost a few
  microseconds; `console` prints recorded spans, or pass any `SpanExporter` (tests pass
  an in-memory one).

This module must never write a raw IIN anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = [
    "LATENCY_BUCKETS",
    "JsonFormatter",
    "Telemetry",
    "configure_logging",
    "mask_identifiers",
]

#: Seconds; an adapter answers in well under a millisecond to a few hundred.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_TWELVE_DIGITS = re.compile(r"(?<!\d)(\d{6})(\d{2})(\d{3})(\d)(?!\d)")


def mask_identifiers(text: str) -> str:
    """Mask every 12-digit run (IIN or BIN) the way `Iin.masked()` does."""
    return _TWELVE_DIGITS.sub(lambda m: f"******{m.group(2)}***{m.group(4)}", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_identifiers(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["traceback"] = mask_identifiers(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record of the process as JSON lines to `stream` (stderr)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        from govbus.errors import ConfigInvalid

        raise ConfigInvalid(f"unknown log level {level!r}: use debug, info, warning or error")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


@dataclass
class Telemetry:
    """Metrics registry, tracer and logger shared by the calls of one adapter server."""

    name: str = "adapter"
    exporter: SpanExporter | str | None = None
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("govbus.adapter"))

    def __post_init__(self) -> None:
        self._metrics_servers: list[Any] = []
        self.calls = Counter(
            "govbus_adapter_calls",
            "Calls handled by the adapter, by method and outcome code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "govbus_adapter_call_seconds",
            "Time from the call's arrival to its last response message.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        exporter: SpanExporter | None
        if self.exporter == "console":
            exporter = ConsoleSpanExporter()
        elif isinstance(self.exporter, str):
            from govbus.errors import ConfigInvalid

            if self.exporter not in ("", "none"):
                raise ConfigInvalid(f"unknown trace exporter {self.exporter!r}: none or console")
            exporter = None
        else:
            exporter = self.exporter
        # With nowhere to send spans, record none: each call still gets a span that
        # continues the caller's trace (ids for logs and child spans), non-recording.
        self.tracer_provider = TracerProvider(
            resource=Resource.create({"service.name": f"govbus-adapter-{self.name}"}),
            sampler=ParentBased(ALWAYS_ON) if exporter is not None else ALWAYS_OFF,
        )
        self.recording = exporter is not None
        if exporter is not None:
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer: Tracer = self.tracer_provider.get_tracer("govbus.adapter")

    def start_metrics_server(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serve /metrics on a background thread; returns the bound port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._metrics_servers.append(server)
        return int(server.server_port)

    def stop_metrics_server(self) -> None:
        while self._metrics_servers:
            server = self._metrics_servers.pop()
            server.shutdown()
            server.server_close()

    def shutdown(self) -> None:
        self.stop_metrics_server()
        self.tracer_provider.shutdown()
