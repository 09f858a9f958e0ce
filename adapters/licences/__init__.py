"""Водительские удостоверения — the driving licence register, as a govbus adapter."""

from pathlib import Path

from adapters.licences.data import contract_samples, populate
from adapters.licences.servicer import DrivingLicencesServicer
from adapters.licences.store import LicenceStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.licences.v1 import licences_pb2, licences_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="licences",
    pb2=licences_pb2,
    add_servicer=licences_pb2_grpc.add_DrivingLicencesServicer_to_server,
    open_store=LicenceStore.open,
    make_servicer=DrivingLicencesServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
