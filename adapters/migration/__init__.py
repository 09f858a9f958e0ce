"""Миграционная полиция — registration of residence, as a govbus adapter."""

from pathlib import Path

from adapters.migration.data import contract_samples, populate
from adapters.migration.servicer import ResidenceRegistryServicer
from adapters.migration.store import ResidenceStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.migration.v1 import migration_pb2, migration_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="migration",
    pb2=migration_pb2,
    add_servicer=migration_pb2_grpc.add_ResidenceRegistryServicer_to_server,
    open_store=ResidenceStore.open,
    make_servicer=ResidenceRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
