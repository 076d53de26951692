"""``pgjobs.aio``: the producer's functions awaited, against real PostgreSQL and Redis, and
the event feed they (and the API's streams) listen through."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from helpers import job_ids_in_redis
from pydantic import BaseModel
from sqlalchemy import text

import pgjobs
from pgjobs import aio
from pgjobs.aio import feed as feed_module
from pgjobs.aio.feed import EventFeed
from pgjobs.db.engine import reset_engine, session_scope, transaction
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import JobRequest, enqueue, flush
from pgjobs.producer.errors import (
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    UnknownJobType,
    UnknownTenant,
)
from pgjobs.producer.job_types import job_type
from pgjobs.settings import get_settings
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

pytestmark = pytest.mark.usefixtures("jobs_env")
T = TypeVar("T")


class Nap(BaseModel):
    ms: float = 0
    fail: bool = False


nap_type = job_type("aio_nap", Nap, queue="aioq", max_attempts=1)


@handles(nap_type)
def nap(ctx: JobContext[Nap]) -> dict[str, Any]:
    import time

    time.sleep(ctx.payload.ms / 1000)
    if ctx.payload.fail:
        raise RuntimeError("asked to fail")
    return {"slept": ctx.payload.ms}


def arun(make: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine in a fresh loop, closing that loop's pool, client and feed after."""

    async def whole() -> T:
        try:
            return await make()
        finally:
            await aio.aclose()

    return asyncio.run(whole())


def test_same_answers_as_the_threaded_api(tenant_id: uuid.UUID, jobs_env: str) -> None:
    async def scenario() -> None:
        made = await aio.enqueue(
            "aio_nap", {"ms": 1}, tenant_id=tenant_id, idempotency_key="k1", actor="token:x"
        )
        assert made.created and made.status is JobStatus.PENDING
        again = await aio.enqueue("aio_nap", {"ms": 1}, tenant_id=tenant_id, idempotency_key="k1")
        assert again.id == made.id and not again.created
        assert await aio.get_job(tenant_id, made.id) == pgjobs.get_job(tenant_id, made.id)
        page = await aio.list_jobs(tenant_id, idempotency_key="k1", limit=5)
        assert [j.id for j in page.items] == [made.id]
        assert (await aio.list_jobs(tenant_id, status="succeeded")).items == []
        events = await aio.get_job_events(tenant_id, made.id)
        assert events == pgjobs.get_job_events(tenant_id, made.id)
        assert events.items[0].data["actor"] == "token:x"
        counts = await aio.count_jobs_by_status(tenant_id)
        assert counts == pgjobs.count_jobs_by_status(tenant_id)
        many = await aio.enqueue_many(
            [JobRequest("aio_nap", {}, tenant_id, delay=60) for _ in range(3)]
        )
        assert len({j.id for j in many}) == 3
        cancelled = await aio.cancel_job(tenant_id, many[0].id, reason="no", actor="token:y")
        assert cancelled.status is JobStatus.CANCELLED
        last = (await aio.get_job_events(tenant_id, many[0].id)).items[-1]
        assert last.data == {"reason": "no", "while_running": False, "actor": "token:y"}
        retried = await aio.retry_job(tenant_id, many[0].id, actor="token:z")
        assert retried.job_id == many[0].id and retried.status is JobStatus.PENDING
        with pytest.raises(InvalidTransition):
            await aio.retry_job(tenant_id, many[1].id)

    arun(scenario)
    flush(timeout=10)
    assert pgjobs.get_job(tenant_id, pgjobs.list_jobs(tenant_id, limit=1).items[0].id)
    assert len(job_ids_in_redis_any(jobs_env)) >= 2


def job_ids_in_redis_any(namespace: str) -> list[int]:
    import redis

    from pgjobs.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url or "")
    try:
        return job_ids_in_redis(client, namespace, "aioq")
    finally:
        client.close()


def test_same_errors_and_nothing_written(tenant_id: uuid.UUID, other_tenant: uuid.UUID) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidPayload) as caught:
            await aio.enqueue_many(
                [
                    JobRequest("aio_nap", {}, tenant_id),
                    JobRequest("aio_nap", {"ms": "x"}, tenant_id),
                ]
            )
        assert caught.value.index == 1
        with pytest.raises(UnknownJobType):
            await aio.enqueue("nope", {}, tenant_id=tenant_id)
        with pytest.raises(UnknownTenant):
            await aio.enqueue("aio_nap", {}, tenant_id=uuid.uuid4())
        assert (await aio.list_jobs(tenant_id)).items == []
        theirs = await aio.enqueue("aio_nap", {}, tenant_id=other_tenant, delay=60)
        for call in (
            aio.get_job(tenant_id, theirs.id),
            aio.get_job_events(tenant_id, theirs.id),
            aio.cancel_job(tenant_id, theirs.id),
            aio.retry_job(tenant_id, theirs.id),
        ):
            with pytest.raises(JobNotFound):
                await call

    arun(scenario)


def test_wait_for_returns_when_terminal(tenant_id: uuid.UUID, worker_factory: Any) -> None:
    worker_factory(threads=2)

    async def scenario() -> None:
        quick = await aio.enqueue("aio_nap", {"ms": 200}, tenant_id=tenant_id)
        done = await aio.wait_for(quick, timeout=20)
        assert done.status is JobStatus.SUCCEEDED and done.result == {"slept": 200}
        failing = await aio.enqueue("aio_nap", {"fail": True}, tenant_id=tenant_id)
        assert (await aio.wait_for(failing, timeout=20)).status is JobStatus.FAILED
        assert (await aio.wait_for(done, timeout=1)).status is JobStatus.SUCCEEDED  # at once
        later = await aio.enqueue("aio_nap", {}, tenant_id=tenant_id, delay=600)
        with pytest.raises(TimeoutError):
            await aio.wait_for(later, timeout=0.3)

    arun(scenario)


def test_feed_delivers_an_event_committed_after_a_later_one(tenant_id: uuid.UUID) -> None:
    """An event id taken by a transaction that commits late (a gap) is still delivered once
    it commits; every subscriber of a job gets its events, others' are not sent to it."""

    async def scenario() -> None:
        feed = EventFeed(poll_seconds=0.02, gap_seconds=30)
        try:
            await feed.ready()
            with session_scope() as session:  # holds its enqueued event's id, uncommitted
                early = enqueue("aio_nap", {}, tenant_id=tenant_id, session=session, delay=60)
                late = enqueue("aio_nap", {}, tenant_id=tenant_id, delay=60)  # commits first
                async with feed.subscribe(early.id) as first, feed.subscribe(late.id) as second:
                    await second.wait(5)
                    got, lagged = second.take()
                    assert [e.job_id for e in got] == [late.id] and not lagged
                    await asyncio.to_thread(session.commit)
                    await first.wait(5)
                    got, lagged = first.take()
                    assert [(e.job_id, e.event_type) for e in got] == [
                        (early.id, EventType.ENQUEUED)
                    ]
        finally:
            await feed.stop()

    arun(scenario)


def test_a_slow_subscriber_lags_alone(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "SUBSCRIBER_BUFFER", 3)

    async def scenario() -> None:
        feed = EventFeed(poll_seconds=0.02)
        job = await aio.enqueue("aio_nap", {}, tenant_id=tenant_id, delay=60)
        try:
            async with feed.subscribe(job.id) as slow, feed.subscribe(job.id) as fast:
                for _ in range(5):  # five events for the job, each read by the feed
                    await aio.cancel_job(tenant_id, job.id)
                    await aio.retry_job(tenant_id, job.id)
                    await fast.wait(5)
                    got, lagged = fast.take()
                    assert got and not lagged
                events, lagged = slow.take()
                assert lagged  # it re-reads the table; what came after the overflow is kept
                assert len(events) < 10
        finally:
            await feed.stop()

    arun(scenario)


def test_one_connection_for_any_number_of_waiters(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty waiters hold no connection each: the pools (2 connections each here) and the
    feed's reader are all there is."""
    monkeypatch.setenv("JOBS_DB_POOL_SIZE", "2")
    monkeypatch.setenv("JOBS_DB_MAX_OVERFLOW", "0")
    get_settings.cache_clear()
    reset_engine()

    async def scenario() -> int:
        jobs = [await aio.enqueue("aio_nap", {}, tenant_id=tenant_id, delay=60) for _ in range(30)]
        waiters = [asyncio.create_task(aio.wait_for(j, timeout=30)) for j in jobs]
        await asyncio.sleep(0.5)
        with transaction() as conn:  # the feed's reader and the pool's, not one per waiter
            count = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgjobs' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        for job in jobs:
            await aio.cancel_job(tenant_id, job.id)
        done = await asyncio.gather(*waiters)
        assert all(j.status is JobStatus.CANCELLED for j in done)
        return int(count)

    assert arun(scenario) <= 2 + 2 + 1
