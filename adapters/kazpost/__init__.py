"""Казпочта — delivery contacts and deliveries of documents, as a govbus adapter."""

from pathlib import Path

from adapters.kazpost.data import contract_samples, populate
from adapters.kazpost.servicer import PostalServiceServicer
from adapters.kazpost.store import PostStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2, kazpost_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="kazpost",
    pb2=kazpost_pb2,
    add_servicer=kazpost_pb2_grpc.add_PostalServiceServicer_to_server,
    open_store=PostStore.open,
    make_servicer=PostalServiceServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
