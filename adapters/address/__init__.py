"""Адресный регистр — the address register, as a govbus adapter."""

from pathlib import Path

from adapters.address.data import contract_samples, populate
from adapters.address.servicer import AddressRegisterServicer
from adapters.address.store import AddressStore
from adapters.sdk.agency import AgencyAdapter
from govbus.pb.agencies.address.v1 import address_pb2, address_pb2_grpc

__all__ = ["ADAPTER"]

ADAPTER = AgencyAdapter(
    code="address",
    pb2=address_pb2,
    add_servicer=address_pb2_grpc.add_AddressRegisterServicer_to_server,
    open_store=AddressStore.open,
    make_servicer=AddressRegisterServicer,
    populate=populate,
    samples=contract_samples,
    folder=Path(__file__).parent,
)
