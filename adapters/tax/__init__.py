"""КГД — the state revenue committee (taxpayers, debts, declarations), as a govbus adapter."""

from pathlib import Path

from adapters.sdk.agency import AgencyAdapter
from adapters.tax.data import contract_samples, populate
from adapters.tax.servicer import TaxServiceServicer
from adapters.tax.store import TaxStore
from govbus.pb.agencies.tax.v1 import tax_pb2, tax_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="tax",
    pb2=tax_pb2,
    add_servicer=tax_pb2_grpc.add_TaxServiceServicer_to_server,
    open_store=TaxStore.open,
    make_servicer=TaxServiceServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
