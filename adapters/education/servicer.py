"""Education as a gRPC service: `kz.gov.education.v1.EducationRegistry`.

The kindergarten queue (read a child's place; put a child under 6 in the queue;
withdraw) and school enrolment. The child's age comes from the IIN itself, so a
newborn this registry has never seen can be queued.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from adapters.education.data import KINDERGARTEN, queue_rank
from adapters.education.store import EducationStore
from adapters.sdk.fields import enum_field, iin_field, optional_date_field, text_field
from govbus.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from govbus.pb.agencies.education.v1 import education_pb2 as pb
from govbus.pb.agencies.education.v1 import education_pb2_grpc as pb_grpc

__all__ = ["EducationRegistryServicer"]

_QUEUE_AGE = 6
_MIN_APPLICANT_GAP_YEARS = 14
_PRIORITIES = (
    pb.PRIORITY_CATEGORY_UNSPECIFIED,
    pb.PRIORITY_CATEGORY_NONE,
    pb.PRIORITY_CATEGORY_LARGE_FAMILY,
    pb.PRIORITY_CATEGORY_DISABILITY,
    pb.PRIORITY_CATEGORY_ORPHAN,
)


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


class EducationRegistryServicer(pb_grpc.EducationRegistryServicer):
    def __init__(self, store: EducationStore, today: Any = dt.date.today) -> None:
        self.store = store
        self.today = today

    def _entry(self, row: sqlite3.Row) -> pb.QueueEntry:
        waiting = row["status"] == pb.QUEUE_STATUS_WAITING
        return pb.QueueEntry(
            child_iin=row["child_iin"],
            applicant_iin=row["applicant_iin"],
            kindergarten_id=row["kindergarten_id"],
            city=row["city"],
            applied_date=row["applied_date"],
            desired_date=row["desired_date"],
            status=row["status"],
            priority=row["priority"],
            position=self.store.position(row, pb.QUEUE_STATUS_WAITING) if waiting else 0,
        )

    async def GetQueueEntry(self, request: pb.GetQueueEntryRequest, context: Any) -> pb.QueueEntry:
        child = iin_field(request.child_iin, "child_iin")
        row = self.store.queue_entry(child.value)
        if row is None:
            raise NotFound(f"child {child.masked()} is not in the kindergarten queue")
        return self._entry(row)

    async def ListKindergartens(
        self, request: pb.ListKindergartensRequest, context: Any
    ) -> AsyncIterator[pb.Kindergarten]:
        city = text_field(request.city, "city")
        rows = self.store.institutions(city, KINDERGARTEN)
        if not rows:
            raise NotFound(f"no kindergartens are registered in {city!r}")
        for row in rows:
            yield pb.Kindergarten(
                id=row["id"],
                name=row["name"],
                city=row["city"],
                rca=row["rca"],
                capacity=row["capacity"],
            )

    async def GetSchoolEnrolment(
        self, request: pb.GetSchoolEnrolmentRequest, context: Any
    ) -> pb.SchoolEnrolment:
        iin = iin_field(request.iin)
        row = self.store.enrolment(iin.value)
        if row is None:
            raise NotFound(f"{iin.masked()} is not enrolled in a school")
        return pb.SchoolEnrolment(
            iin=row["iin"],
            school_id=row["school_id"],
            school_name=row["school_name"],
            city=row["city"],
            grade=row["grade"],
            since_date=row["since_date"],
        )

    async def EnqueueKindergarten(
        self, request: pb.EnqueueKindergartenRequest, context: Any
    ) -> pb.QueueEntry:
        child = iin_field(request.child_iin, "child_iin")
        applicant = iin_field(request.applicant_iin, "applicant_iin")
        kindergarten_id = text_field(request.kindergarten_id, "kindergarten_id", max_length=32)
        desired = optional_date_field(request.desired_date, "desired_date")
        priority = enum_field(request.priority, "priority", _PRIORITIES, name="priority category")
        priority = priority or pb.PRIORITY_CATEGORY_NONE
        today = self.today()
        if child.birth_date > today:
            raise FailedPrecondition("the child's IIN gives a birth date in the future")
        age = _age(child.birth_date, today)
        if age >= _QUEUE_AGE:
            raise FailedPrecondition(
                f"the child is {age}: the kindergarten queue is for children under {_QUEUE_AGE}"
            )
        if _age(applicant.birth_date, child.birth_date) < _MIN_APPLICANT_GAP_YEARS:
            raise FailedPrecondition("the applicant is too young to be the child's parent")
        if desired is not None and desired < today:
            raise InvalidRequest("desired_date is in the past")
        kindergarten = self.store.institution(kindergarten_id, KINDERGARTEN)
        if kindergarten is None:
            raise NotFound(f"no kindergarten {kindergarten_id}")
        existing = self.store.queue_entry(child.value)
        if existing is not None and existing["status"] != pb.QUEUE_STATUS_WITHDRAWN:
            raise AlreadyExists(
                f"the child is already in the queue (since {existing['applied_date']})"
            )
        self.store.enqueue(
            (
                child.value,
                applicant.value,
                kindergarten_id,
                kindergarten["city"],
                today.isoformat(),
                (desired or today).isoformat(),
                pb.QUEUE_STATUS_WAITING,
                priority,
                queue_rank(priority),
            )
        )
        row = self.store.queue_entry(child.value)
        assert row is not None
        return self._entry(row)

    async def WithdrawFromQueue(
        self, request: pb.WithdrawFromQueueRequest, context: Any
    ) -> pb.QueueEntry:
        child = iin_field(request.child_iin, "child_iin")
        reason = text_field(request.reason, "reason")
        row = self.store.queue_entry(child.value)
        if row is None:
            raise NotFound(f"child {child.masked()} is not in the kindergarten queue")
        if row["status"] != pb.QUEUE_STATUS_WAITING:
            raise FailedPrecondition("only a waiting child can be withdrawn from the queue")
        self.store.withdraw(child.value, pb.QUEUE_STATUS_WITHDRAWN, reason)
        row = self.store.queue_entry(child.value)
        assert row is not None
        return self._entry(row)
