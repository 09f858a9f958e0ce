"""Суды и исполнительное производство — court cases and the debtors' register, as an adapter."""

from pathlib import Path

from adapters.courts.data import contract_samples, populate
from adapters.courts.servicer import EnforcementRegisterServicer
from adapters.courts.store import EnforcementStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.courts.v1 import courts_pb2, courts_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="courts",
    pb2=courts_pb2,
    add_servicer=courts_pb2_grpc.add_EnforcementRegisterServicer_to_server,
    open_store=EnforcementStore.open,
    make_servicer=EnforcementRegisterServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
