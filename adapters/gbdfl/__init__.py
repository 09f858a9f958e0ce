"""ГБД ФЛ — the IIN registry of individuals, as a govbus adapter."""

from pathlib import Path

from adapters.gbdfl.data import contract_samples, populate
from adapters.gbdfl.servicer import PersonRegistryServicer
from adapters.gbdfl.store import PersonStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="gbdfl",
    pb2=gbdfl_pb2,
    add_servicer=gbdfl_pb2_grpc.add_PersonRegistryServicer_to_server,
    open_store=PersonStore.open,
    make_servicer=PersonRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
