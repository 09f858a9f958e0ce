"""Образование — kindergarten queue and school enrolment, as a govbus adapter."""

from pathlib import Path

from adapters.education.data import contract_samples, populate
from adapters.education.servicer import EducationRegistryServicer
from adapters.education.store import EducationStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.education.v1 import education_pb2, education_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="education",
    pb2=education_pb2,
    add_servicer=education_pb2_grpc.add_EducationRegistryServicer_to_server,
    open_store=EducationStore.open,
    make_servicer=EducationRegistryServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
