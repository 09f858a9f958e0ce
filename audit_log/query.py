"""`govbus.v1.AuditQueryService`: a security server answers "who accessed this person's data"
from its own log (each log answers for itself, as Estonia's data tracker does).

The host decides who may ask: it passes an `authorize` callable that inspects the
call (e.g. the mTLS peer certificate of the consent service) and raises a govbus
error to refuse. Without one, every call is refused. Only records are returned,
never keys; the subject is named by pseudonym, never by IIN.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from audit_log.log import AuditLog
from govbus.errors import AccessDenied, GovbusError, InvalidRequest
from govbus.pb.govbus.v1 import auditlog_pb2, auditlog_pb2_grpc

__all__ = ["MAX_LIMIT", "AuditQueryServicer", "add_audit_query_servicer"]

MAX_LIMIT = 1000
Authorize = Callable[[grpc.aio.ServicerContext], Awaitable[None]]


async def _refuse(context: grpc.aio.ServicerContext) -> None:
    del context
    raise AccessDenied("this security server answers audit queries only to authorised callers")


class AuditQueryServicer(auditlog_pb2_grpc.AuditQueryServiceServicer):
    def __init__(self, log: AuditLog, authorize: Authorize | None = None) -> None:
        self._log = log
        self._authorize = authorize or _refuse

    async def FindBySubject(
        self, request: auditlog_pb2.FindBySubjectRequest, context: grpc.aio.ServicerContext
    ) -> auditlog_pb2.FindBySubjectResponse:
        try:
            await self._authorize(context)
            if request.limit > MAX_LIMIT:
                raise InvalidRequest(f"limit must be at most {MAX_LIMIT}")
            limit = request.limit or MAX_LIMIT
            found = await self._log.find_by_subject(
                request.subject_pseudonym, request.from_ms, request.to_ms, limit=limit + 1
            )
        except GovbusError as exc:
            await exc.abort(context)
            raise  # abort raises; this keeps the type checker informed
        return auditlog_pb2.FindBySubjectResponse(
            records=[
                auditlog_pb2.LoggedRecord(index=r.index, record=r.record) for r in found[:limit]
            ],
            truncated=len(found) > limit,
        )


def add_audit_query_servicer(
    server: grpc.aio.Server, log: AuditLog, authorize: Authorize | None = None
) -> AuditQueryServicer:
    servicer = AuditQueryServicer(log, authorize)
    auditlog_pb2_grpc.add_AuditQueryServiceServicer_to_server(servicer, server)
    return servicer
