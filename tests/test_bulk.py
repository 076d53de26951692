"""Bulk cancel / retry (by ids or by filter, one statement per batch) and run now for a delayed
job, against real PostgreSQL and Redis: the same legal moves and events as the single calls."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as redis_lib
from helpers import job_ids_in_redis, make_tenant
from jobwait import assert_legal_history, events_of, types_of, wait_for
from pydantic import BaseModel

from pgjobs import aio
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import cancel_job, control, enqueue, flush, get_job, retry_job
from pgjobs.producer.control import (
    cancel_jobs,
    count_selected,
    retry_jobs,
    run_job_now,
    select_jobs,
)
from pgjobs.producer.errors import InvalidOption, InvalidTransition, JobNotFound
from pgjobs.producer.job_types import job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

pytestmark = pytest.mark.usefixtures("jobs_env")


class Nothing(BaseModel):
    pass


bulk_type = job_type("test_bulk", Nothing, queue="bulkq")
other_type = job_type("test_bulk_other", Nothing, queue="bulkq")


@handles(bulk_type)
def run_bulk(ctx: JobContext[Nothing]) -> dict[str, Any]:
    return {"ran": ctx.job_id}


def later(tenant: uuid.UUID, n: int, kind: Any = bulk_type) -> list[int]:
    """``n`` jobs due in an hour (pending or queued: nothing runs them in these tests)."""
    return [enqueue(kind, {}, tenant_id=tenant, delay=3600).id for _ in range(n)]


def data_of(tenant: uuid.UUID, job_id: int, kind: EventType) -> dict[str, Any]:
    return [e.data for e in events_of(tenant, job_id) if e.event_type is kind][-1]


def test_cancel_everything_a_filter_matches_up_to_the_counted_job(tenant_id: uuid.UUID) -> None:
    mine = later(tenant_id, 3)
    other_kind = later(tenant_id, 1, other_type)
    done = later(tenant_id, 1)
    cancel_job(tenant_id, done[0])  # already terminal: not counted, not touched again
    their_tenant = make_tenant()
    theirs = later(their_tenant, 2)
    selection = select_jobs(tenant_id, type="test_bulk", status=["pending", "queued", "cancelled"])
    counted = count_selected(selection, "cancel")
    assert counted.jobs == 3 and counted.max_id == max(mine)
    newer = later(tenant_id, 1)  # created after the confirmation: not part of it
    bounded = select_jobs(tenant_id, type="test_bulk", max_id=counted.max_id)
    result = cancel_jobs(bounded, reason="clean up", actor="token:me")
    assert sorted(result.job_ids) == mine and not result.stop_requested and not result.more
    for job_id in mine:
        assert get_job(tenant_id, job_id).status is JobStatus.CANCELLED
        assert assert_legal_history(types_of(tenant_id, job_id)) is JobStatus.CANCELLED
    for job_id in [*other_kind, *newer]:
        assert get_job(tenant_id, job_id).status in (JobStatus.PENDING, JobStatus.QUEUED)
    assert types_of(tenant_id, done[0]).count(EventType.CANCELLED) == 1
    for job_id in theirs:  # another tenant's jobs are out of reach
        assert get_job(their_tenant, job_id).status in (JobStatus.PENDING, JobStatus.QUEUED)


def test_bulk_events_are_the_single_calls_events(tenant_id: uuid.UUID) -> None:
    one, many = later(tenant_id, 1), later(tenant_id, 2)
    cancel_job(tenant_id, one[0], reason="why", actor="token:x")
    cancel_jobs(select_jobs(tenant_id, ids=many), reason="why", actor="token:x")
    single = data_of(tenant_id, one[0], EventType.CANCELLED)
    assert all(data_of(tenant_id, j, EventType.CANCELLED) == single for j in many)
    retry_job(tenant_id, one[0], actor="token:x")
    retry_jobs(select_jobs(tenant_id, ids=many), actor="token:x")
    single = data_of(tenant_id, one[0], EventType.RETRY)
    assert single == {"attempt": 0, "manual": True, "actor": "token:x"}
    assert all(data_of(tenant_id, j, EventType.RETRY) == single for j in many)


def test_bulk_retry_by_ids_moves_only_legal_rows_of_the_tenant(
    tenant_id: uuid.UUID, redis_client: redis_lib.Redis, jobs_env: str
) -> None:
    failed_like = later(tenant_id, 3)
    cancel_jobs(select_jobs(tenant_id, ids=failed_like))
    waiting = later(tenant_id, 1)  # not failed or cancelled: a retry is not a legal move
    theirs = later(other := make_tenant(), 1)
    cancel_job(other, theirs[0])
    result = retry_jobs(select_jobs(tenant_id, ids=[*failed_like, *waiting, *theirs]))
    assert sorted(result.job_ids) == failed_like
    assert get_job(other, theirs[0]).status is JobStatus.CANCELLED  # another tenant's: untouched
    flush(timeout=10)
    in_redis = job_ids_in_redis(redis_client, jobs_env, "bulkq")
    assert set(failed_like) <= set(in_redis)  # the new messages were sent, due now
    for job_id in failed_like:
        job = get_job(tenant_id, job_id)
        assert job.status in (JobStatus.PENDING, JobStatus.QUEUED) and job.attempts == 0
        assert assert_legal_history(types_of(tenant_id, job_id)) in (
            JobStatus.PENDING,
            JobStatus.QUEUED,
        )


def test_bulk_calls_go_in_batches_and_stop_at_their_bound(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sm, "BULK_BATCH", 3)
    monkeypatch.setattr(control, "BULK_MAX", 7)
    jobs = later(tenant_id, 10)
    first = cancel_jobs(select_jobs(tenant_id, type="test_bulk"))
    assert first.more and len(first.job_ids) in (7, 8, 9)  # whole batches, from the oldest
    assert first.job_ids == sorted(first.job_ids) and first.job_ids[0] == jobs[0]
    rest = cancel_jobs(select_jobs(tenant_id, type="test_bulk"))
    assert not rest.more and sorted(first.job_ids + rest.job_ids) == jobs
    with pytest.raises(InvalidOption):
        select_jobs(tenant_id, ids=range(1, 9))


def test_bulk_cancel_asks_running_jobs_to_stop(tenant_id: uuid.UUID) -> None:
    from pgjobs.db.engine import autocommit

    job_id = later(tenant_id, 1)[0]
    run_job_now(tenant_id, job_id)  # due now, then a worker claims it
    with autocommit() as conn:
        claimed = sm.claim(conn, job_id, tenant_id, lease_seconds=60, message_id=None, worker="w")
    assert claimed is not None
    result = cancel_jobs(select_jobs(tenant_id, ids=[job_id]))
    assert result.job_ids == [job_id] and result.stop_requested == [job_id]
    job = get_job(tenant_id, job_id)
    assert job.status is JobStatus.ACTIVE and job.cancel_requested_at is not None


def test_bad_selections_are_refused(tenant_id: uuid.UUID) -> None:
    with pytest.raises(InvalidOption):
        select_jobs(tenant_id, status="nope")
    with pytest.raises(InvalidOption):
        select_jobs(tenant_id, ids=["x"])
    with pytest.raises(InvalidOption):
        count_selected(select_jobs(tenant_id), "delete")  # type: ignore[arg-type]


def test_run_now_makes_a_delayed_job_due_and_it_runs(
    tenant_id: uuid.UUID, worker_factory: Any
) -> None:
    job = enqueue(bulk_type, {}, tenant_id=tenant_id, delay=3600)
    before = get_job(tenant_id, job.id)
    worker_factory()
    result = run_job_now(tenant_id, job.id, actor="token:op")
    assert result.job_id == job.id
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
    assert done.queue_job_id != before.queue_job_id  # the delayed message is not the one used
    resent = [e.data for e in events_of(tenant_id, job.id) if e.data.get("reason") == "run now"]
    assert resent == [
        {"type": "test_bulk", "resent": True, "reason": "run now", "actor": "token:op"}
    ]
    assert_legal_history(types_of(tenant_id, job.id))
    with pytest.raises(InvalidTransition, match="succeeded"):
        run_job_now(tenant_id, job.id)  # finished: not delayed any more


def test_run_now_is_refused_for_a_due_job_and_another_tenants(tenant_id: uuid.UUID) -> None:
    due = enqueue(bulk_type, {}, tenant_id=tenant_id)
    with pytest.raises(InvalidTransition, match="due"):
        run_job_now(tenant_id, due.id)
    delayed = later(make_tenant(), 1)[0]
    with pytest.raises(JobNotFound):
        run_job_now(tenant_id, delayed)
    assert EventType.ENQUEUED in types_of(tenant_id, due.id)
    assert len(types_of(tenant_id, due.id)) == 1  # nothing written


def test_aio_forms_run_the_same_plans(tenant_id: uuid.UUID) -> None:
    jobs = later(tenant_id, 2)

    async def go() -> tuple[int, list[int], int]:
        selection = select_jobs(tenant_id, ids=jobs)
        counted = await aio.count_selected(selection, "cancel")
        cancelled = await aio.cancel_jobs(selection, actor="token:a")
        retried = await aio.retry_jobs(selection, actor="token:a")
        assert retried.job_ids == jobs
        delayed = later(tenant_id, 1)[0]
        await aio.run_job_now(tenant_id, delayed)
        await aio.aclose()
        return counted.jobs, cancelled.job_ids, delayed

    count, cancelled, delayed = asyncio.run(go())
    assert count == 2 and cancelled == jobs
    assert get_job(tenant_id, delayed).run_at <= datetime.now(UTC)  # due now, not in an hour
