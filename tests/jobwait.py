"""Waiting for jobs in tests, and checking event histories against the state machine."""

from __future__ import annotations

import time
import uuid

from db.models import EventType, JobStatus
from db.models.job import TERMINAL_STATUSES
from db.schemas.job import JobEventRead, JobRead
from producer import get_job, get_job_events


def wait_for(
    tenant_id: uuid.UUID,
    job_id: int,
    statuses: frozenset[JobStatus] = TERMINAL_STATUSES,
    timeout: float = 20.0,
) -> JobRead:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(tenant_id, job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {timeout}s")
        time.sleep(0.05)


def events_of(tenant_id: uuid.UUID, job_id: int) -> list[JobEventRead]:
    events: list[JobEventRead] = []
    cursor = None
    while True:
        page = get_job_events(tenant_id, job_id, cursor=cursor, limit=500)
        events.extend(page.items)
        if page.next_cursor is None:
            return events
        cursor = page.next_cursor


def types_of(tenant_id: uuid.UUID, job_id: int) -> list[EventType]:
    return [e.event_type for e in events_of(tenant_id, job_id)]


# What each event says about the status after it (progress changes nothing).
_AFTER = {
    EventType.ENQUEUED: JobStatus.QUEUED,
    EventType.STARTED: JobStatus.ACTIVE,
    EventType.RETRY: JobStatus.QUEUED,
    EventType.RESCUED: JobStatus.QUEUED,
    EventType.COMPLETED: JobStatus.SUCCEEDED,
    EventType.FAILED: JobStatus.FAILED,
    EventType.CANCELLED: JobStatus.CANCELLED,
}
_LEGAL_FROM: dict[EventType, set[JobStatus | None]] = {
    EventType.ENQUEUED: {None, JobStatus.QUEUED},  # first event, or a relay re-send
    EventType.STARTED: {JobStatus.QUEUED},
    EventType.PROGRESS: {JobStatus.ACTIVE},
    EventType.RETRY: {JobStatus.ACTIVE, JobStatus.FAILED, JobStatus.CANCELLED},
    EventType.RESCUED: {JobStatus.ACTIVE},
    EventType.COMPLETED: {JobStatus.ACTIVE},
    EventType.FAILED: {JobStatus.ACTIVE},
    EventType.CANCELLED: {JobStatus.QUEUED, JobStatus.ACTIVE},
}


def assert_legal_history(types: list[EventType]) -> JobStatus | None:
    """Replay an event history through the state machine; return the final status."""
    state: JobStatus | None = None
    for event in types:
        assert state in _LEGAL_FROM[event], f"illegal {event} from {state} in {types}"
        state = _AFTER.get(event, state)
    return state
