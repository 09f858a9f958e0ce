"""Земельный кадастр — land plots and the rights held on them, as a govbus adapter."""

from pathlib import Path

from adapters.land.data import contract_samples, populate
from adapters.land.servicer import LandCadastreServicer
from adapters.land.store import LandStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.land.v1 import land_pb2, land_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="land",
    pb2=land_pb2,
    add_servicer=land_pb2_grpc.add_LandCadastreServicer_to_server,
    open_store=LandStore.open,
    make_servicer=LandCadastreServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
