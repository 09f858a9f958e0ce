"""Administrative fines (police, Code of Administrative Offences) as a govbus adapter."""

from pathlib import Path

from adapters.fines.data import contract_samples, populate
from adapters.fines.servicer import AdministrativeFinesServicer
from adapters.fines.store import FineStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.fines.v1 import fines_pb2, fines_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="fines",
    pb2=fines_pb2,
    add_servicer=fines_pb2_grpc.add_AdministrativeFinesServicer_to_server,
    open_store=FineStore.open,
    make_servicer=AdministrativeFinesServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
