"""ГБД ЮЛ as a gRPC service: `kz.gov.gbdul.v1.LegalEntityRegistry`.

Reads of an entity by BIN, its founders, and the entities a person directs or
founded; writes for state registration of a new entity (it gets its BIN here) and
a change of director. Identifiers first (INVALID_IDENTIFIER), then the other fields
(INVALID_REQUEST), then the registry's rules: a director and every founder who is a
person must be an adult, a founding entity must be registered and active, a state
institution is founded by state bodies only, the name of an active entity is
unique, a liquidated entity changes nothing. The servicer never calls another
registry: a name this registry was never told stays empty.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.gbdul.data import OKED
from adapters.gbdul.store import EntityStore, name_key
from adapters.population.geography import parse_rca
from adapters.sdk.fields import (
    bin_field,
    enum_field,
    iin_field,
    optional_date_field,
    text_field,
)
from govbus.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
)
from govbus.ids import Bin, EntityKind, Iin
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2 as pb
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2_grpc as pb_grpc

__all__ = ["LegalEntityRegistryServicer"]

_FORMS = (pb.LEGAL_FORM_TOO, pb.LEGAL_FORM_AO, pb.LEGAL_FORM_GU)
_ADULT = 18
_FULL_SHARE = 10_000
_MAX_FOUNDERS = 50
_OKED_CODE = re.compile(r"[0-9]{5}")


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _entity(row: sqlite3.Row) -> pb.LegalEntity:
    liquidated = row["liquidation_date"]
    return pb.LegalEntity(
        bin=row["bin"],
        name=row["name"],
        legal_form=row["legal_form"],
        registration_date=row["registration_date"],
        status=pb.ENTITY_STATUS_LIQUIDATED if liquidated else pb.ENTITY_STATUS_ACTIVE,
        liquidation_date=liquidated or "",
        director_iin=row["director_iin"],
        director_name=row["director_name"],
        rca=row["rca"],
        address_line=row["address_line"],
        oked_code=row["oked_code"],
        oked_name=row["oked_name"],
    )


def _founder(row: sqlite3.Row) -> pb.Founder:
    founder = pb.Founder(name=row["name"], share_basis_points=row["share_basis_points"])
    if row["founder_iin"]:
        founder.iin = row["founder_iin"]
    else:
        founder.bin = row["founder_bin"]
    return founder


class LegalEntityRegistryServicer(pb_grpc.LegalEntityRegistryServicer):
    def __init__(self, store: EntityStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _existing(self, bin_: Bin) -> sqlite3.Row:
        row = self.store.entity(bin_.value)
        if row is None:
            raise NotFound(f"no legal entity with BIN {bin_.value} in ГБД ЮЛ")
        return row

    async def GetEntity(self, request: pb.GetEntityRequest, context: Any) -> pb.LegalEntity:
        return _entity(self._existing(bin_field(request.bin)))

    async def ListFounders(
        self, request: pb.ListFoundersRequest, context: Any
    ) -> AsyncIterator[pb.Founder]:
        entity = self._existing(bin_field(request.bin))
        for row in self.store.founders(entity["bin"]):
            yield _founder(row)

    async def ListEntitiesByPerson(
        self, request: pb.ListEntitiesByPersonRequest, context: Any
    ) -> AsyncIterator[pb.EntityLink]:
        iin = iin_field(request.iin)
        for row in self.store.directed_by(iin.value):
            yield pb.EntityLink(bin=row["bin"], name=row["name"], role=pb.ENTITY_ROLE_DIRECTOR)
        for row in self.store.founded_by(iin.value):
            yield pb.EntityLink(bin=row["bin"], name=row["name"], role=pb.ENTITY_ROLE_FOUNDER)

    async def RegisterEntity(
        self, request: pb.RegisterEntityRequest, context: Any
    ) -> pb.LegalEntity:
        director = iin_field(request.director_iin, "director_iin")
        founder_ids = [_founder_id(f, n) for n, f in enumerate(request.founders)]
        rca = parse_rca(request.rca)
        founders = [
            (
                identifier,
                text_field(f.name, f"founders[{n}].name", max_length=250),
                f.share_basis_points,
            )
            for n, (identifier, f) in enumerate(zip(founder_ids, request.founders, strict=True))
        ]
        name = text_field(request.name, "name", max_length=250)
        legal_form = enum_field(request.legal_form, "legal_form", _FORMS, name="legal form")
        oked_code = text_field(request.oked_code, "oked_code", max_length=5)
        if not _OKED_CODE.fullmatch(oked_code):
            raise InvalidRequest(f"oked_code {oked_code!r} must be 5 digits of the ОКЭД")
        if oked_code not in OKED:
            raise InvalidRequest(f"oked_code {oked_code} is not in the activity classifier")
        _check_founder_list(founders)

        today = self.today()
        if _age(director.birth_date, today) < _ADULT:
            raise FailedPrecondition(f"the director is under {_ADULT}")
        for n, (identifier, _name, _share) in enumerate(founders):
            if isinstance(identifier, Iin):
                if legal_form == pb.LEGAL_FORM_GU:
                    raise FailedPrecondition(
                        "a state institution is founded by state bodies: founders must be "
                        "legal entities (BIN)"
                    )
                if _age(identifier.birth_date, today) < _ADULT:
                    raise FailedPrecondition(f"founder {n} is under {_ADULT}")
            else:
                parent = self.store.entity(identifier.value)
                if parent is None:
                    raise NotFound(f"founder {n}: no legal entity with BIN {identifier.value}")
                if parent["liquidation_date"]:
                    raise FailedPrecondition(
                        f"founder {n}: entity {identifier.value} was liquidated on "
                        f"{parent['liquidation_date']}"
                    )
        taken = self.store.active_by_name(name)
        if taken is not None:
            raise AlreadyExists(
                f"an active entity is already registered as {name!r}: {taken['bin']}"
            )

        director_name = next(
            (n for identifier, n, _ in founders if identifier == director), ""
        ) or self.store.known_name(director.value)
        bin_ = self._allocate(today)
        registered = today.isoformat()
        try:
            self.store.register(
                (
                    bin_,
                    name,
                    name_key(name),
                    legal_form,
                    registered,
                    None,
                    director.value,
                    director_name,
                    registered,
                    rca,
                    "",
                    oked_code,
                    OKED[oked_code],
                ),
                [
                    (
                        bin_,
                        n,
                        identifier.value if isinstance(identifier, Iin) else None,
                        identifier.value if isinstance(identifier, Bin) else None,
                        founder_name,
                        share,
                    )
                    for n, (identifier, founder_name, share) in enumerate(founders)
                ],
                (bin_, director.value, registered, None),
            )
        except sqlite3.IntegrityError:
            # Another registration took the name between the check and the insert.
            raise AlreadyExists(f"an active entity is already registered as {name!r}") from None
        return _entity(self._existing(Bin(bin_)))

    def _allocate(self, day: dt.date) -> str:
        """A free BIN for the registration month; serials from the top, away from the
        world's low ones."""
        prefix = f"{day:%y%m}{EntityKind.RESIDENT.value}0"
        used = self.store.used_serials(prefix)
        for serial in range(99_999, -1, -1):
            if f"{serial:05d}" in used:
                continue
            built = Bin.build(day.year, day.month, serial)
            if built is not None:
                return built.value
        raise FailedPrecondition(f"no BIN serial is left for {day:%Y-%m}")

    async def ChangeDirector(
        self, request: pb.ChangeDirectorRequest, context: Any
    ) -> pb.LegalEntity:
        bin_ = bin_field(request.bin)
        director = iin_field(request.director_iin, "director_iin")
        since = optional_date_field(request.since_date, "since_date") or self.today()
        if since > self.today():
            raise InvalidRequest(f"since_date {since} is in the future")
        row = self._existing(bin_)
        if row["liquidation_date"]:
            raise FailedPrecondition(f"the entity was liquidated on {row['liquidation_date']}")
        if row["director_iin"] == director.value:
            raise FailedPrecondition("this person is already the entity's director")
        if since.isoformat() < row["director_since"]:
            raise FailedPrecondition(
                f"since_date {since} is before the current director took office "
                f"({row['director_since']})"
            )
        if _age(director.birth_date, since) < _ADULT:
            raise FailedPrecondition(f"the new director is under {_ADULT} on {since}")
        name = self.store.known_name(director.value)
        self.store.change_director(bin_.value, director.value, name, since.isoformat())
        return _entity(self._existing(bin_))


def _founder_id(founder: pb.Founder, n: int) -> Iin | Bin:
    which = founder.WhichOneof("founder")
    if which == "iin":
        return iin_field(founder.iin, f"founders[{n}].iin")
    if which == "bin":
        return bin_field(founder.bin, f"founders[{n}].bin")
    raise InvalidIdentifier(f"founders[{n}]: an IIN or a BIN is required")


def _check_founder_list(founders: list[tuple[Iin | Bin, str, int]]) -> None:
    if not founders:
        raise InvalidRequest("an entity needs at least one founder")
    if len(founders) > _MAX_FOUNDERS:
        raise InvalidRequest(f"more than {_MAX_FOUNDERS} founders")
    seen = set()
    for n, (identifier, _name, share) in enumerate(founders):
        if identifier.value in seen:
            raise InvalidRequest(f"founders[{n}] is listed twice")
        seen.add(identifier.value)
        if not 0 < share <= _FULL_SHARE:
            raise InvalidRequest(f"founders[{n}].share_basis_points must be 1…{_FULL_SHARE}")
    total = sum(share for _, _, share in founders)
    if total != _FULL_SHARE:
        raise InvalidRequest(f"founders' shares add up to {total} basis points, not {_FULL_SHARE}")
