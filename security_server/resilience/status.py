"""Immutable status rows of the resilience core, and how `govbus ss status` shows them.

`ServiceStatus` is one provider service as the consumer security server sees
it: breaker, bulkhead, retries and the health of each provider server. The
same rows feed the Prometheus collector, so the table and the metrics can
never disagree. Rendering returns a `rich` table and never prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from security_server.resilience.breaker import BreakerSnapshot, BreakerState
from security_server.resilience.bulkhead import BulkheadSnapshot
from security_server.resilience.endpoints import EndpointHealth, EndpointStatus

__all__ = ["ServiceStatus", "render_shedding", "render_status"]


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service_id: str
    breaker: BreakerSnapshot
    bulkhead: BulkheadSnapshot
    endpoints: tuple[EndpointStatus, ...]
    retry_tokens: float
    retry_max_tokens: float
    retries: int
    retries_throttled: int
    failovers: int


_STATE_STYLE = {
    BreakerState.CLOSED: "green",
    BreakerState.HALF_OPEN: "yellow",
    BreakerState.OPEN: "bold red",
}
_HEALTH_STYLE = {
    EndpointHealth.HEALTHY: "green",
    EndpointHealth.EJECTED: "red",
    EndpointHealth.UNHEALTHY: "red",
}


def _servers(endpoints: Sequence[EndpointStatus]) -> Text:
    text = Text()
    for i, ep in enumerate(endpoints):
        if i:
            text.append("\n")
        text.append(f"{ep.server_id} ({ep.address}) ")
        label = ep.health.value
        if ep.health is EndpointHealth.EJECTED:
            label += f" {ep.ejected_remaining:.0f} s, x{ep.times_ejected}"
        text.append(label, style=_HEALTH_STYLE[ep.health])
        if ep.in_flight:
            text.append(f" {ep.in_flight} in flight")
    if not endpoints:
        text.append("none published", style="red")
    return text


def _breaker(b: BreakerSnapshot) -> Text:
    text = Text(b.state.value.replace("_", "-"), style=_STATE_STYLE[b.state])
    if b.state is BreakerState.OPEN:
        text.append(f" {b.open_remaining:.1f} s")
    elif b.state is BreakerState.HALF_OPEN:
        text.append(f" {b.probes_in_flight} probing")
    return text


def render_status(rows: Sequence[ServiceStatus], *, title: str | None = None) -> Table:
    """The consumer-side table of `govbus ss status`."""
    table = Table(title=title or "Provider services", show_lines=True)
    table.add_column("Service", overflow="fold")
    table.add_column("Provider servers", overflow="fold")
    table.add_column("Breaker")
    table.add_column("Failure rate", justify="right")
    table.add_column("Slow-call rate", justify="right")
    table.add_column("In flight", justify="right")
    table.add_column("Queued", justify="right")
    table.add_column("Shed", justify="right")
    table.add_column("Refused open", justify="right")
    table.add_column("Retries (tokens)", justify="right")
    for row in rows:
        b, k = row.breaker, row.bulkhead
        table.add_row(
            row.service_id,
            _servers(row.endpoints),
            _breaker(b),
            f"{b.failure_rate:.0%} of {b.calls}"
            if b.state is BreakerState.CLOSED
            else (f"{b.failure_rate:.0%}"),
            f"{b.slow_call_rate:.0%}",
            f"{k.in_flight}/{k.max_in_flight}",
            f"{k.queued}/{k.max_queue}",
            str(k.shed),
            str(b.rejected),
            f"{row.retries} ({row.retry_tokens:.1f}/{row.retry_max_tokens:.0f})",
        )
    return table


def render_shedding(rows: Sequence[BulkheadSnapshot], *, title: str | None = None) -> Table:
    """The provider-side table: load shedding per published service."""
    table = Table(title=title or "Load shedding (provider side)")
    table.add_column("Service", overflow="fold")
    table.add_column("In flight", justify="right")
    table.add_column("Queued", justify="right")
    table.add_column("Admitted", justify="right")
    table.add_column("Shed", justify="right")
    for row in rows:
        table.add_row(
            row.name,
            f"{row.in_flight}/{row.max_in_flight}",
            f"{row.queued}/{row.max_queue}",
            str(row.admitted),
            Text(str(row.shed), style="red" if row.shed else ""),
        )
    return table
