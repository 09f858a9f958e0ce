"""Нотариат — powers of attorney and inheritance cases, as a govbus adapter."""

from pathlib import Path

from adapters.notary.data import contract_samples, populate
from adapters.notary.servicer import NotaryRegistryServicer
from adapters.notary.store import NotaryStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.notary.v1 import notary_pb2, notary_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="notary",
    pb2=notary_pb2,
    add_servicer=notary_pb2_grpc.add_NotaryRegistryServicer_to_server,
    open_store=NotaryStore.open,
    make_servicer=NotaryRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
