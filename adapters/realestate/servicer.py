"""The real-estate register as a gRPC service: `kz.gov.realestate.v1.RealEstateRegister`.

Reads of an object by cadastral number (with its current holders and whether it is
encumbered), the objects a person or entity holds now, and the encumbrances in
force; one write: a transfer (sale, gift, inheritance) in which the new holders
replace the old ones. A cadastral number is an identifier (`RR-NNN-NNNNNN`, RR a
region): a malformed one is INVALID_IDENTIFIER, before any lookup.

Transfer rules: holders are distinct, each with a positive share, the shares adding
up to 100 %; the date is not in the future nor before the current right was
registered; an object under arrest (a court, enforcement officer or the tax
authority) or under a mortgage cannot be transferred; a transfer to the very holders
who already hold it is refused — unless it is the same transfer again (same day and
basis), which answers the object as it is (a retried registration is not an error).
The servicer never calls another registry.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from adapters.population.geography import REGIONS
from adapters.realestate.store import PropertyStore
from adapters.sdk.fields import bin_field, iin_field, optional_date_field, text_field
from govbus.errors import FailedPrecondition, InvalidIdentifier, InvalidRequest, NotFound
from govbus.ids import Bin, Iin
from govbus.pb.agencies.realestate.v1 import realestate_pb2 as pb
from govbus.pb.agencies.realestate.v1 import realestate_pb2_grpc as pb_grpc

__all__ = ["RealEstateRegisterServicer", "parse_cadastral_number"]

_CADASTRAL = re.compile(r"([0-9]{2})-[0-9]{3}-[0-9]{6}")
_REGION_CODES = frozenset(r.code for r in REGIONS)
_FULL_SHARE = 10_000
_MAX_HOLDERS = 20
_BLOCKING = {
    pb.ENCUMBRANCE_KIND_ARREST: "it is under arrest",
    pb.ENCUMBRANCE_KIND_MORTGAGE: "it is mortgaged: the bank must release it first",
}


def parse_cadastral_number(value: str, field: str = "cadastral_number") -> str:
    """A cadastral number `RR-NNN-NNNNNN` whose RR is a known region."""
    text = value.strip()
    if not text:
        raise InvalidIdentifier(f"{field}: a cadastral number RR-NNN-NNNNNN is required")
    match = _CADASTRAL.fullmatch(text) if text.isascii() else None
    if match is None:
        shown = text if len(text) <= 24 else text[:24] + "…"
        raise InvalidIdentifier(f"{field}: {shown!r} is not a cadastral number RR-NNN-NNNNNN")
    if int(match.group(1)) not in _REGION_CODES:
        raise InvalidIdentifier(f"{field}: {text} starts with an unknown region {match.group(1)}")
    return text


def _holder(row: sqlite3.Row) -> pb.Holder:
    holder = pb.Holder(share_basis_points=row["share_basis_points"])
    if row["holder_iin"]:
        holder.iin = row["holder_iin"]
    else:
        holder.bin = row["holder_bin"]
    return holder


def _holder_id(holder: pb.Holder, n: int) -> Iin | Bin:
    which = holder.WhichOneof("id")
    if which == "iin":
        return iin_field(holder.iin, f"new_holders[{n}].iin")
    if which == "bin":
        return bin_field(holder.bin, f"new_holders[{n}].bin")
    raise InvalidIdentifier(f"new_holders[{n}]: an IIN or a BIN is required")


def _key(
    rows: Sequence[tuple[str | None, str | None, int]],
) -> list[tuple[str | None, str | None, int]]:
    return sorted(rows, key=lambda r: (r[0] or "", r[1] or ""))


class RealEstateRegisterServicer(pb_grpc.RealEstateRegisterServicer):
    def __init__(self, store: PropertyStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _existing(self, number: str) -> sqlite3.Row:
        row = self.store.property(number)
        if row is None:
            raise NotFound(f"no object with cadastral number {number} in the register")
        return row

    def _property(self, row: sqlite3.Row) -> pb.Property:
        number = row["cadastral_number"]
        return pb.Property(
            cadastral_number=number,
            rca=row["rca"],
            address_line=row["address_line"],
            kind=row["kind"],
            area_dm2=row["area_dm2"],
            holders=[_holder(h) for h in self.store.holders(number)],
            registered_date=row["registered_date"],
            encumbered=bool(self.store.encumbrances(number, self.today().isoformat())),
        )

    async def GetProperty(self, request: pb.GetPropertyRequest, context: Any) -> pb.Property:
        return self._property(self._existing(parse_cadastral_number(request.cadastral_number)))

    async def ListPropertiesByHolder(
        self, request: pb.ListPropertiesByHolderRequest, context: Any
    ) -> AsyncIterator[pb.Property]:
        which = request.WhichOneof("id")
        if which == "iin":
            numbers = self.store.held_by("holder_iin", iin_field(request.iin).value)
        elif which == "bin":
            numbers = self.store.held_by("holder_bin", bin_field(request.bin).value)
        else:
            raise InvalidIdentifier("an IIN or a BIN of the holder is required")
        for number in numbers:
            yield self._property(self._existing(number))

    async def ListEncumbrances(
        self, request: pb.ListEncumbrancesRequest, context: Any
    ) -> AsyncIterator[pb.Encumbrance]:
        number = parse_cadastral_number(request.cadastral_number)
        self._existing(number)
        for row in self.store.encumbrances(number, self.today().isoformat()):
            yield pb.Encumbrance(
                cadastral_number=number,
                kind=row["kind"],
                holder=row["holder"],
                since_date=row["since_date"],
                until_date=row["until_date"] or "",
            )

    async def RegisterTransfer(
        self, request: pb.RegisterTransferRequest, context: Any
    ) -> pb.Property:
        number = parse_cadastral_number(request.cadastral_number)
        ids = [_holder_id(h, n) for n, h in enumerate(request.new_holders)]
        day = optional_date_field(request.transfer_date, "transfer_date") or self.today()
        basis = text_field(request.basis, "basis", max_length=200)
        new = [
            (
                i.value if isinstance(i, Iin) else None,
                i.value if isinstance(i, Bin) else None,
                h.share_basis_points,
            )
            for i, h in zip(ids, request.new_holders, strict=True)
        ]
        _check_holders(ids, [share for _, _, share in new])
        if day > self.today():
            raise InvalidRequest(f"transfer_date {day} is in the future")

        row = self._existing(number)
        current = self.store.holders(number)
        held = [(h["holder_iin"], h["holder_bin"], h["share_basis_points"]) for h in current]
        if _key(held) == _key(new):
            if (
                current
                and current[0]["basis"] == basis
                and current[0]["since_date"] == day.isoformat()
            ):
                return self._property(row)  # the same transfer again: already registered
            raise FailedPrecondition("the new holders already hold the object with these shares")
        if day.isoformat() < row["registered_date"]:
            raise FailedPrecondition(
                f"transfer_date {day} is before the current right was registered "
                f"({row['registered_date']})"
            )
        # What blocks is what is in force on the day of registration, whatever the
        # date of the contract.
        for encumbrance in self.store.encumbrances(number, self.today().isoformat()):
            reason = _BLOCKING.get(encumbrance["kind"])
            if reason is not None:
                raise FailedPrecondition(
                    f"object {number} cannot be transferred: {reason} "
                    f"({encumbrance['holder']}, since {encumbrance['since_date']})"
                )
        self.store.transfer(number, day.isoformat(), basis, new)
        return self._property(self._existing(number))


def _check_holders(ids: list[Iin | Bin], shares: list[int]) -> None:
    if not ids:
        raise InvalidRequest("a transfer needs at least one new holder")
    if len(ids) > _MAX_HOLDERS:
        raise InvalidRequest(f"more than {_MAX_HOLDERS} holders")
    if len({i.value for i in ids}) != len(ids):
        raise InvalidRequest("a holder is listed twice")
    for n, share in enumerate(shares):
        if not 0 < share <= _FULL_SHARE:
            raise InvalidRequest(f"new_holders[{n}].share_basis_points must be 1…{_FULL_SHARE}")
    if sum(shares) != _FULL_SHARE:
        raise InvalidRequest(
            f"the holders' shares add up to {sum(shares)} basis points, not {_FULL_SHARE}"
        )
