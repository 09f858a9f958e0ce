"""КПСиСУ — criminal records and the certificate of (no) criminal record, as a govbus adapter."""

from pathlib import Path

from adapters.criminal.data import contract_samples, populate
from adapters.criminal.servicer import CriminalRecordsServicer
from adapters.criminal.store import CriminalStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.criminal.v1 import criminal_pb2, criminal_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="criminal",
    pb2=criminal_pb2,
    add_servicer=criminal_pb2_grpc.add_CriminalRecordsServicer_to_server,
    open_store=CriminalStore.open,
    make_servicer=CriminalRecordsServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
