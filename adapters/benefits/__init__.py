"""ГЦВП — state benefits and pensions and their payments, as a govbus adapter."""

from pathlib import Path

from adapters.benefits.data import contract_samples, populate
from adapters.benefits.servicer import StateBenefitsServicer
from adapters.benefits.store import BenefitStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.benefits.v1 import benefits_pb2, benefits_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="benefits",
    pb2=benefits_pb2,
    add_servicer=benefits_pb2_grpc.add_StateBenefitsServicer_to_server,
    open_store=BenefitStore.open,
    make_servicer=StateBenefitsServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
