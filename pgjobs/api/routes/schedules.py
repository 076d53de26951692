"""``/v1/schedules``: the tenant's periodic jobs (create, read, list, change, pause, resume,
archive, run now, upcoming slots).

Each handler is a thin shell over ``pgjobs.schedules`` with the token's tenant: validation,
statements and errors are the schedules API's own. Handlers are plain functions: FastAPI runs
them in its thread pool, on that API's own transactions, off the event loop (as the
credentials routes do). Reads need ``jobs:read``; changes ``jobs:write``, since a schedule
enqueues jobs. Every change is an ``api.audit`` line naming the token.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from pgjobs.api.audit import audit
from pgjobs.api.auth import Caller, Writer
from pgjobs.api.schemas import (
    EnqueuedOut,
    PageOut,
    ScheduleCreate,
    ScheduleQuery,
    ScheduleUpdate,
    UpcomingOut,
)
from pgjobs.db.schemas.schedule import ScheduleRead
from pgjobs.schedules import api as schedules

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

PROBLEMS: dict[int | str, dict[str, object]] = {
    404: {"description": "No such schedule for this tenant"},
    409: {"description": "The schedule's status does not allow this"},
}

_RENAMED = {"type": "job_type"}
"""Body fields whose keyword in ``pgjobs.schedules`` has another name."""


def _options(body: ScheduleCreate | ScheduleUpdate, given_only: bool) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=given_only)
    return {_RENAMED.get(name, name): value for name, value in fields.items()}


@router.post("", status_code=201, response_model=ScheduleRead, responses=PROBLEMS)
def create_schedule(body: ScheduleCreate, principal: Writer) -> ScheduleRead:
    """A new schedule, active unless ``paused``; its payload is validated now."""
    options = _options(body, given_only=False)
    name, job_type, paused = options.pop("name"), options.pop("job_type"), options.pop("paused")
    made = schedules.create(principal.tenant_id, name, job_type, paused=paused, **options)
    audit(principal, "schedule.create", schedule_id=made.id)
    return made


@router.get("", response_model=PageOut[ScheduleRead])
def list_schedules(
    principal: Caller, query: Annotated[ScheduleQuery, Query()]
) -> PageOut[ScheduleRead]:
    """The tenant's schedules by name; repeat ``status`` to give several."""
    page = schedules.list_schedules(
        principal.tenant_id, status=query.status, cursor=query.cursor, limit=query.limit
    )
    return PageOut[ScheduleRead](items=page.items, next_cursor=page.next_cursor)


@router.get("/by-name/{name}", response_model=ScheduleRead, responses=PROBLEMS)
def read_schedule_by_name(name: str, principal: Caller) -> ScheduleRead:
    return schedules.get_by_name(principal.tenant_id, name)


@router.get("/{schedule_id}", response_model=ScheduleRead, responses=PROBLEMS)
def read_schedule(schedule_id: uuid.UUID, principal: Caller) -> ScheduleRead:
    return schedules.get(principal.tenant_id, schedule_id)


@router.patch("/{schedule_id}", response_model=ScheduleRead, responses=PROBLEMS)
def update_schedule(
    schedule_id: uuid.UUID, body: ScheduleUpdate, principal: Writer
) -> ScheduleRead:
    """Change what is given; a new timing starts from its first slot after now."""
    changed = schedules.update(principal.tenant_id, schedule_id, **_options(body, given_only=True))
    audit(principal, "schedule.update", schedule_id=schedule_id)
    return changed


@router.post("/{schedule_id}/pause", response_model=ScheduleRead, responses=PROBLEMS)
def pause_schedule(schedule_id: uuid.UUID, principal: Writer) -> ScheduleRead:
    paused = schedules.pause(principal.tenant_id, schedule_id)
    audit(principal, "schedule.pause", schedule_id=schedule_id)
    return paused


@router.post("/{schedule_id}/resume", response_model=ScheduleRead, responses=PROBLEMS)
def resume_schedule(schedule_id: uuid.UUID, principal: Writer) -> ScheduleRead:
    resumed = schedules.resume(principal.tenant_id, schedule_id)
    audit(principal, "schedule.resume", schedule_id=schedule_id)
    return resumed


@router.post("/{schedule_id}/archive", response_model=ScheduleRead, responses=PROBLEMS)
def archive_schedule(schedule_id: uuid.UUID, principal: Writer) -> ScheduleRead:
    """Retire it: it fires nothing and leaves the default list; resume brings it back."""
    archived = schedules.archive(principal.tenant_id, schedule_id)
    audit(principal, "schedule.archive", schedule_id=schedule_id)
    return archived


@router.post(
    "/{schedule_id}/run-now", status_code=201, response_model=EnqueuedOut, responses=PROBLEMS
)
def run_schedule_now(schedule_id: uuid.UUID, principal: Writer) -> EnqueuedOut:
    """One job now, beside the slots (409 unless the schedule is active)."""
    job = schedules.run_now(principal.tenant_id, schedule_id, actor=principal.actor)
    audit(principal, "schedule.run_now", schedule_id=schedule_id, job_id=job.id)
    return EnqueuedOut(
        id=job.id, type=job.type, status=job.status, run_at=job.run_at, created=job.created
    )


@router.get("/{schedule_id}/upcoming", response_model=UpcomingOut, responses=PROBLEMS)
def upcoming_slots(schedule_id: uuid.UUID, principal: Caller, count: int = 10) -> UpcomingOut:
    """The next ``count`` slots (UTC), or those a resume now would fire."""
    return UpcomingOut(slots=schedules.upcoming(principal.tenant_id, schedule_id, count))
