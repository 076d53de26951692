"""Concurrent producers (issue 18's web-server shape: 2 processes x 8 threads) never lose or
duplicate a job: every job created has one row, one ``enqueued`` event and one message, and
an idempotency key shared by every producer yields one job."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter

import pytest
import redis as redis_lib
from helpers import job_ids_in_redis
from processes import TESTS, worker_env
from sqlalchemy import func, select

from pgjobs.db.engine import transaction
from pgjobs.db.models import ContentJob, JobEvent

pytestmark = pytest.mark.usefixtures("jobs_env")

PROCESSES, THREADS, JOBS = 2, 8, 40


def _produce(
    db_env: str, redis_url: str, namespace: str, tenant_id: uuid.UUID
) -> list[subprocess.Popen[str]]:
    procs = []
    for p in range(PROCESSES):
        env = worker_env(database_url=db_env, redis_url=redis_url, namespace=namespace)
        env.update(
            TEST_THREADS=str(THREADS),
            TEST_JOBS_PER_THREAD=str(JOBS),
            TEST_TENANT=str(tenant_id),
            TEST_TAG=f"producer-{p}",
        )
        argv = [sys.executable, str(TESTS / "producer_threads.py")]
        out = subprocess.PIPE
        procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=out, text=True))
    return procs


def test_concurrent_producers_never_lose_or_duplicate_a_job(
    db_env: str,
    jobs_env: str,
    tenant_id: uuid.UUID,
    redis_client: redis_lib.Redis,
    server_urls: tuple[str, str],
) -> None:
    returned: list[tuple[int, bool, str | None]] = []
    for proc in _produce(db_env, server_urls[1], jobs_env, tenant_id):
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        returned += [tuple(json.loads(line)) for line in stdout.splitlines()]  # type: ignore[misc]
    assert len(returned) == PROCESSES * THREADS * JOBS  # every call answered

    by_key: dict[str, set[int]] = {}
    for job_id, _, key in returned:
        if key is not None:
            by_key.setdefault(key, set()).add(job_id)
    assert all(len(ids) == 1 for ids in by_key.values())  # one job per shared key
    created = [job_id for job_id, was_created, _ in returned if was_created]
    assert len(created) == len(set(created))  # no job reported created twice
    unkeyed = [job_id for job_id, _, key in returned if key is None]
    assert len(unkeyed) == len(set(unkeyed)) == PROCESSES * THREADS * JOBS // 2
    expected = set(unkeyed) | {ids.pop() for ids in by_key.values()}
    assert set(created) == expected

    with transaction() as conn:
        rows = conn.execute(select(ContentJob.id).where(ContentJob.tenant_id == tenant_id))
        row_ids = [r.id for r in rows]
        events = conn.execute(
            select(JobEvent.job_id, func.count())
            .where(JobEvent.tenant_id == tenant_id)
            .group_by(JobEvent.job_id)
        ).all()
    assert sorted(row_ids) == sorted(expected)  # nothing lost, nothing extra
    assert {job_id: n for job_id, n in events} == dict.fromkeys(expected, 1)
    messages = Counter(job_ids_in_redis(redis_client, jobs_env, "content"))
    assert messages == Counter(expected)  # one message per job, none twice
    pushed = redis_client.lrange(f"{jobs_env}:content", 0, -1)
    assert len(pushed) == len(set(pushed)) == len(expected)  # each id on the queue once
