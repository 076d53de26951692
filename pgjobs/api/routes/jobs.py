"""``/v1/jobs``: enqueue (one or a batch), read, list, events, counts, cancel, retry, run now,
and bulk cancel and retry (by ids or by filter, with a count first).

Every handler is a thin shell over ``pgjobs.aio`` with the token's tenant and the token as
the actor: validation, statements and errors are the producer's own.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from pgjobs import aio
from pgjobs.api.audit import audit
from pgjobs.api.auth import Caller, Writer
from pgjobs.api.schemas import (
    BATCH_MAX,
    BatchCreate,
    BatchOut,
    BulkCancelIn,
    BulkCountIn,
    BulkCountOut,
    BulkOut,
    BulkSelect,
    CancelIn,
    CancelOut,
    EnqueuedOut,
    JobCreate,
    JobQuery,
    PageOut,
)
from pgjobs.auth.store import Principal
from pgjobs.db.models import JobStatus
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.producer.control import BulkResult, select_jobs
from pgjobs.producer.enqueue import EnqueuedJob, JobRequest
from pgjobs.producer.status import Page

R = TypeVar("R", bound=BaseModel)
router = APIRouter(prefix="/v1", tags=["jobs"])
batch_router = APIRouter(prefix="/v1", tags=["jobs"])
"""Its own router: the app gives it a larger body limit (``JOBS_API_MAX_BATCH_BODY_BYTES``)."""


PROBLEMS: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid token (problem details)"},
    403: {"description": "The token lacks the scope"},
    404: {"description": "No such job for this tenant"},
    429: {"description": "Rate limit exceeded"},
}


def json_response(model: BaseModel, status_code: int = 200, **headers: str) -> Response:
    """A model as JSON, serialised by pydantic once (no second validation by FastAPI)."""
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers or None,
    )


def _out(job: EnqueuedJob) -> EnqueuedOut:
    return EnqueuedOut(
        id=job.id, type=job.type, status=job.status, run_at=job.run_at, created=job.created
    )


def _page(page: Page[R], shape: type[R]) -> Response:
    return json_response(PageOut[shape](items=page.items, next_cursor=page.next_cursor))  # type: ignore[valid-type]


@router.post(
    "/jobs",
    status_code=201,
    response_model=EnqueuedOut,
    responses={200: {"description": "The Idempotency-Key matched an existing job"}},
)
async def create_job(
    body: JobCreate,
    principal: Writer,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Enqueue one job. A repeat of an ``Idempotency-Key`` answers 200 with the job it made."""
    job = await aio.enqueue(
        body.type,
        body.payload,
        tenant_id=principal.tenant_id,
        idempotency_key=idempotency_key,
        delay=body.delay,
        run_at=body.run_at,
        priority=body.priority,
        max_attempts=body.max_attempts,
        actor=principal.actor,
    )
    return json_response(_out(job), 201 if job.created else 200, Location=f"/v1/jobs/{job.id}")


@batch_router.post(
    "/jobs/batch",
    status_code=201,
    response_model=BatchOut,
    description=f"Enqueue up to {BATCH_MAX} jobs, all or nothing. 201 when any job was "
    "created, 200 when every one matched an existing job by idempotency key.",
)
async def create_jobs(body: BatchCreate, principal: Writer) -> Response:
    requests = [
        JobRequest(
            type=item.type,
            payload=item.payload,
            tenant_id=principal.tenant_id,
            idempotency_key=item.idempotency_key,
            delay=item.delay,
            run_at=item.run_at,
            priority=item.priority,
            max_attempts=item.max_attempts,
        )
        for item in body.jobs
    ]
    jobs = await aio.enqueue_many(requests, actor=principal.actor)
    created = any(job.created for job in jobs)
    return json_response(BatchOut(jobs=[_out(job) for job in jobs]), 201 if created else 200)


# The bulk routes come before /jobs/{job_id}/...: "bulk" is not a job id.


@router.post("/jobs/bulk/count", response_model=BulkCountOut)
async def bulk_count(body: BulkCountIn, principal: Caller) -> BulkCountOut:
    """How many of the selected jobs the action would move now, and the newest one's id: pass
    it back as ``max_id`` so that the action leaves jobs created after the count alone."""
    selection = select_jobs(principal.tenant_id, **body.options())
    counted = await aio.count_selected(selection, body.action)
    return BulkCountOut(jobs=counted.jobs, max_id=counted.max_id)


@router.post("/jobs/bulk/cancel", response_model=BulkOut)
async def bulk_cancel(body: BulkCancelIn, principal: Writer) -> BulkOut:
    """Cancel every selected job that has not ended (running ones are asked to stop), in
    statements of 1,000 jobs; at most 10,000 a call (``more``: call again)."""
    selection = select_jobs(principal.tenant_id, **body.options())
    done = await aio.cancel_jobs(selection, reason=body.reason, actor=principal.actor)
    return _bulk_out(principal, done)


@router.post("/jobs/bulk/retry", response_model=BulkOut)
async def bulk_retry(body: BulkSelect, principal: Writer) -> BulkOut:
    """One more attempt for every selected failed or cancelled job (others are left alone)."""
    selection = select_jobs(principal.tenant_id, **body.options())
    return _bulk_out(principal, await aio.retry_jobs(selection, actor=principal.actor))


def _bulk_out(principal: Principal, done: BulkResult) -> BulkOut:
    audit(principal, f"jobs.{done.action}", jobs=len(done.job_ids))
    return BulkOut(
        action=done.action,
        job_ids=done.job_ids,
        stop_requested=done.stop_requested,
        more=done.more,
    )


@router.get("/jobs/{job_id}", response_model=JobRead, responses=PROBLEMS)
async def read_job(job_id: int, principal: Caller) -> Response:
    """One job: status, progress, result, last error."""
    return json_response(await aio.get_job(principal.tenant_id, job_id))


@router.get("/jobs", response_model=PageOut[JobRead])
async def list_jobs(principal: Caller, query: Annotated[JobQuery, Query()]) -> Response:
    """The tenant's jobs, newest first; repeat ``status`` to give several."""
    options = query.model_dump(exclude_unset=True)
    return _page(await aio.list_jobs(principal.tenant_id, **options), JobRead)


@router.get("/jobs/{job_id}/events", response_model=PageOut[JobEventRead], responses=PROBLEMS)
async def job_events(
    job_id: int, principal: Caller, cursor: str | None = None, limit: int = 100
) -> Response:
    """A job's events in order, from ``cursor``."""
    page = await aio.get_job_events(principal.tenant_id, job_id, cursor=cursor, limit=limit)
    return _page(page, JobEventRead)


@router.get("/counts", response_model=dict[JobStatus, int])
async def counts(principal: Caller, type: str | None = None) -> dict[JobStatus, int]:
    """How many of the tenant's jobs are in each status."""
    return await aio.count_jobs_by_status(principal.tenant_id, type=type)


@router.post("/jobs/{job_id}/cancel", response_model=CancelOut, responses=PROBLEMS)
async def cancel_job(job_id: int, principal: Writer, body: CancelIn | None = None) -> CancelOut:
    """Cancel a waiting job at once, or ask a running one to stop at its next checkpoint."""
    result = await aio.cancel_job(
        principal.tenant_id,
        job_id,
        reason=body.reason if body is not None else None,
        actor=principal.actor,
    )
    audit(principal, "job.cancel", job_id=job_id, status=result.status.value)
    return CancelOut(
        job_id=result.job_id, status=result.status, stop_requested=result.stop_requested
    )


@router.post("/jobs/{job_id}/retry", response_model=JobRead, responses=PROBLEMS)
async def retry_job(job_id: int, principal: Writer) -> Response:
    """One more attempt for a failed or cancelled job (409 otherwise)."""
    await aio.retry_job(principal.tenant_id, job_id, actor=principal.actor)
    audit(principal, "job.retry", job_id=job_id)
    return json_response(await aio.get_job(principal.tenant_id, job_id))


@router.post("/jobs/{job_id}/run-now", response_model=JobRead, responses=PROBLEMS)
async def run_job_now(job_id: int, principal: Writer) -> Response:
    """Run a delayed job now (409 when it is not delayed: already due, running or ended)."""
    await aio.run_job_now(principal.tenant_id, job_id, actor=principal.actor)
    audit(principal, "job.run_now", job_id=job_id)
    return json_response(await aio.get_job(principal.tenant_id, job_id))
