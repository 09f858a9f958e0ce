"""ЕНПФ as a gRPC service: `kz.gov.pension.v1.PensionFund`.

A person's individual pension account and the statement of contributions to it
(выписка с ИПС, a stream of months, optionally limited to periods "YYYY-MM"); one
write, opening an account. Contributions arrive from employers through the bank
channel, not through the bus, so there is no write for them here.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.pension.store import PensionStore
from adapters.sdk.fields import iin_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.pb.agencies.pension.v1 import pension_pb2 as pb
from govbus.pb.agencies.pension.v1 import pension_pb2_grpc as pb_grpc

__all__ = ["PensionFundServicer", "period_field"]

_KINDS = (
    (pb.CONTRIBUTION_KIND_MANDATORY, "mandatory_tiyn"),
    (pb.CONTRIBUTION_KIND_EMPLOYER, "employer_tiyn"),
    (pb.CONTRIBUTION_KIND_VOLUNTARY, "voluntary_tiyn"),
)
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


def period_field(value: str, field: str) -> str | None:
    """An optional period "YYYY-MM" (None when empty)."""
    if not value:
        return None
    match = _PERIOD.fullmatch(value) if value.isascii() else None
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise InvalidRequest(f"{field}: {value[:20]!r} is not a period YYYY-MM")
    return value


def _account(row: sqlite3.Row) -> pb.PensionAccount:
    return pb.PensionAccount(
        iin=row["iin"],
        account_number=row["account_number"],
        opened_date=row["opened_date"],
        balance_tiyn=row["balance_tiyn"],
        last_contribution_date=row["last_contribution_date"],
    )


class PensionFundServicer(pb_grpc.PensionFundServicer):
    def __init__(self, store: PensionStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    async def GetAccount(self, request: pb.GetAccountRequest, context: Any) -> pb.PensionAccount:
        iin = iin_field(request.iin)
        row = self.store.account(iin.value)
        if row is None:
            raise NotFound(f"no pension account for IIN {iin.masked()}")
        return _account(row)

    async def ListContributions(
        self, request: pb.ListContributionsRequest, context: Any
    ) -> AsyncIterator[pb.Contribution]:
        iin = iin_field(request.iin)
        first = period_field(request.from_period, "from_period") or "0000-00"
        last = period_field(request.to_period, "to_period") or "9999-99"
        if first > last:
            raise InvalidRequest("from_period is after to_period")
        account = self.store.account(iin.value)
        if account is None:
            raise NotFound(f"no pension account for IIN {iin.masked()}")
        for row in self.store.contributions(int(account["id"]), first, last):
            for kind, column in _KINDS:
                if row[column]:
                    yield pb.Contribution(
                        iin=iin.value,
                        period=row["period"],
                        paid_date=row["paid_date"],
                        agent_bin=row["agent_bin"],
                        amount_tiyn=row[column],
                        kind=kind,
                    )

    async def OpenAccount(self, request: pb.OpenAccountRequest, context: Any) -> pb.PensionAccount:
        iin = iin_field(request.iin)
        today = self.today()
        if iin.birth_date > today:
            raise FailedPrecondition("the IIN gives a birth date in the future")
        existing = self.store.account(iin.value)
        if existing is not None:
            raise AlreadyExists(
                f"the person already has account {existing['account_number']} "
                f"(opened {existing['opened_date']})"
            )
        self.store.open_account(iin.value, today.isoformat())
        row = self.store.account(iin.value)
        assert row is not None
        return _account(row)
