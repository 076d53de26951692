"""Daily quotas per tenant (pgjobs/producer/quotas.py): counted in the enqueue statement,
refused whole when over, exact under concurrent producers, by the database's UTC day."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel
from sqlalchemy import text

from pgjobs import aio
from pgjobs.cli.groups import JobsGroup
from pgjobs.cli.tenant_commands import tenants
from pgjobs.db.engine import transaction
from pgjobs.db.tenants import get_tenant
from pgjobs.producer import (
    InvalidOption,
    JobRequest,
    UnknownJobType,
    UnknownTenant,
    enqueue,
    enqueue_many,
)
from pgjobs.producer.errors import QuotaExceeded
from pgjobs.producer.job_types import job_type
from pgjobs.producer.quotas import (
    PRUNE_USAGE,
    QuotaUsage,
    next_midnight_utc,
    quota_usage,
    remove_quota,
    set_quota,
)

pytestmark = pytest.mark.usefixtures("jobs_env")


class Note(BaseModel):
    n: int = 0


note_type = job_type("quota_note", Note, queue="quotas", description="quota tests")
other_type = job_type("quota_other", Note, queue="quotas", description="quota tests")


def count(tenant_id: uuid.UUID, table: str = "content_jobs") -> int:
    with transaction() as conn:
        query = text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t")
        return int(conn.execute(query, {"t": tenant_id}).scalar_one())


def test_a_quota_refuses_the_job_that_would_pass_it_and_writes_nothing(
    tenant_id: uuid.UUID,
) -> None:
    usage = set_quota(tenant_id, 3)
    assert usage == QuotaUsage(job_type=None, per_day=3, used=0, resets_at=next_midnight_utc())
    for n in range(3):
        enqueue(note_type, {"n": n}, tenant_id=tenant_id)
    with pytest.raises(QuotaExceeded) as refused:
        enqueue(note_type, {"n": 3}, tenant_id=tenant_id)
    assert refused.value.resets_at == next_midnight_utc()
    assert refused.value.resets_at - datetime.now(UTC) <= timedelta(days=1)
    assert (refused.value.quota, refused.value.job_type, refused.value.count) == (3, None, 4)
    assert refused.value.tenant_id == tenant_id
    assert count(tenant_id) == 3 and count(tenant_id, "job_events") == 3
    assert quota_usage(tenant_id) == [
        QuotaUsage(job_type=None, per_day=3, used=3, resets_at=next_midnight_utc())
    ]
    assert quota_usage(tenant_id)[0].left == 0

    set_quota(tenant_id, 4)  # raised: one more today
    enqueue(note_type, {"n": 4}, tenant_id=tenant_id)
    assert remove_quota(tenant_id) and not remove_quota(tenant_id)
    enqueue(note_type, {"n": 5}, tenant_id=tenant_id)  # no quota: no limit
    assert count(tenant_id) == 5 and quota_usage(tenant_id) == []


def test_a_job_types_quota_and_the_tenants_apply_together(tenant_id: uuid.UUID) -> None:
    set_quota(tenant_id, 2, job_type="quota_note")
    set_quota(tenant_id, 3)
    enqueue(note_type, {}, tenant_id=tenant_id)
    enqueue(note_type, {}, tenant_id=tenant_id)
    with pytest.raises(QuotaExceeded) as by_type:
        enqueue(note_type, {}, tenant_id=tenant_id)
    assert (by_type.value.quota, by_type.value.job_type, by_type.value.count) == (
        2,
        "quota_note",
        3,
    )
    enqueue(other_type, {}, tenant_id=tenant_id)  # its own type has no quota; the tenant's: 3
    with pytest.raises(QuotaExceeded) as tenant_wide:
        enqueue(other_type, {}, tenant_id=tenant_id)
    assert (tenant_wide.value.quota, tenant_wide.value.job_type) == (3, None)
    used = {u.job_type: u.used for u in quota_usage(tenant_id)}
    assert used == {None: 3, "quota_note": 2}
    assert count(tenant_id) == 3


def test_a_batch_is_all_or_nothing_and_a_known_key_is_not_counted_again(
    tenant_id: uuid.UUID,
) -> None:
    set_quota(tenant_id, 3)
    batch = [JobRequest(note_type, {"n": n}, tenant_id) for n in range(4)]
    with pytest.raises(QuotaExceeded) as refused:
        enqueue_many(batch)
    assert (refused.value.quota, refused.value.count) == (3, 4)
    assert count(tenant_id) == 0 and quota_usage(tenant_id)[0].used == 0
    keyed = [JobRequest(note_type, {"n": n}, tenant_id, idempotency_key=f"k{n}") for n in range(3)]
    assert all(job.created for job in enqueue_many(keyed))
    again = enqueue_many(keyed)  # the same keys: the jobs that exist, nothing counted
    assert not any(job.created for job in again) and quota_usage(tenant_id)[0].used == 3
    with pytest.raises(QuotaExceeded):
        enqueue(note_type, {}, tenant_id=tenant_id, idempotency_key="k-new")


def test_twenty_concurrent_producers_never_pass_the_quota(tenant_id: uuid.UUID) -> None:
    limit = 57
    set_quota(tenant_id, limit)
    created, refused, errors = [], [], []
    start = threading.Barrier(20)

    def produce(worker: int) -> None:
        start.wait()
        for n in range(6):
            try:
                created.append(enqueue(note_type, {"n": worker * 100 + n}, tenant_id=tenant_id))
            except QuotaExceeded:
                refused.append(worker)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(created) == limit and len(refused) == 20 * 6 - limit
    assert count(tenant_id) == limit and quota_usage(tenant_id)[0].used == limit


def test_days_are_the_database_clocks_utc_days(tenant_id: uuid.UUID) -> None:
    set_quota(tenant_id, 1)
    with transaction() as conn:  # yesterday's count was full; so was the day before's
        conn.execute(
            text(
                "INSERT INTO tenant_quota_usage (tenant_id, day, job_type, used, per_day) "
                "SELECT :t, CAST(timezone('UTC', now()) AS date) - d, '*', 1, 1 "
                "FROM generate_series(1, 2) d"
            ),
            {"t": tenant_id},
        )
    enqueue(note_type, {}, tenant_id=tenant_id)  # today is a new day
    with pytest.raises(QuotaExceeded):
        enqueue(note_type, {}, tenant_id=tenant_id)
    with transaction() as conn:
        conn.execute(PRUNE_USAGE)
        days = conn.execute(
            text("SELECT count(*) FROM tenant_quota_usage WHERE tenant_id = :t"), {"t": tenant_id}
        ).scalar_one()
    assert days == 2  # today's and yesterday's are kept


def test_bad_quotas_are_typed_errors_and_write_nothing(tenant_id: uuid.UUID) -> None:
    with pytest.raises(InvalidOption):
        set_quota(tenant_id, -1)
    with pytest.raises(InvalidOption):
        set_quota(tenant_id, True)  # type: ignore[arg-type]
    with pytest.raises(InvalidOption):
        set_quota(tenant_id, 5, job_type="*")
    with pytest.raises(UnknownJobType):
        set_quota(tenant_id, 5, job_type="no_such_type")
    with pytest.raises(UnknownTenant):
        set_quota(uuid.uuid4(), 5)
    with pytest.raises(InvalidOption):
        quota_usage("not a tenant")  # type: ignore[arg-type]
    assert quota_usage(tenant_id) == []


def test_the_asyncio_api_is_refused_the_same_way(tenant_id: uuid.UUID) -> None:
    set_quota(tenant_id, 1)

    async def two() -> None:
        try:
            await aio.enqueue(note_type, {}, tenant_id=tenant_id)
            with pytest.raises(QuotaExceeded):
                await aio.enqueue(note_type, {}, tenant_id=tenant_id)
        finally:
            await aio.aclose()

    asyncio.run(two())
    assert count(tenant_id) == 1


def test_jobctl_tenants_sets_shows_and_removes_quotas(tenant_id: uuid.UUID) -> None:
    tenant = get_tenant(tenant_id).slug
    cli = JobsGroup("jobctl", commands=[tenants])

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["tenants", *args])

    made = run("set-quota", tenant, "--per-day", "2", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output) == {
        "job_type": None,
        "per_day": 2,
        "used": 0,
        "resets_at": next_midnight_utc().isoformat().replace("+00:00", "Z"),
        "left": 2,
    }
    assert run("set-quota", tenant, "--per-day", "5", "--job-type", "quota_note").exit_code == 0
    enqueue(note_type, {}, tenant_id=tenant_id)
    shown = run("show", tenant)
    assert shown.exit_code == 0, shown.output
    assert "quota all job types: 1 of 2 today" in shown.output
    assert "quota quota_note: 1 of 5 today" in shown.output
    bad = run("set-quota", tenant, "--per-day", "-3")
    assert bad.exit_code != 0 and "per_day" in bad.output
    assert "quota removed" in run("remove-quota", tenant).output
    assert "no such quota" in run("remove-quota", tenant).output
    assert json.loads(run("show", tenant, "--json").output)["quotas"][0]["job_type"] == "quota_note"


def test_the_api_answers_429_with_when_the_quota_resets(stack: Any, tenant_id: uuid.UUID) -> None:
    from apiserver import token_for

    set_quota(tenant_id, 1)
    with stack.client(token_for(tenant_id)) as http:
        body = {"type": "api_steps", "payload": {"steps": 0}}
        assert http.post("/v1/jobs", json=body).status_code == 201
        refused = http.post("/v1/jobs", json=body)
        batch = http.post("/v1/jobs/batch", json={"jobs": [body]})
    assert refused.status_code == 429 and batch.status_code == 429, refused.text
    problem = refused.json()
    assert problem["error"] == "QuotaExceeded"
    assert (problem["quota"], problem["job_type"], problem["count"]) == (1, None, 2)
    assert datetime.fromisoformat(problem["resets_at"]) == next_midnight_utc()
    wait = int(refused.headers["Retry-After"])
    assert 0 < wait <= 86400
    assert count(tenant_id) == 1


PRODUCER = """
import json, sys, threading, uuid
from pydantic import BaseModel
from pgjobs.producer import enqueue
from pgjobs.producer.errors import QuotaExceeded
from pgjobs.producer.job_types import job_type

class Note(BaseModel):
    n: int = 0

note = job_type("quota_note", Note, queue="quotas", description="quota tests")
tenant = uuid.UUID(sys.argv[1])
outcomes = []
start = threading.Barrier(10)

def produce() -> None:
    start.wait()
    for n in range(6):
        try:
            enqueue(note, {"n": n}, tenant_id=tenant)
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("refused")

threads = [threading.Thread(target=produce) for _ in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({k: outcomes.count(k) for k in ("created", "refused")}))
"""


def test_two_producer_processes_never_pass_the_quota(tenant_id: uuid.UUID) -> None:
    limit = 83
    set_quota(tenant_id, limit)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(tenant_id)],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    outcomes = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert sum(o["created"] for o in outcomes) == limit
    assert sum(o["refused"] for o in outcomes) == 2 * 10 * 6 - limit
    assert count(tenant_id) == limit and quota_usage(tenant_id)[0].used == limit
