"""The producer's send-then-mark: the message leaves at once, the pending -> queued mark follows
in the background, batched, and never moves a job that a worker already took."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence

import pytest
import redis as redis_lib
from helpers import job_ids_in_redis
from sqlalchemy import Connection, text

from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus
from pgjobs.producer import broker, enqueue, flush, get_job, sender

pytestmark = pytest.mark.usefixtures("jobs_env")

PAYLOAD = {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy"}


def test_rows_are_marked_queued_soon_without_a_flush(tenant_id: uuid.UUID) -> None:
    enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    assert flush(timeout=10)  # the marker is idle now, with nothing to mark
    job = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    deadline = time.monotonic() + 5
    while get_job(tenant_id, job.id).status is JobStatus.PENDING:
        assert time.monotonic() < deadline, "the marker never marked the row"
        time.sleep(0.01)
    assert get_job(tenant_id, job.id).status is JobStatus.QUEUED


def test_one_statement_marks_the_jobs_of_many_calls(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked: list[int] = []  # rows moved by each MARK_SENT (the real one, counted)
    real_mark_sent = sm.mark_sent

    def counted(conn: Connection, job_ids: Sequence[int]) -> int:
        marked.append(real_mark_sent(conn, job_ids))
        return marked[-1]

    monkeypatch.setattr(sm, "mark_sent", counted)
    jobs = [enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id) for _ in range(20)]
    assert flush(timeout=10)
    assert 1 <= len(marked) < 5 and sum(marked) == 20, marked
    assert {get_job(tenant_id, j.id).status for j in jobs} == {JobStatus.QUEUED}


def test_a_job_claimed_before_its_mark_stays_active(tenant_id: uuid.UUID) -> None:
    job = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    with autocommit() as conn:  # a worker fast enough to beat the marker
        claimed = sm.claim(conn, job.id, tenant_id, lease_seconds=30, message_id=None, worker=None)
    assert claimed is not None
    assert flush(timeout=10)
    assert get_job(tenant_id, job.id).status is JobStatus.ACTIVE


def test_a_failed_send_leaves_nothing_to_mark(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(outgoing: object) -> None:
        raise redis_lib.ConnectionError("redis down")

    monkeypatch.setattr(broker, "send", refuse)
    job = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    assert flush(timeout=10)
    assert get_job(tenant_id, job.id).status is JobStatus.PENDING  # for the relay
    assert job_ids_in_redis(redis_client, jobs_env, "content") == []


def test_a_forked_child_does_not_mark_its_parents_jobs(tenant_id: uuid.UUID) -> None:
    enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)  # its mark is still due
    pid = os.fork()
    if pid == 0:  # the child: nothing added, nothing to wait for
        os._exit(0 if sender.flush(timeout=0) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_mark_skips_a_row_being_claimed_instead_of_waiting(tenant_id: uuid.UUID) -> None:
    """Many rows marked at once must not wait on (and so deadlock with) a worker's claim
    round, which locks its rows in another order."""
    rows = [
        sm.NewJob(tenant_id, "scheduled_preview", "{}", str(uuid.uuid4()), 3, 0, None, None, None)
        for _ in range(2)
    ]
    with autocommit() as conn:  # written directly: no send, so no mark of the sender's own
        busy, free = (job.id for job in sm.insert_pending(conn, rows) if job is not None)
    with transaction() as claiming:
        claiming.execute(text("SELECT 1 FROM content_jobs WHERE id = :id FOR UPDATE"), {"id": busy})
        with autocommit() as conn:
            conn.exec_driver_sql("SET lock_timeout = '2s'")  # waiting would fail the test
            assert sm.mark_sent(conn, [busy, free]) == 1
            conn.exec_driver_sql("SET lock_timeout = 0")
    assert get_job(tenant_id, busy).status is JobStatus.PENDING
    assert get_job(tenant_id, free).status is JobStatus.QUEUED
