"""Воинский учёт — military registration, as a govbus adapter."""

from pathlib import Path

from adapters.military.data import contract_samples, populate
from adapters.military.servicer import MilitaryRegistrationServicer
from adapters.military.store import MilitaryStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.military.v1 import military_pb2, military_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="military",
    pb2=military_pb2,
    add_servicer=military_pb2_grpc.add_MilitaryRegistrationServicer_to_server,
    open_store=MilitaryStore.open,
    make_servicer=MilitaryRegistrationServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
