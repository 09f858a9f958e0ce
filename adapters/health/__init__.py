"""Здравоохранение — polyclinic attachment and vaccinations, as a govbus adapter."""

from pathlib import Path

from adapters.health.data import contract_samples, populate
from adapters.health.servicer import HealthRegistryServicer
from adapters.health.store import HealthStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.health.v1 import health_pb2, health_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="health",
    pb2=health_pb2,
    add_servicer=health_pb2_grpc.add_HealthRegistryServicer_to_server,
    open_store=HealthStore.open,
    make_servicer=HealthRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
