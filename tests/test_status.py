"""Status queries: pagination under concurrent inserts, filters, counts, and index use."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.db.models import JobStatus
from pgjobs.producer import (
    InvalidOption,
    JobRequest,
    count_jobs_by_status,
    enqueue_many,
    flush,
    list_jobs,
)
from pgjobs.producer.status import JobFilters, list_jobs_query

pytestmark = pytest.mark.usefixtures("jobs_env")


def _requests(tenant_id: uuid.UUID, n: int, team: str = "T") -> list[JobRequest]:
    cred = str(uuid.uuid4())
    payload = {"credential_id": cred, "season": 2026, "team": team}
    return [JobRequest("scheduled_preview", payload, tenant_id) for _ in range(n)]


_big_tenants: dict[str, uuid.UUID] = {}


@pytest.fixture
def big_tenant(use_session_db: str) -> uuid.UUID:
    """A tenant with 10,000 jobs (made once per test database)."""
    from helpers import make_tenant

    if use_session_db in _big_tenants:
        return _big_tenants[use_session_db]
    tenant = _big_tenants[use_session_db] = make_tenant()
    for _ in range(10):
        enqueue_many(_requests(tenant, 1000))
    with transaction() as conn:
        conn.execute(text("ANALYZE content_jobs"))
        conn.execute(text("ANALYZE job_events"))
    return tenant


def test_pagination_over_10000_jobs_with_concurrent_inserts(big_tenant: uuid.UUID) -> None:
    with transaction() as conn:
        before = {
            r[0]
            for r in conn.execute(
                text("select id from content_jobs where tenant_id = :t"), {"t": big_tenant}
            )
        }
    assert len(before) >= 10_000
    stop = threading.Event()

    def insert_meanwhile() -> None:
        while not stop.is_set():
            enqueue_many(_requests(big_tenant, 20, team="late"))

    writer = threading.Thread(target=insert_meanwhile)
    writer.start()
    seen: list[int] = []
    cursor = None
    try:
        while True:
            page = list_jobs(big_tenant, cursor=cursor, limit=500)
            seen.extend(j.id for j in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "a job was repeated"
    assert before <= set(seen), "a job was skipped"
    assert seen == sorted(seen, reverse=True)


def test_filters_and_counts(tenant_id: uuid.UUID) -> None:
    jobs = enqueue_many(_requests(tenant_id, 5))
    assert flush(timeout=10)  # marked queued
    assert [j.id for j in list_jobs(tenant_id, status=JobStatus.QUEUED).items] == sorted(
        (j.id for j in jobs), reverse=True
    )
    assert list_jobs(tenant_id, status=JobStatus.FAILED).items == []
    assert len(list_jobs(tenant_id, status="queued").items) == 5
    assert len(list_jobs(tenant_id, status=["queued", JobStatus.ACTIVE]).items) == 5
    with pytest.raises(InvalidOption, match="status"):
        list_jobs(tenant_id, status="bogus")
    assert list_jobs(tenant_id, type="mcp_ping").items == []
    oldest = list_jobs(tenant_id, order="oldest", limit=2)
    assert [j.id for j in oldest.items] == [jobs[0].id, jobs[1].id]
    assert oldest.next_cursor is not None
    counts = count_jobs_by_status(tenant_id)
    assert counts[JobStatus.QUEUED] == 5 and counts[JobStatus.FAILED] == 0
    assert set(counts) == set(JobStatus)


def test_page_size_cap_and_bad_cursor(tenant_id: uuid.UUID) -> None:
    with pytest.raises(InvalidOption, match="limit"):
        list_jobs(tenant_id, limit=100_000)
    with pytest.raises(InvalidOption, match="cursor"):
        list_jobs(tenant_id, cursor="not-a-cursor")


def _plan(sql: str, params: dict[str, object]) -> str:
    with transaction() as conn:
        rows = conn.execute(text("EXPLAIN " + sql), params).all()
    return "\n".join(r[0] for r in rows)


def test_query_plans_use_indexes(big_tenant: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """A small tenant beside a big one: its list must come from a tenant index, not from
    walking everyone's jobs; the big tenant's from an index too, never a sort of all rows."""
    from sqlalchemy.dialects import postgresql

    enqueue_many(_requests(tenant_id, 5))

    job_id = list_jobs(big_tenant, limit=1).items[0].id
    get_plan = _plan(
        "select * from content_jobs where id = :id and tenant_id = :t",
        {"id": job_id, "t": big_tenant},
    )
    assert "Index Scan using" in get_plan and "Seq Scan" not in get_plan, get_plan

    for tenant in (tenant_id, big_tenant):
        for filters in (JobFilters(), JobFilters(status=JobStatus.QUEUED)):
            query = list_jobs_query(tenant, filters, cursor=None, limit=50, order="newest")
            dialect = postgresql.dialect()
            sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            plan = _plan(sql, {})
            assert "Seq Scan" not in plan and "Sort" not in plan, plan
            if tenant == tenant_id:
                assert "ix_content_jobs_tenant_id" in plan, plan

    events_plan = _plan(
        "select * from job_events where job_id = :id and tenant_id = :t and id > 0 "
        "order by id limit 101",
        {"id": job_id, "t": big_tenant},
    )
    assert "ix_job_events_job_id_id" in events_plan, events_plan
    assert "Seq Scan" not in events_plan


def test_wait_for_job_returns_the_finished_job_or_times_out(tenant_id: uuid.UUID) -> None:
    from pgjobs.producer import cancel_job
    from pgjobs.producer.wait import wait_for_job

    [job] = enqueue_many(_requests(tenant_id, 1))
    with pytest.raises(TimeoutError, match=f"job {job.id} is still (pending|queued) after 0.2 s"):
        wait_for_job(tenant_id, job.id, timeout=0.2, interval=0.05)
    timer = threading.Timer(0.3, cancel_job, args=(tenant_id, job.id))
    timer.start()
    try:
        done = wait_for_job(tenant_id, job.id, timeout=30, interval=0.05)
    finally:
        timer.join()
    assert done.status is JobStatus.CANCELLED
    for bad in ({"timeout": float("nan")}, {"timeout": -1}, {"interval": "1"}, {"timeout": True}):
        with pytest.raises(InvalidOption):
            wait_for_job(tenant_id, job.id, **bad)  # type: ignore[arg-type]
