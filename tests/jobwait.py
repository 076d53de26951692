"""Waiting for jobs in tests, and checking event histories against the state machine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import EventType, JobStatus
from pgjobs.db.models.job import TERMINAL_STATUSES
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.producer import get_job, get_job_events


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


# The status an event records (given the status before it); progress records none.
_SETS = {
    EventType.STARTED: JobStatus.ACTIVE,
    EventType.RESCUED: JobStatus.QUEUED,
    EventType.COMPLETED: JobStatus.SUCCEEDED,
    EventType.WAITING: JobStatus.WAITING,
    EventType.FAILED: JobStatus.FAILED,
    EventType.CANCELLED: JobStatus.CANCELLED,
}


def _after(event: EventType, state: JobStatus | None) -> JobStatus | None:
    if event is EventType.ENQUEUED:
        return JobStatus.PENDING if state is None else JobStatus.QUEUED  # first, or a re-send
    if event is EventType.RETRY:  # a backoff retry, or a manual retry of a finished job
        return JobStatus.QUEUED if state is JobStatus.ACTIVE else JobStatus.PENDING
    return _SETS.get(event, state)


def assert_legal_history(types: list[EventType]) -> JobStatus | None:
    """Replay an event history against the state machine's table of legal moves
    (``state_machine.TRANSITIONS``); return the final status.

    A pending job's message may already be out when it moves on: pending -> queued writes no
    event of its own (docs/architecture.md), so a move from pending is also judged as a move
    from queued.
    """
    state: JobStatus | None = None
    for event in types:
        new = _after(event, state)
        where = f"{event} from {state} in {types}"
        if event is EventType.PROGRESS:
            assert state is JobStatus.ACTIVE, f"illegal {where}"
        elif state is None:
            assert event is EventType.ENQUEUED, f"illegal {where}"
        elif event is EventType.ENQUEUED:  # a re-send (relay, freed slot): while waiting to run
            assert state in (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.WAITING), where
        else:
            sources = {state, JobStatus.QUEUED} if state is JobStatus.PENDING else {state}
            assert any((s, new) in sm.TRANSITIONS for s in sources), f"illegal {where}"
            # a takeover of an expired lease is recorded as rescued, then started
            assert not (event is EventType.STARTED and state is JobStatus.ACTIVE), where
        state = new
    return JobStatus.QUEUED if state is JobStatus.PENDING else state


def status_counts(tenant_id: uuid.UUID) -> dict[str, int]:
    """The tenant's jobs counted by status (one query)."""
    from sqlalchemy import text

    from pgjobs.db.engine import autocommit

    with autocommit() as conn:
        rows = conn.execute(
            text("SELECT status, count(*) FROM content_jobs WHERE tenant_id = :t GROUP BY 1"),
            {"t": tenant_id},
        ).all()
    return {str(s): int(n) for s, n in rows}


def wait_succeeded(tenant_id: uuid.UUID, n: int, report: Callable[[], str], timeout: float) -> None:
    """Until ``n`` of the tenant's jobs have succeeded; else fail with the counts and
    ``report()`` (the processes' logs)."""
    deadline = time.monotonic() + timeout
    while (counts := status_counts(tenant_id)).get("succeeded", 0) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{counts} after {timeout:.0f}s\n{report()}")
        time.sleep(0.1)
