"""The relay: a producer killed between commit and send, and messages lost from Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import redis as redis_lib
from helpers import job_ids_in_redis

from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import enqueue, flush, get_job, get_job_events
from pgjobs.producer.relay import relay_once
from pgjobs.settings import get_settings

pytestmark = pytest.mark.usefixtures("jobs_env")


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


PAYLOAD = {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Army"}

KILLED_PRODUCER = """
import os, sys, uuid
import pgjobs.producer.broker as broker
from pgjobs.producer import enqueue

def die(*args, **kwargs):
    print("committed", flush=True)
    os._exit(9)  # the process dies after the commit, before the message leaves

broker.send = die
enqueue("scheduled_preview", {payload!r}, tenant_id=uuid.UUID({tenant!r}))
"""


def test_producer_killed_between_commit_and_send(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = KILLED_PRODUCER.format(payload=PAYLOAD, tenant=str(tenant_id))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, text=True
    )
    assert proc.returncode == 9 and "committed" in proc.stdout, proc.stderr
    from pgjobs.producer import list_jobs

    [job] = list_jobs(tenant_id).items
    assert job.status is JobStatus.PENDING
    assert job_ids_in_redis(redis_client, jobs_env, "content") == []

    relay_once()  # too young: the producer may still be about to send
    assert get_job(tenant_id, job.id).status is JobStatus.PENDING

    monkeypatch.setenv("JOBS_RELAY_PENDING_AFTER_SECONDS", "0")
    get_settings.cache_clear()
    result = relay_once()
    assert result.resent_pending >= 1
    assert get_job(tenant_id, job.id).status is JobStatus.QUEUED
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [job.id]
    events = get_job_events(tenant_id, job.id).items
    assert [e.event_type for e in events] == [EventType.ENQUEUED, EventType.ENQUEUED]
    assert events[1].data["resent"] is True
    relay_once()  # nothing more to do: not sent twice
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [job.id]


def test_message_lost_from_redis_is_resent(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    kept = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    assert flush(timeout=10)  # both marked queued
    monkeypatch.setenv("JOBS_RELAY_QUEUED_AFTER_SECONDS", "0")
    get_settings.cache_clear()
    assert relay_once().resent_lost == 0  # both messages are there
    redis_client.hdel(f"{jobs_env}:content.msgs", job.message_id or "")
    redis_client.lrem(f"{jobs_env}:content", 0, job.message_id or "")
    assert relay_once().resent_lost == 1
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == sorted([job.id, kept.id])
    assert get_job(tenant_id, job.id).queue_job_id != job.message_id


def test_two_relays_at_once_send_each_job_once(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several maintenance processes may run: row locks split the work, none is done twice."""
    import threading

    from pgjobs.producer import broker

    def refuse(*args: object, **kwargs: object) -> None:
        raise redis_lib.ConnectionError("redis down")

    with monkeypatch.context() as patch:
        patch.setattr(broker, "send", refuse)
        jobs = [enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id) for _ in range(60)]
    monkeypatch.setenv("JOBS_RELAY_PENDING_AFTER_SECONDS", "0")
    monkeypatch.setenv("JOBS_RELAY_BATCH_SIZE", "7")
    get_settings.cache_clear()
    barrier = threading.Barrier(3)

    def relay_until_done() -> None:
        barrier.wait()
        for _ in range(40):
            relay_once()

    threads = [threading.Thread(target=relay_until_done) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == sorted(j.id for j in jobs)
    for job in jobs:
        events = get_job_events(tenant_id, job.id).items
        assert [e.event_type for e in events] == [EventType.ENQUEUED, EventType.ENQUEUED]


def test_far_future_job_waits_in_postgres_until_it_comes_within_the_horizon(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id, delay=3600)
    assert get_job(tenant_id, job.id).status is JobStatus.PENDING
    assert job_ids_in_redis(redis_client, jobs_env, "content") == []
    monkeypatch.setenv("JOBS_RELAY_PENDING_AFTER_SECONDS", "0")
    get_settings.cache_clear()
    assert relay_once().resent_pending == 0  # still beyond the 5-minute horizon
    monkeypatch.setenv("JOBS_SCHEDULE_HORIZON_SECONDS", "7200")
    get_settings.cache_clear()
    assert relay_once().resent_pending == 1
    stored = get_job(tenant_id, job.id)
    assert stored.status is JobStatus.QUEUED
    assert redis_client.hexists(f"{jobs_env}:content.DQ.msgs", stored.queue_job_id or "")


KILLED_AFTER_SEND = """
import os, uuid
import pgjobs.db.jobs.state_machine as sm
from pgjobs.producer import enqueue

def die(*args, **kwargs):
    print("sent", flush=True)
    os._exit(9)  # the message left; the pending -> queued mark never happens

sm.mark_sent = die
enqueue("scheduled_preview", {payload!r}, tenant_id=uuid.UUID({tenant!r}))
"""


def test_producer_killed_between_send_and_mark(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message is on Redis but the row is still pending: the relay marks it queued and
    sends nothing more (no duplicate message, no second ``enqueued`` event)."""
    script = KILLED_AFTER_SEND.format(payload=PAYLOAD, tenant=str(tenant_id))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True
    )
    assert proc.returncode == 9 and "sent" in proc.stdout, proc.stderr
    [job_id] = job_ids_in_redis(redis_client, jobs_env, "content")
    assert get_job(tenant_id, job_id).status is JobStatus.PENDING
    monkeypatch.setenv("JOBS_RELAY_PENDING_AFTER_SECONDS", "0")
    get_settings.cache_clear()
    assert relay_once().resent_pending == 0
    assert get_job(tenant_id, job_id).status is JobStatus.QUEUED
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [job_id]
    events = get_job_events(tenant_id, job_id).items
    assert [e.event_type for e in events] == [EventType.ENQUEUED]


def test_jobs_of_types_the_relay_does_not_know_never_fill_its_batch(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows of a type this process does not know (its module is not in JOBS_IMPORTS) cannot be
    sent: the relay leaves them alone instead of locking them on every pass, so a batch full
    of them never keeps a known type's lost message from being re-sent."""
    from pydantic import BaseModel

    from pgjobs.producer.job_types import job_type, unregister

    class Blob(BaseModel):
        n: int

    elsewhere = job_type("relay_elsewhere_type", Blob, queue="elsewhere")
    try:
        for n in range(3):
            enqueue(elsewhere, {"n": n}, tenant_id=tenant_id)
    finally:
        unregister(elsewhere.name)
    known = enqueue("scheduled_preview", PAYLOAD, tenant_id=tenant_id)
    assert flush(timeout=10)
    redis_client.delete(f"{jobs_env}:elsewhere", f"{jobs_env}:elsewhere.msgs")
    redis_client.delete(f"{jobs_env}:content", f"{jobs_env}:content.msgs")
    monkeypatch.setenv("JOBS_RELAY_QUEUED_AFTER_SECONDS", "0")
    monkeypatch.setenv("JOBS_RELAY_BATCH_SIZE", "2")  # the unknown rows come first
    get_settings.cache_clear()
    assert relay_once().resent_lost == 1
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [known.id]
