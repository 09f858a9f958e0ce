"""The admin API (`govbus.v1.RegistryAdmin`) on the registry's mutual-TLS port.

A thin layer: identify the caller from its certificate (registry.auth), run the
operation (registry.operations) in a worker thread, wake the publisher, and
translate values to messages. Every failure leaves as a govbus error
(registry.rpc).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import grpc

from govbus.crypto.pki import certificate_pem
from govbus.errors import InvalidRequest
from govbus.pb.govbus.v1 import registry_pb2, registry_pb2_grpc
from registry.auth import identify
from registry.operations import Change, RegistryOperations, ServiceSettings
from registry.publisher import ConfPublisher
from registry.rpc import govbus_rpc
from registry.rules import Caller

__all__ = ["AdminServicer"]


def _change(change: Change) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(revision=change.revision, summary=change.summary)


class AdminServicer(registry_pb2_grpc.RegistryAdminServicer):
    def __init__(
        self, operations: RegistryOperations, publisher: ConfPublisher, *, max_wait: float = 60.0
    ) -> None:
        self.ops = operations
        self.publisher = publisher
        self.max_wait = max_wait

    async def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        auth = context.auth_context()
        return await asyncio.to_thread(lambda: identify(auth, self.ops.anchor()))

    async def _do(
        self, context: grpc.aio.ServicerContext, operation: Callable[..., Any], *args: Any
    ) -> Any:
        caller = await self._caller(context)
        result = await asyncio.to_thread(operation, caller, *args)
        self.publisher.notify_change()
        return result

    @govbus_rpc
    async def WhoAmI(
        self, request: registry_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.WhoAmIResponse:
        caller = await self._caller(context)
        return registry_pb2.WhoAmIResponse(
            name=caller.name,
            role=caller.role.value,
            member=str(caller.member) if caller.member else "",
        )

    @govbus_rpc
    async def AddMember(
        self, request: registry_pb2.AddMemberRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(await self._do(context, self.ops.add_member, request.id, request.name))

    @govbus_rpc
    async def AddSubsystem(
        self, request: registry_pb2.AddSubsystemRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(await self._do(context, self.ops.add_subsystem, request.id, request.name))

    @govbus_rpc
    async def RegisterServer(
        self, request: registry_pb2.RegisterServerRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegisterServerResponse:
        caller = await self._caller(context)
        done = await asyncio.to_thread(
            functools.partial(
                self.ops.register_server,
                caller,
                request.id,
                request.address,
                request.tls_csr,
                request.signing_csr,
                replace=request.replace,
            )
        )
        self.publisher.notify_change()
        return registry_pb2.RegisterServerResponse(
            server=done.server,
            tls_certificate=certificate_pem(done.tls_certificate),
            signing_certificate=certificate_pem(done.signing_certificate),
            ca_certificate=certificate_pem(self.ops.ca.certificate),
            revision=done.revision,
        )

    @govbus_rpc
    async def SetServerAddress(
        self, request: registry_pb2.SetServerAddressRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(context, self.ops.set_server_address, request.id, request.address)
        )

    @govbus_rpc
    async def PublishService(
        self, request: registry_pb2.PublishServiceRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.PublishServiceResponse:
        spec = ServiceSettings(
            service_id=request.id,
            grpc_service=request.grpc_service,
            descriptor_set=request.descriptor_set,
            servers=list(request.servers),
            personal_data=request.personal_data,
            consent_policy=request.consent_policy,
            stale_feed_mode=request.stale_feed_mode,
            default_deadline_ms=request.default_deadline_ms,
            max_message_bytes=request.max_message_bytes,
            idempotent_methods=list(request.idempotent_methods),
            fields={name: list(value.fields) for name, value in request.fields.items()},
            resilience=request.resilience if request.HasField("resilience") else None,
            description=request.description,
            replace=request.replace,
        )
        service, revision = await self._do(context, self.ops.publish_service, spec)
        return registry_pb2.PublishServiceResponse(service=service, revision=revision)

    @govbus_rpc
    async def GrantAccess(
        self, request: registry_pb2.AccessRightRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(context, self.ops.grant_access, request.service, request.client)
        )

    @govbus_rpc
    async def RevokeAccess(
        self, request: registry_pb2.AccessRightRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(context, self.ops.revoke_access, request.service, request.client)
        )

    @govbus_rpc
    async def AddGroup(
        self, request: registry_pb2.AddGroupRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(await self._do(context, self.ops.add_group, request.id))

    @govbus_rpc
    async def AddGroupMember(
        self, request: registry_pb2.GroupMemberRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(context, self.ops.add_group_member, request.group, request.subsystem)
        )

    @govbus_rpc
    async def RemoveGroupMember(
        self, request: registry_pb2.GroupMemberRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(context, self.ops.remove_group_member, request.group, request.subsystem)
        )

    @govbus_rpc
    async def AddLegalBasis(
        self, request: registry_pb2.AddLegalBasisRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.AddLegalBasisResponse:
        if not request.HasField("basis"):
            raise InvalidRequest("the legal basis is missing from the request")
        basis, revision = await self._do(context, self.ops.add_legal_basis, request.basis)
        return registry_pb2.AddLegalBasisResponse(basis=basis, revision=revision)

    @govbus_rpc
    async def RemoveLegalBasis(
        self, request: registry_pb2.RemoveLegalBasisRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(await self._do(context, self.ops.remove_legal_basis, request.id))

    @govbus_rpc
    async def RevokeCertificate(
        self, request: registry_pb2.RevokeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(context, self.ops.revoke_certificate, request.serial_hex, request.reason)
        )

    @govbus_rpc
    async def SetConsentService(
        self, request: registry_pb2.SetConsentServiceRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryChange:
        return _change(
            await self._do(
                context, self.ops.set_consent_service, request.address, request.certificate
            )
        )

    @govbus_rpc
    async def IssueAdminCertificate(
        self,
        request: registry_pb2.IssueAdminCertificateRequest,
        context: grpc.aio.ServicerContext,
    ) -> registry_pb2.IssueAdminCertificateResponse:
        cert, revision = await self._do(
            context, self.ops.issue_admin_certificate, request.name, request.csr
        )
        return registry_pb2.IssueAdminCertificateResponse(
            certificate=certificate_pem(cert),
            ca_certificate=certificate_pem(self.ops.ca.certificate),
            revision=revision,
        )

    @govbus_rpc
    async def AuditTrail(
        self, request: registry_pb2.RegistryAuditTrailRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RegistryAuditTrailResponse:
        caller = await self._caller(context)
        entries = await asyncio.to_thread(
            self.ops.audit_trail, caller, request.limit, request.before_seq
        )
        answer = registry_pb2.RegistryAuditTrailResponse()
        for entry in entries:
            item = answer.entries.add(
                seq=entry.seq,
                actor=entry.actor,
                action=entry.action,
                target=entry.target,
                member=entry.member,
                before=entry.before,
                after=entry.after,
                revision=entry.revision,
            )
            item.at.FromNanoseconds(int(entry.at * 1e9))
        return answer

    @govbus_rpc
    async def WaitPublished(
        self, request: registry_pb2.WaitPublishedRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.WaitPublishedResponse:
        await self._caller(context)
        remaining = context.time_remaining()
        timeout = self.max_wait if remaining is None else min(self.max_wait, remaining)
        publication = await self.publisher.wait_for(request.revision, max(0.0, timeout - 0.1))
        return registry_pb2.WaitPublishedResponse(
            version=publication.version, revision=publication.revision
        )
