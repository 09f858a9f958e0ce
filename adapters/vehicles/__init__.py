"""Транспортные средства — the vehicle registry, as a govbus adapter."""

from pathlib import Path

from adapters.sdk.agency import AgencyAdapter
from adapters.vehicles.data import contract_samples, populate
from adapters.vehicles.servicer import VehicleRegistryServicer
from adapters.vehicles.store import VehicleStore
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2, vehicles_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="vehicles",
    pb2=vehicles_pb2,
    add_servicer=vehicles_pb2_grpc.add_VehicleRegistryServicer_to_server,
    open_store=VehicleStore.open,
    make_servicer=VehicleRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
