"""Kazpost as a gRPC service: `kz.gov.kazpost.v1.PostalService`.

Delivery contacts (read; create or change — an empty field keeps its value) and
deliveries of documents (list; create). The rules: a phone is a Kazakh number
+7XXXXXXXXXX, an e-mail looks like one; an address is a known РКА code (a new
contact needs one; a delivery goes to the contact's address unless another is
given); a parcel locker only where the city has them; one document from one sender
on its way to a person at a time.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.kazpost.data import DOCUMENT_KINDS
from adapters.kazpost.store import PostStore
from adapters.population.geography import parse_rca
from adapters.sdk.fields import enum_field, iin_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2 as pb
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2_grpc as pb_grpc

__all__ = ["PostalServiceServicer"]

_PHONE = re.compile(r"\+7\d{10}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CHANNELS = (
    pb.DELIVERY_CHANNEL_UNSPECIFIED,
    pb.DELIVERY_CHANNEL_POST,
    pb.DELIVERY_CHANNEL_COURIER,
    pb.DELIVERY_CHANNEL_POSTAMAT,
)


def _contact(row: sqlite3.Row) -> pb.DeliveryContact:
    return pb.DeliveryContact(
        iin=row["iin"],
        phone=row["phone"],
        email=row["email"],
        rca=row["rca"],
        postal_code=row["postal_code"],
        preferred=row["preferred"],
    )


def _delivery(row: sqlite3.Row) -> pb.Delivery:
    return pb.Delivery(
        tracking_number=row["tracking_number"],
        iin=row["iin"],
        document_kind=row["document_kind"],
        sender=row["sender"],
        channel=row["channel"],
        status=row["status"],
        created_date=row["created_date"],
        delivered_date=row["delivered_date"] or "",
        rca=row["rca"],
    )


def _phone(value: str) -> str:
    phone = "".join(value.split()).replace("-", "").replace("(", "").replace(")", "")
    if phone.startswith("8") and len(phone) == 11:
        phone = "+7" + phone[1:]  # the domestic form 8 7XX … of the same number
    if not _PHONE.fullmatch(phone):
        raise InvalidRequest(f"phone: {value[:20]!r} is not a Kazakh number +7XXXXXXXXXX")
    return phone


def _email(value: str) -> str:
    email = text_field(value, "email", max_length=100)
    if not _EMAIL.fullmatch(email):
        raise InvalidRequest(f"email: {email[:40]!r} is not an e-mail address")
    return email.lower()


class PostalServiceServicer(pb_grpc.PostalServiceServicer):
    def __init__(self, store: PostStore, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _address(self, rca: str) -> sqlite3.Row:
        row = self.store.address(rca)
        if row is None:
            raise NotFound(f"no address with code {rca} in the postal address index")
        return row

    async def GetDeliveryContact(
        self, request: pb.GetDeliveryContactRequest, context: Any
    ) -> pb.DeliveryContact:
        iin = iin_field(request.iin)
        row = self.store.contact(iin.value)
        if row is None:
            raise NotFound(f"no delivery contact for IIN {iin.masked()}")
        return _contact(row)

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Any
    ) -> AsyncIterator[pb.Delivery]:
        iin = iin_field(request.iin)
        for row in self.store.deliveries(iin.value):
            yield _delivery(row)

    async def CreateDelivery(self, request: pb.CreateDeliveryRequest, context: Any) -> pb.Delivery:
        iin = iin_field(request.iin)
        rca = parse_rca(request.rca) if request.rca else None
        kind = text_field(request.document_kind, "document_kind", max_length=40).upper()
        if kind not in DOCUMENT_KINDS:
            raise InvalidRequest(f"document_kind must be one of: {', '.join(DOCUMENT_KINDS)}")
        sender = text_field(request.sender, "sender")
        channel = enum_field(request.channel, "channel", _CHANNELS, name="delivery channel")
        contact = self.store.contact(iin.value)
        if rca is None:
            if contact is None:
                raise FailedPrecondition(
                    "no delivery contact for this person: give the address (rca) to deliver to"
                )
            rca = str(contact["rca"])
        address = self._address(rca)
        if channel == pb.DELIVERY_CHANNEL_UNSPECIFIED:
            channel = int(contact["preferred"]) if contact is not None else pb.DELIVERY_CHANNEL_POST
            if channel == pb.DELIVERY_CHANNEL_POSTAMAT and not address["postamats"]:
                channel = pb.DELIVERY_CHANNEL_POST
        if channel == pb.DELIVERY_CHANNEL_POSTAMAT and not address["postamats"]:
            raise FailedPrecondition(f"there are no parcel lockers in {address['city']}")
        pending = self.store.pending(iin.value, kind, sender)
        if pending is not None:
            raise AlreadyExists(
                f"{kind} from {sender} is already on its way ({pending['tracking_number']})"
            )
        number = self.store.add_delivery(
            channel,
            (
                iin.value,
                kind,
                sender,
                channel,
                pb.DELIVERY_STATUS_CREATED,
                self.today().isoformat(),
                None,
                rca,
            ),
        )
        row = self.store.delivery(number)
        assert row is not None
        return _delivery(row)

    async def UpdateDeliveryContact(
        self, request: pb.UpdateDeliveryContactRequest, context: Any
    ) -> pb.DeliveryContact:
        iin = iin_field(request.iin)
        rca = parse_rca(request.rca) if request.rca else None
        phone = _phone(request.phone) if request.phone else None
        email = _email(request.email) if request.email else None
        preferred = enum_field(request.preferred, "preferred", _CHANNELS, name="delivery channel")
        if rca is None and phone is None and email is None and not preferred:
            raise InvalidRequest("nothing to change: give a phone, an e-mail, an rca or a channel")
        current = self.store.contact(iin.value)
        if rca is None:
            if current is None:
                raise InvalidRequest("a new delivery contact needs its address (rca)")
            rca = str(current["rca"])
        address = self._address(rca)
        if preferred == pb.DELIVERY_CHANNEL_POSTAMAT and not address["postamats"]:
            raise FailedPrecondition(f"there are no parcel lockers in {address['city']}")
        if preferred == pb.DELIVERY_CHANNEL_UNSPECIFIED:
            # Keep the preference, unless the new address has no parcel lockers.
            preferred = pb.DELIVERY_CHANNEL_POST
            if current is not None and (
                address["postamats"] or current["preferred"] != (pb.DELIVERY_CHANNEL_POSTAMAT)
            ):
                preferred = int(current["preferred"])
        self.store.save_contact(
            (
                iin.value,
                phone if phone is not None else (current["phone"] if current else ""),
                email if email is not None else (current["email"] if current else ""),
                address["rca"],
                preferred,
                self.today().isoformat(),
            )
        )
        row = self.store.contact(iin.value)
        assert row is not None
        return _contact(row)
