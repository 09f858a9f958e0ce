"""The real-estate register (rights to buildings and flats, encumbrances), as a govbus adapter."""

from pathlib import Path

from adapters.realestate.data import contract_samples, populate
from adapters.realestate.servicer import RealEstateRegisterServicer
from adapters.realestate.store import PropertyStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.realestate.v1 import realestate_pb2, realestate_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="realestate",
    pb2=realestate_pb2,
    add_servicer=realestate_pb2_grpc.add_RealEstateRegisterServicer_to_server,
    open_store=PropertyStore.open,
    make_servicer=RealEstateRegisterServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
