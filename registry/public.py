"""The registry's public port: the signed global configuration and discovery.

Both read only the configuration currently published (an immutable value), so
what a consumer developer discovers is exactly what the security servers
enforce. Nothing here needs a client certificate: the configuration is signed,
and discovery shows nothing that is not in it, plus the descriptor sets the
providers published for their consumers. It never writes anything.
"""

from __future__ import annotations

import grpc

from govbus.errors import InvalidIdentifier, UnknownService
from govbus.ids import MemberId, ServiceId, SubsystemId
from govbus.pb.govbus.v1 import globalconf_pb2, globalconf_pb2_grpc, registry_pb2, registry_pb2_grpc
from registry.publisher import ConfPublisher
from registry.rpc import govbus_rpc

__all__ = ["DiscoveryServicer", "GlobalConfServicer"]


class GlobalConfServicer(globalconf_pb2_grpc.GlobalConfServiceServicer):
    def __init__(self, publisher: ConfPublisher) -> None:
        self.publisher = publisher

    @govbus_rpc
    async def Get(
        self, request: globalconf_pb2.GetGlobalConfRequest, context: grpc.aio.ServicerContext
    ) -> globalconf_pb2.SignedGlobalConf:
        return self.publisher.current.signed


def _provider_prefix(provider: str) -> str:
    """`KZ/GOV/<BIN>` or `KZ/GOV/<BIN>/<subsystem>` → the id prefix of its services."""
    try:
        return f"{MemberId.parse(provider)}/"
    except InvalidIdentifier:
        pass
    try:
        return f"{SubsystemId.parse(provider)}/"
    except InvalidIdentifier:
        raise InvalidIdentifier(
            f"provider {provider!r} must be a member id KZ/GOV/<BIN> or a subsystem id "
            "KZ/GOV/<BIN>/<code>"
        ) from None


class DiscoveryServicer(registry_pb2_grpc.DiscoveryServicer):
    def __init__(self, publisher: ConfPublisher) -> None:
        self.publisher = publisher

    @govbus_rpc
    async def ListMembers(
        self, request: registry_pb2.DiscoverMembersRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverMembersResponse:
        conf = self.publisher.current.conf
        return registry_pb2.DiscoverMembersResponse(members=conf.members, conf_version=conf.version)

    @govbus_rpc
    async def ListSubsystems(
        self, request: registry_pb2.DiscoverSubsystemsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverSubsystemsResponse:
        conf = self.publisher.current.conf
        prefix = f"{MemberId.parse(request.member)}/" if request.member else ""
        return registry_pb2.DiscoverSubsystemsResponse(
            subsystems=[s for s in conf.subsystems if s.id.startswith(prefix)],
            conf_version=conf.version,
        )

    @govbus_rpc
    async def ListServices(
        self, request: registry_pb2.DiscoverServicesRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverServicesResponse:
        conf = self.publisher.current.conf
        prefix = _provider_prefix(request.provider) if request.provider else ""
        return registry_pb2.DiscoverServicesResponse(
            services=[s for s in conf.services if s.id.startswith(prefix)],
            conf_version=conf.version,
        )

    @govbus_rpc
    async def GetService(
        self, request: registry_pb2.DiscoverServiceRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverServiceResponse:
        view = self.publisher.current.view
        service = view.service(str(ServiceId.parse(request.service)))
        return registry_pb2.DiscoverServiceResponse(service=service, conf_version=view.version)

    @govbus_rpc
    async def ListAllowed(
        self, request: registry_pb2.DiscoverAllowedRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverAllowedResponse:
        view = self.publisher.current.view
        client = str(SubsystemId.parse(request.client))
        groups = {g.id for g in view.conf.groups if client in g.members}
        via: dict[str, list[str]] = {}
        for right in view.conf.access_rights:
            if right.client == client or right.client in groups:
                via.setdefault(right.service, []).append(right.client)
        answer = registry_pb2.DiscoverAllowedResponse(conf_version=view.version)
        for service_id in sorted(via):
            service = view.services.get(service_id)
            if service is not None:
                answer.services.add(service=service, via=sorted(via[service_id]))
        return answer

    @govbus_rpc
    async def GetDescriptor(
        self, request: registry_pb2.DiscoverDescriptorRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DiscoverDescriptorResponse:
        publication = self.publisher.current
        service_id = str(ServiceId.parse(request.service))
        service = publication.view.service(service_id)
        data = publication.descriptors.get(service_id)
        if data is None:
            raise UnknownService(f"no descriptor is published for {service_id}")
        return registry_pb2.DiscoverDescriptorResponse(
            grpc_service=service.grpc_service,
            descriptor_set=data,
            descriptor_sha256=service.descriptor_sha256,
        )
