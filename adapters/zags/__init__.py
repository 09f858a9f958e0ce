"""ЗАГС — the civil registry (births, marriages, deaths), as a govbus adapter."""

from pathlib import Path

from adapters.sdk.agency import AgencyAdapter
from adapters.zags.data import contract_samples, populate
from adapters.zags.servicer import CivilRegistryServicer
from adapters.zags.store import CivilStore
from govbus.pb.agencies.zags.v1 import zags_pb2, zags_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="zags",
    pb2=zags_pb2,
    add_servicer=zags_pb2_grpc.add_CivilRegistryServicer_to_server,
    open_store=CivilStore.open,
    make_servicer=CivilRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
