"""OpenTelemetry tracing for govbus servers, W3C trace context across every hop.

Tracing is off unless configured: a span costs ~25 µs here, and the exchange
path is hot. When on, spans go to a JSON-lines file (one span per line, written
by a batch processor off the hot path) that an operator can ship or inspect.

`Tracing.span(...)` is a no-op context manager when tracing is off.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["JsonLinesSpanExporter", "Tracing", "traceparent_of"]

_PROPAGATOR = TraceContextTextMapPropagator()


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "trace_id": f"{context.trace_id:032x}" if context else "",
                        "span_id": f"{context.span_id:016x}" if context else "",
                        "parent_id": f"{parent.span_id:016x}" if parent else "",
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": dict(span.attributes or {}),
                        "service": span.resource.attributes.get("service.name", ""),
                    },
                    default=str,
                )
            )
        with self._lock:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def traceparent_of(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class Tracing:
    """A tracer for one server, or nothing when tracing is off."""

    def __init__(self, service_name: str, traces_file: Path | None) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if traces_file is not None:
            self._provider = TracerProvider(
                resource=Resource.create({"service.name": service_name})
            )
            self._provider.add_span_processor(
                BatchSpanProcessor(JsonLinesSpanExporter(traces_file))
            )
            self._tracer = self._provider.get_tracer("govbus")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(
        self, name: str, *, traceparent: str = "", attributes: Mapping[str, Any] | None = None
    ) -> Iterator[trace.Span | None]:
        """A span continuing `traceparent` (or the current span), or None when off."""
        if self._tracer is None:
            yield None
            return
        context = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        with self._tracer.start_as_current_span(
            name, context=context, attributes=attributes
        ) as span:
            yield span

    def start(
        self, name: str, *, traceparent: str = "", attributes: Mapping[str, Any] | None = None
    ) -> trace.Span | None:
        """Start a span the caller ends with `finish` (for spans that outlive a block)."""
        if self._tracer is None:
            return None
        context = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        return self._tracer.start_span(name, context=context, attributes=attributes)

    @staticmethod
    def finish(span: trace.Span | None, error_code: str = "") -> None:
        if span is None:
            return
        if error_code:
            span.set_attribute("govbus.error_code", error_code)
            span.set_status(trace.Status(trace.StatusCode.ERROR, error_code))
        span.end()

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
