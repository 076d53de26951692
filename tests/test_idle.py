"""An idle worker waits on its doorbells instead of polling Redis (pgjobs/worker/consumer.py),
and still starts what arrives at once: a job enqueued into an idle system, a delayed job when
it is due, and a message written without a ring (found by the idle wait's timeout).

The worker runs against a Redis server of the test's own, so ``INFO commandstats`` counts the
worker's calls and nothing else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fault_jobs import create_effects_table, work_type
from jobwait import wait_for
from processes import Proc, Processes, RedisServer, worker_env
from test_faults import wait_ready

from pgjobs.db.engine import autocommit
from pgjobs.db.models import JobStatus
from pgjobs.producer import broker as broker_module
from pgjobs.producer import enqueue, wire
from pgjobs.producer.job_types import queues
from pgjobs.settings import get_settings

pytestmark = [pytest.mark.usefixtures("jobs_env"), pytest.mark.slow]

IDLE_WAIT_MS = 20_000
"""Long enough that a job started promptly can only have been woken by its ring."""
IDLE_SECONDS = 30.0
"""How long the system idles before a job comes (issue 18's test: 30 s)."""


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    with autocommit() as conn:
        create_effects_table(conn)  # the handler records each run there
    return use_fresh_db


@pytest.fixture
def own_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Processes, str]]:
    procs = Processes(tmp_path / "logs")
    server = RedisServer(procs)
    try:
        server.start()
        monkeypatch.setenv("REDIS_URL", server.url)
        get_settings.cache_clear()
        broker_module.set_broker(None)
        yield procs, server.url
    finally:
        procs.stop_all()
        broker_module.set_broker(None)


def idle_worker(procs: Processes, url: str, namespace: str, database_url: str) -> Proc:
    env = worker_env(
        database_url=database_url,
        redis_url=url,
        namespace=namespace,
        worker_idle_wait_ms=IDLE_WAIT_MS,
    )
    env["dramatiq_worker_timeout"] = "1000"  # as `jobctl worker` sets it
    worker = procs.worker(env, threads=2)
    wait_ready([worker], procs)
    return worker


def calls_per_second(client: redis_lib.Redis, seconds: float) -> float:
    client.config_resetstat()
    time.sleep(seconds)
    stats = client.info("commandstats")
    own = ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
    return sum(v["calls"] for k, v in stats.items() if k not in own) / seconds


def started_after(tenant_id: uuid.UUID, job_id: int) -> float:
    job = wait_for(tenant_id, job_id, frozenset({JobStatus.SUCCEEDED}), timeout=60)
    assert job.started_at is not None
    return (job.started_at - job.created_at).total_seconds()


def test_an_idle_worker_waits_and_still_starts_jobs_at_once(
    own_redis: tuple[Processes, str], tenant_id: uuid.UUID, jobs_env: str, db_env: str
) -> None:
    procs, url = own_redis
    worker = idle_worker(procs, url, jobs_env, db_env)
    client = redis_lib.Redis.from_url(url)
    # warm up: the first job pays for connections and imports
    first = enqueue(work_type, {"sleep_ms": 0}, tenant_id=tenant_id)
    wait_for(tenant_id, first.id, frozenset({JobStatus.SUCCEEDED}), timeout=60)

    # Stock Dramatiq with a 10 ms poll makes about 100 fetches a second per consumer: one per
    # queue and delay queue of every queue served. Waiting on doorbells: a handful per idle
    # wait, plus the process's own heartbeats.
    # Counted over 30 s of idleness: longer than one idle wait (20 s), so every consumer's
    # wait has timed out once and been made again before the next job comes.
    consumers = 2 * len(queues())
    rate = calls_per_second(client, IDLE_SECONDS)
    assert rate <= 2 * consumers + 10, (rate, consumers, worker.tail())

    # a job after the 30 s: woken by its ring, not by the (20 s) wait's end
    job = enqueue(work_type, {"sleep_ms": 0}, tenant_id=tenant_id)
    assert started_after(tenant_id, job.id) < 2.0

    # A delayed job: the delay queue's consumer waits until its eta, not the idle wait.
    delayed = enqueue(work_type, {"sleep_ms": 0}, tenant_id=tenant_id, delay=2)
    assert 1.9 <= started_after(tenant_id, delayed.id) < 5.0
    client.close()


def test_a_message_written_without_a_ring_is_found_by_the_idle_wait(
    own_redis: tuple[Processes, str],
    tenant_id: uuid.UUID,
    jobs_env: str,
    db_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What nobody rings for (Dramatiq requeueing a dead worker's messages, another client
    writing the queue) waits at most the idle wait."""
    procs, url = own_redis
    env = worker_env(
        database_url=db_env, redis_url=url, namespace=jobs_env, worker_idle_wait_ms=1000
    )
    worker = procs.worker(env, threads=2)
    wait_ready([worker], procs)
    time.sleep(1.5)  # every consumer is waiting on its doorbell now
    # the write rings a set nobody is in: the message arrives as another client's would
    monkeypatch.setattr(wire, "sleepers_key", lambda queue_key: f"{queue_key}.nobody")
    job = enqueue(work_type, {"sleep_ms": 0}, tenant_id=tenant_id)
    assert started_after(tenant_id, job.id) < 4.0
