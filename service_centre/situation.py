"""The situation centre: every registry as the ЦОН sees it, in one snapshot.

Per agency: the ЦОН security server's view of its service (breaker state, failure
and slow-call rates, calls in flight and waiting in the bulkhead, calls shed,
provider servers and their health — `SecurityServerAdmin.Status`, the data of
`govbus ss status`) and the service centre's own view (steps queued for it, the
last failure it gave). The snapshot is an immutable value the pages render.

This module only reads: it never changes a breaker or the queue.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.govbus.v1 import security_server_pb2, security_server_pb2_grpc
from service_centre.store import QueueStats

__all__ = ["AgencyRow", "Situation", "build_situation", "read_status"]


@dataclass(frozen=True)
class AgencyRow:
    agency: str
    service: str
    breaker: str  # CLOSED / OPEN / HALF_OPEN, or "—" before the first call
    failure_rate: float
    slow_call_rate: float
    in_flight: int
    waiting: int  # in the bulkhead's queue
    shed: int
    calls: int
    servers: str
    queued_steps: int  # steps the service centre queued because this registry failed them
    waiting_steps: int  # steps for this registry that wait on another registry's
    last_failure: str

    @property
    def health(self) -> str:
        """ok | degraded | down, for colouring a row."""
        if self.breaker == "OPEN":
            return "down"
        if self.breaker == "HALF_OPEN" or self.failure_rate > 0 or self.queued_steps:
            return "degraded"
        return "ok"


@dataclass(frozen=True)
class Situation:
    taken_ms: int
    server_id: str
    conf_version: int
    conf_expires_in_s: float
    conf_error: str
    exchanges: int
    refusals: int
    log_size: int
    rows: tuple[AgencyRow, ...]
    queue_depth: int
    queue_waiting: int
    partial_visits: int
    oldest_queued_s: float
    error: str  # the security server could not be asked

    def as_json(self) -> dict[str, object]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["rows"] = [
            {**{n: getattr(r, n) for n in r.__dataclass_fields__}, "health": r.health}
            for r in self.rows
        ]
        return data


async def read_status(
    channel: grpc.aio.Channel, deadline_s: float = 2.0
) -> security_server_pb2.StatusReply:
    stub = security_server_pb2_grpc.SecurityServerAdminStub(channel)
    try:
        reply: security_server_pb2.StatusReply = await stub.Status(
            security_server_pb2.StatusRequest(), timeout=deadline_s
        )
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    return reply


def build_situation(
    reply: security_server_pb2.StatusReply | None,
    error: GovbusError | None,
    services: Mapping[str, str],
    queue: QueueStats,
    now_ms: int | None = None,
) -> Situation:
    """Join the security server's view and the queue, one row per published agency."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    by_service = {row.service: row for row in reply.services} if reply is not None else {}
    rows = []
    for agency, service in sorted(services.items()):
        status = by_service.get(service)
        failure = queue.failures.get(agency)
        rows.append(
            AgencyRow(
                agency=agency,
                service=service,
                breaker=status.breaker.upper() if status is not None else "—",
                failure_rate=status.failure_rate if status is not None else 0.0,
                slow_call_rate=status.slow_call_rate if status is not None else 0.0,
                in_flight=status.in_flight if status is not None else 0,
                waiting=status.queued if status is not None else 0,
                shed=status.shed if status is not None else 0,
                calls=status.calls if status is not None else 0,
                servers=status.servers if status is not None else "",
                queued_steps=queue.by_agency.get(agency, 0),
                waiting_steps=queue.waiting_by_agency.get(agency, 0),
                last_failure=f"{failure[0]}: {failure[1]}" if failure else "",
            )
        )
    return Situation(
        taken_ms=now,
        server_id=reply.server_id if reply is not None else "",
        conf_version=reply.conf_version if reply is not None else 0,
        conf_expires_in_s=(reply.conf_expires_at_ms - now) / 1000 if reply is not None else 0.0,
        conf_error=reply.conf_error if reply is not None else "",
        exchanges=reply.exchanges if reply is not None else 0,
        refusals=reply.refusals if reply is not None else 0,
        log_size=reply.log_size if reply is not None else 0,
        rows=tuple(rows),
        queue_depth=queue.depth,
        queue_waiting=queue.waiting,
        partial_visits=queue.partial_visits,
        oldest_queued_s=(now - queue.oldest_ms) / 1000 if queue.oldest_ms else 0.0,
        error=str(error) if error is not None else "",
    )
