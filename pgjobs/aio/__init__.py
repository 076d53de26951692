"""The producer API for asyncio applications: the same functions as ``pgjobs``, awaitable.

::

    from pgjobs import aio

    job = await aio.enqueue("thumbnail", {"image_id": 42}, tenant_id=tenant.id)
    done = await aio.wait_for(job, timeout=30)

Nothing here is a second implementation. Each function runs the producer's own plan
(pgjobs/db/statements.py): the same argument checks, the same statements, the same reading of
their rows and the same typed errors and results as ``pgjobs.enqueue``, ``pgjobs.get_job``...
Only the I/O differs: a psycopg ``AsyncConnection`` from this loop's pool, ``redis.asyncio``
for the messages. :func:`wait_for` listens through the process's event feed
(pgjobs/aio/feed.py), the reader the HTTP API's event streams use.

There is no ``session`` argument: a job enqueued here is committed at once (an async
application that needs its own transaction can use the threaded ``enqueue`` with a
``Session`` in a worker thread).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from typing_extensions import Unpack

from pgjobs.aio.feed import TERMINAL_EVENTS, get_feed, stop_feed
from pgjobs.aio.redis_client import close_redis
from pgjobs.aio.sending import send_and_mark
from pgjobs.db.async_pool import close_pool, connection
from pgjobs.db.jobs.state_machine import BulkCount, Inserted, JobSelection
from pgjobs.db.models import TERMINAL_STATUSES, JobStatus
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.db.statements import Plan, arun
from pgjobs.producer.combine import AsyncCombiner
from pgjobs.producer.control import (
    BulkAction,
    BulkResult,
    CancelResult,
    RetryResult,
    RunNowResult,
    cancel_jobs_plan,
    cancel_plan,
    count_selected_plan,
    retry_jobs_plan,
    retry_plan,
    run_job_now_plan,
)
from pgjobs.producer.enqueue import (
    COMBINING,
    EnqueuedJob,
    JobOptions,
    JobRequest,
    Prepared,
    insert_plan,
    joined,
    outgoing_of,
    prepare_requests,
    results,
    split,
)
from pgjobs.producer.job_types import JobType
from pgjobs.producer.quotas import quota_refusals
from pgjobs.producer.status import (
    ListOptions,
    Page,
    count_jobs_plan,
    get_job_events_plan,
    get_job_plan,
    list_jobs_plan,
)

__all__ = [
    "BulkResult",
    "CancelResult",
    "EnqueuedJob",
    "JobRequest",
    "RetryResult",
    "RunNowResult",
    "aclose",
    "cancel_job",
    "cancel_jobs",
    "count_jobs_by_status",
    "count_selected",
    "enqueue",
    "enqueue_many",
    "get_job",
    "get_job_events",
    "list_jobs",
    "retry_job",
    "retry_jobs",
    "run_job_now",
    "wait_for",
]

T = TypeVar("T")

RECHECK_SECONDS = 5.0
""":func:`wait_for` reads the job again at least this often, whatever the feed says."""


async def _run(plan: Plan[T]) -> T:
    async with connection() as conn:
        return await arun(conn, plan)


async def enqueue(
    type: str | JobType[Any],
    payload: Mapping[str, Any] | BaseModel,
    *,
    tenant_id: uuid.UUID,
    actor: str | None = None,
    **options: Unpack[JobOptions],
) -> EnqueuedJob:
    """``pgjobs.enqueue``, awaitable (committed at once)."""
    request = JobRequest(type, payload, tenant_id, **options)
    return (await enqueue_many([request], actor=actor))[0]


async def enqueue_many(
    requests: Sequence[JobRequest], *, actor: str | None = None
) -> list[EnqueuedJob]:
    """``pgjobs.enqueue_many``, awaitable: all or nothing, one statement, one Redis round
    trip."""
    prepared = prepare_requests(requests, actor)
    if not prepared:
        return []
    return results(prepared, await _combined(prepared))


async def _write(calls: Sequence[Prepared]) -> Inserted:
    """The outbox INSERT of calls of this loop, one statement for all of them."""
    with quota_refusals():
        return await _run(insert_plan(joined(calls)))


async def _finish(calls: Sequence[Prepared], inserted: Inserted) -> list[Inserted]:
    """After :func:`_write` committed: every call's messages in one send, and each call's
    part of what was written."""
    parts = split(calls, inserted)
    await send_and_mark(outgoing_of(calls, parts))
    return parts


_combined: AsyncCombiner[Prepared, Inserted, Inserted] = AsyncCombiner(_write, _finish, COMBINING)
"""The calls of one event loop made while its writes are in flight share a write, as the
threads of a process do (pgjobs/producer/combine.py)."""


async def get_job(tenant_id: uuid.UUID, job_id: int) -> JobRead:
    """``pgjobs.get_job``, awaitable."""
    return await _run(get_job_plan(tenant_id, job_id))


async def list_jobs(tenant_id: uuid.UUID, **options: Unpack[ListOptions]) -> Page[JobRead]:
    """``pgjobs.list_jobs``, awaitable."""
    return await _run(list_jobs_plan(tenant_id, **options))


async def get_job_events(
    tenant_id: uuid.UUID, job_id: int, *, cursor: str | None = None, limit: int = 100
) -> Page[JobEventRead]:
    """``pgjobs.get_job_events``, awaitable."""
    return await _run(get_job_events_plan(tenant_id, job_id, cursor=cursor, limit=limit))


async def count_jobs_by_status(
    tenant_id: uuid.UUID, *, type: str | None = None
) -> dict[JobStatus, int]:
    """``pgjobs.count_jobs_by_status``, awaitable."""
    return await _run(count_jobs_plan(tenant_id, type=type))


async def cancel_job(
    tenant_id: uuid.UUID, job_id: int, *, reason: str | None = None, actor: str | None = None
) -> CancelResult:
    """``pgjobs.cancel_job``, awaitable."""
    return await _run(cancel_plan(tenant_id, job_id, reason=reason, actor=actor))


async def retry_job(tenant_id: uuid.UUID, job_id: int, *, actor: str | None = None) -> RetryResult:
    """``pgjobs.retry_job``, awaitable."""
    outgoing, result = await _run(retry_plan(tenant_id, job_id, actor=actor))
    await send_and_mark([outgoing])
    return result


async def count_selected(selection: JobSelection, action: BulkAction) -> BulkCount:
    """``pgjobs.producer.control.count_selected``, awaitable."""
    return await _run(count_selected_plan(selection, action))


async def cancel_jobs(
    selection: JobSelection, *, reason: str | None = None, actor: str | None = None
) -> BulkResult:
    """``pgjobs.producer.control.cancel_jobs``, awaitable."""
    return await _run(cancel_jobs_plan(selection, reason=reason, actor=actor))


async def retry_jobs(selection: JobSelection, *, actor: str | None = None) -> BulkResult:
    """``pgjobs.producer.control.retry_jobs``, awaitable."""
    outgoing, result = await _run(retry_jobs_plan(selection, actor=actor))
    await send_and_mark(outgoing)
    return result


async def run_job_now(
    tenant_id: uuid.UUID, job_id: int, *, actor: str | None = None
) -> RunNowResult:
    """``pgjobs.producer.control.run_job_now``, awaitable."""
    outgoing, result = await _run(run_job_now_plan(tenant_id, job_id, actor=actor))
    await send_and_mark([outgoing])
    return result


class JobRef(Protocol):
    """What :func:`wait_for` needs of a job: an ``EnqueuedJob`` or a ``JobRead``."""

    @property
    def id(self) -> int: ...

    @property
    def tenant_id(self) -> uuid.UUID: ...


async def wait_for(job: JobRef, timeout: float | None = None) -> JobRead:
    """The job once it is terminal (succeeded, failed or cancelled). TimeoutError after
    ``timeout`` seconds; JobNotFound for a missing job.

    Listens through the process's event feed (no database connection of its own while it
    waits) and reads the job again on each terminal event, on a gap in the feed, and at least
    every :data:`RECHECK_SECONDS`.
    """
    tenant_id, job_id = job.tenant_id, job.id
    feed = get_feed()
    async with asyncio.timeout(timeout), feed.subscribe(job_id) as subscription:
        while True:
            current = await get_job(tenant_id, job_id)
            if current.status in TERMINAL_STATUSES:
                return current
            while True:
                await subscription.wait(RECHECK_SECONDS)
                events, lagged = subscription.take()
                if lagged or not events or any(e.event_type in TERMINAL_EVENTS for e in events):
                    break


async def aclose() -> None:
    """Close this loop's database pool, Redis client and event feed (an application's
    shutdown; the next call opens new ones)."""
    await stop_feed()
    await close_pool()
    await close_redis()
