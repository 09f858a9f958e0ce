"""ГБД ЮЛ — the state database of legal entities (the BIN registry), as a govbus adapter."""

from pathlib import Path

from adapters.gbdul.data import contract_samples, populate
from adapters.gbdul.servicer import LegalEntityRegistryServicer
from adapters.gbdul.store import EntityStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2, gbdul_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="gbdul",
    pb2=gbdul_pb2,
    add_servicer=gbdul_pb2_grpc.add_LegalEntityRegistryServicer_to_server,
    open_store=EntityStore.open,
    make_servicer=LegalEntityRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
