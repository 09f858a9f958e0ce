"""ЕНПФ — individual pension accounts and contributions, as a govbus adapter."""

from pathlib import Path

from adapters.pension.data import contract_samples, populate
from adapters.pension.servicer import PensionFundServicer
from adapters.pension.store import PensionStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.pension.v1 import pension_pb2, pension_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="pension",
    pb2=pension_pb2,
    add_servicer=pension_pb2_grpc.add_PensionFundServicer_to_server,
    open_store=PensionStore.open,
    make_servicer=PensionFundServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
