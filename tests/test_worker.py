"""The worker runtime against real PostgreSQL and Redis, with an in-process Dramatiq worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib
from jobwait import assert_legal_history, events_of, types_of, wait_for
from pydantic import BaseModel

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import (
    EnqueuedJob,
    RetryResult,
    cancel_job,
    enqueue,
    flush,
    get_job,
    retry_job,
)
from pgjobs.producer import broker as broker_module
from pgjobs.producer.job_types import Backoff, job_type
from pgjobs.settings import get_settings
from pgjobs.worker.context import JobContext
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers.registry import handles

pytestmark = pytest.mark.usefixtures("jobs_env")

StartWorker = Callable[..., Any]


class Echo(BaseModel):
    value: int = 0
    fail_times: int = 0
    permanent: bool = False
    steps: int = 0
    step_note: str = "step"
    step_sleep: float = 0.0
    sleep: float = 0.0


echo_type = job_type(
    "test_echo",
    Echo,
    queue="testq",
    max_attempts=3,
    time_limit_seconds=1.0,
    backoff=Backoff(base_seconds=0.05, max_seconds=0.1, jitter=False),
)
started_runs: list[tuple[uuid.UUID, int]] = []
HOSTILE_NOTE = "a\x00b\ud800c"
"""A progress message PostgreSQL cannot store as it is (a payload could not carry it)."""


@handles(echo_type)
def echo(ctx: JobContext[Echo]) -> dict[str, Any]:
    started_runs.append((ctx.tenant_id, ctx.job_id))
    if ctx.payload.permanent:
        raise PermanentError("this cannot work")
    if ctx.attempt <= ctx.payload.fail_times:
        raise RuntimeError(f"boom on attempt {ctx.attempt}")
    for i in range(ctx.payload.steps):
        note = HOSTILE_NOTE if ctx.payload.step_note == "hostile" else ctx.payload.step_note
        ctx.progress(100 * i / ctx.payload.steps, f"{note} {i}")
        time.sleep(ctx.payload.step_sleep)
    deadline = time.monotonic() + ctx.payload.sleep
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return {"value": ctx.payload.value, "attempt": ctx.attempt}


slow_echo_type = job_type("test_slow_echo", Echo, queue="testq", time_limit_seconds=30.0)
"""The echo with room to sleep for seconds (a job that must still run when a test acts)."""
handles(slow_echo_type)(echo)


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


@pytest.fixture(autouse=True)
def fast_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_HEARTBEAT_SECONDS", "0.1")
    monkeypatch.setenv("JOBS_PROGRESS_INTERVAL_SECONDS", "0")
    get_settings.cache_clear()
    from pgjobs.worker.runner import lease_keeper

    lease_keeper.reset()


def test_job_succeeds_with_full_event_trail(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    worker_factory()
    job = enqueue(echo_type, {"value": 7, "steps": 3}, tenant_id=tenant_id)
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"value": 7, "attempt": 1}
    assert done.attempts == 1 and done.progress == 100 and done.completed_at is not None
    types = types_of(tenant_id, job.id)
    assert types == [
        EventType.ENQUEUED,
        EventType.STARTED,
        EventType.PROGRESS,
        EventType.PROGRESS,
        EventType.PROGRESS,
        EventType.COMPLETED,
    ]
    assert_legal_history(types)


def test_a_worker_started_after_another_stopped_in_the_process_runs_jobs(
    tenant_id: uuid.UUID, worker_factory: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker's shutdown grace period must not interrupt the second's jobs (it did:
    each was released and re-sent for ever)."""
    from pgjobs.worker.runner import lease_keeper

    monkeypatch.setenv("JOBS_SHUTDOWN_GRACE_SECONDS", "0")
    get_settings.cache_clear()
    lease_keeper.reset()
    worker_factory().stop(timeout=10_000)
    worker_factory()
    job = enqueue(echo_type, {"value": 1, "sleep": 0.6}, tenant_id=tenant_id)  # over a beat
    assert wait_for(tenant_id, job.id, timeout=10).status is JobStatus.SUCCEEDED
    assert types_of(tenant_id, job.id).count(EventType.STARTED) == 1


def test_progress_text_postgresql_cannot_store_is_kept_readable(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    """A handler's progress message with NUL or a lone surrogate is stored with U+FFFD in their
    place (text and jsonb cannot hold them): the job still succeeds on its first attempt."""
    worker_factory()
    job = enqueue(echo_type, {"steps": 1}, tenant_id=tenant_id)
    hostile = enqueue(echo_type, {"steps": 1, "step_note": "hostile"}, tenant_id=tenant_id)
    for each in (job, hostile):
        assert wait_for(tenant_id, each.id).status is JobStatus.SUCCEEDED
    done = wait_for(tenant_id, hostile.id)
    assert done.attempts == 1
    progress = [e for e in events_of(tenant_id, hostile.id) if e.event_type is EventType.PROGRESS]
    assert progress[0].data["message"] == "a\ufffdb\ufffdc 0"


def test_retry_then_success(tenant_id: uuid.UUID, worker_factory: StartWorker) -> None:
    worker_factory()
    job = enqueue(echo_type, {"fail_times": 2}, tenant_id=tenant_id)
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 3
    assert done.error_message == "RuntimeError: boom on attempt 2"  # last error kept
    types = types_of(tenant_id, job.id)
    assert types.count(EventType.RETRY) == 2 and types[-1] is EventType.COMPLETED
    retry = [e for e in events_of(tenant_id, job.id) if e.event_type is EventType.RETRY][0]
    assert retry.data["error"] == "RuntimeError: boom on attempt 1"
    assert_legal_history(types)


def test_attempts_used_up_fails(tenant_id: uuid.UUID, worker_factory: StartWorker) -> None:
    worker_factory()
    job = enqueue(echo_type, {"fail_times": 5}, tenant_id=tenant_id)
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 3
    assert done.error_message == "RuntimeError: boom on attempt 3"
    assert types_of(tenant_id, job.id)[-1] is EventType.FAILED


def test_permanent_error_is_not_retried(tenant_id: uuid.UUID, worker_factory: StartWorker) -> None:
    worker_factory()
    job = enqueue(echo_type, {"permanent": True}, tenant_id=tenant_id)
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "PermanentError: this cannot work" == done.error_message


def test_invalid_stored_payload_fails_without_running(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    job = enqueue(echo_type, {"value": 1}, tenant_id=tenant_id)
    with autocommit() as conn:
        conn.exec_driver_sql(
            'update content_jobs set payload = \'{"value": "nope"}\' where id = %s', (job.id,)
        )
    worker_factory()
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert done.error_message == "invalid payload: value"
    assert (tenant_id, job.id) not in started_runs


def running_job(tenant_id: uuid.UUID, worker_factory: StartWorker) -> EnqueuedJob:
    """A job that runs for about 4 s, reporting progress (checkpoints) every 20 ms, once a
    worker has started it."""
    worker_factory()
    job = enqueue(echo_type, {"steps": 200, "step_sleep": 0.02}, tenant_id=tenant_id)
    wait_for(tenant_id, job.id, frozenset({JobStatus.ACTIVE}))
    return job


def test_cancel_running_job_stops_at_next_checkpoint(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    job = running_job(tenant_id, worker_factory)
    result = cancel_job(tenant_id, job.id, reason="user asked")
    assert result.stop_requested and result.status is JobStatus.ACTIVE
    # Asked again while it runs (or, on a loaded machine, just after it stopped): either way the
    # first request's reason is the one the final event keeps.
    again = cancel_job(tenant_id, job.id, reason="asked again")
    assert again.stop_requested or again.status is JobStatus.CANCELLED
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.CANCELLED and done.progress < 100
    types = types_of(tenant_id, job.id)
    assert types[-1] is EventType.CANCELLED
    assert_legal_history(types)
    # The reason given with the request reaches the event written when the job stops.
    last = events_of(tenant_id, job.id)[-1].data
    assert last["reason"] == "user asked" and last["while_running"] is True


def test_cancel_running_job_without_reason_says_cancel_requested(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    job = running_job(tenant_id, worker_factory)
    assert cancel_job(tenant_id, job.id).stop_requested
    assert wait_for(tenant_id, job.id).status is JobStatus.CANCELLED
    assert events_of(tenant_id, job.id)[-1].data["reason"] == "cancel requested"


def test_cancel_queued_job_is_immediate_and_never_runs(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    job = enqueue(echo_type, {"value": 1}, tenant_id=tenant_id)
    assert cancel_job(tenant_id, job.id).status is JobStatus.CANCELLED
    worker_factory()
    time.sleep(0.5)
    assert get_job(tenant_id, job.id).status is JobStatus.CANCELLED
    assert (tenant_id, job.id) not in started_runs
    again = cancel_job(tenant_id, job.id)  # idempotent
    assert again.status is JobStatus.CANCELLED and not again.stop_requested


def test_time_limit_is_enforced_and_retried(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    worker_factory()
    job = enqueue(echo_type, {"sleep": 30}, tenant_id=tenant_id, max_attempts=2)
    done = wait_for(tenant_id, job.id, timeout=30)
    assert done.status is JobStatus.FAILED and done.attempts == 2
    assert done.error_message == "time limit of 1s exceeded"
    assert types_of(tenant_id, job.id).count(EventType.RETRY) == 1


def test_manual_retry_of_failed_job(tenant_id: uuid.UUID, worker_factory: StartWorker) -> None:
    worker_factory()
    job = enqueue(echo_type, {"fail_times": 1}, tenant_id=tenant_id, max_attempts=1)
    assert wait_for(tenant_id, job.id).status is JobStatus.FAILED
    retried = retry_job(tenant_id, job.id)
    assert retried == RetryResult(job.id, JobStatus.PENDING, attempt=2, max_attempts=2)
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
    types = types_of(tenant_id, job.id)
    assert types[-4:] == [
        EventType.FAILED,
        EventType.RETRY,
        EventType.STARTED,
        EventType.COMPLETED,
    ]
    assert_legal_history(types)


def test_duplicate_message_does_nothing(tenant_id: uuid.UUID, worker_factory: StartWorker) -> None:
    worker_factory()
    job = enqueue(echo_type, {"value": 3}, tenant_id=tenant_id)
    wait_for(tenant_id, job.id)
    broker_module.send(
        [broker_module.Outgoing(job.id, tenant_id, "testq", broker_module.new_message_id())]
    )
    time.sleep(0.5)
    assert started_runs.count((tenant_id, job.id)) == 1
    assert types_of(tenant_id, job.id).count(EventType.STARTED) == 1


def test_malformed_messages_are_dead_lettered_and_valid_ones_behind_them_run(
    tenant_id: uuid.UUID,
    worker_factory: StartWorker,
    jobs_env: str,
    redis_client: redis_lib.Redis,
) -> None:
    broker = broker_module.get_broker()
    broker.declare_queue("testq")
    broker.do_enqueue("testq", "garbage-1", b"this is not json")
    broker.do_enqueue("testq", "garbage-2", b'{"json": "but not a message"}')
    bad_args = broker_module.Outgoing(0, tenant_id, "testq", "garbage-3").to_message()
    broker.do_enqueue("testq", "garbage-3", bad_args.copy(args=("not-an-id", "x")).encode())
    jobs = [enqueue(echo_type, {"value": i}, tenant_id=tenant_id) for i in range(5)]
    worker_factory()
    for job in jobs:
        assert wait_for(tenant_id, job.id).status is JobStatus.SUCCEEDED
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        dead = set(redis_client.zrange(f"{jobs_env}:testq.XQ", 0, -1))
        if {b"garbage-1", b"garbage-2", b"garbage-3"} <= dead:
            break
        time.sleep(0.1)
    assert {b"garbage-1", b"garbage-2", b"garbage-3"} <= dead


def test_expired_lease_is_rescued_and_job_completes(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    from pgjobs.worker.maintenance import rescue_once

    job = enqueue(echo_type, {"value": 9}, tenant_id=tenant_id)
    # A worker claims it and dies: the lease runs out with nobody extending it.
    with autocommit() as conn:
        claimed = sm.claim(
            conn, job.id, tenant_id, lease_seconds=0.2, message_id="dead", worker="ghost"
        )
    assert claimed is not None
    time.sleep(0.3)
    assert rescue_once() == 1
    rescued = get_job(tenant_id, job.id)
    assert rescued.status is JobStatus.QUEUED
    worker_factory()
    done = wait_for(tenant_id, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
    types = types_of(tenant_id, job.id)
    assert EventType.RESCUED in types
    assert_legal_history(types)


def test_rescuer_fails_job_whose_attempts_are_used_up(tenant_id: uuid.UUID) -> None:
    from pgjobs.worker.maintenance import rescue_once

    job = enqueue(echo_type, {"value": 9}, tenant_id=tenant_id, max_attempts=1)
    with autocommit() as conn:
        sm.claim(conn, job.id, tenant_id, lease_seconds=0.1, message_id=None, worker=None)
    time.sleep(0.2)
    assert rescue_once() == 1
    done = get_job(tenant_id, job.id)
    assert done.status is JobStatus.FAILED
    assert done.error_message == "lease expired: worker lost"


def test_many_jobs_concurrently(tenant_id: uuid.UUID, worker_factory: StartWorker) -> None:
    from pgjobs.producer import JobRequest, enqueue_many

    worker_factory(threads=8)
    jobs = enqueue_many([JobRequest(echo_type, {"value": i}, tenant_id) for i in range(200)])
    for job in jobs:
        assert wait_for(tenant_id, job.id).status is JobStatus.SUCCEEDED
    runs = [r for r in started_runs if r in {(tenant_id, j.id) for j in jobs}]
    assert len(runs) == 200 and len(set(runs)) == 200


def test_concurrent_duplicate_deliveries_run_the_handler_once(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    worker_factory(threads=8)
    job = enqueue(echo_type, {"sleep": 0.3}, tenant_id=tenant_id)
    extra = [
        broker_module.Outgoing(job.id, tenant_id, "testq", broker_module.new_message_id())
        for _ in range(5)
    ]
    threading.Thread(target=broker_module.send, args=(extra,)).start()
    assert wait_for(tenant_id, job.id).status is JobStatus.SUCCEEDED
    time.sleep(0.3)
    assert started_runs.count((tenant_id, job.id)) == 1


def test_pruner_deletes_old_terminal_jobs_and_their_events_only(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgjobs.db.engine import transaction
    from pgjobs.worker.maintenance import prune_once

    done = [enqueue(echo_type, {"value": i}, tenant_id=tenant_id) for i in range(5)]
    live = enqueue(echo_type, {"value": 99}, tenant_id=tenant_id)
    assert flush(timeout=10)
    for job in done:
        with autocommit() as conn:
            claimed = sm.claim(
                conn, job.id, tenant_id, lease_seconds=30, message_id=None, worker=None
            )
            assert claimed is not None
            assert sm.complete(conn, job.id, claimed.attempt, "null", 1.0)
    monkeypatch.setenv("JOBS_RETENTION_DAYS", "0.000001")  # ~0.09 s
    monkeypatch.setenv("JOBS_PRUNE_BATCH_SIZE", "2")  # three statements for five jobs
    get_settings.cache_clear()
    time.sleep(0.2)
    assert prune_once() == 5
    with transaction() as conn:
        left = conn.exec_driver_sql(
            "select count(*) from job_events where tenant_id = %s", (tenant_id,)
        ).scalar()
    assert left == 1  # the live job's enqueued event
    assert get_job(tenant_id, live.id).status is JobStatus.QUEUED
    assert prune_once() == 0


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_message_is_acked_only_after_its_completion_commits(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    """The handler thread moves on at once, but the message stays unacked in Redis until the
    completion has committed: a crash in between re-delivers it, nothing is lost."""
    from sqlalchemy import text

    from pgjobs.db.engine import transaction

    worker_factory(threads=1)
    job = enqueue(echo_type, {"value": 1, "sleep": 0.3}, tenant_id=tenant_id)
    assert job.message_id is not None
    _wait(lambda: get_job(tenant_id, job.id).status is JobStatus.ACTIVE)
    with transaction() as conn:  # the row lock holds the completion back
        conn.execute(text("SELECT 1 FROM content_jobs WHERE id = :id FOR UPDATE"), {"id": job.id})
        time.sleep(0.8)  # the handler has returned by now
        assert (tenant_id, job.id) in started_runs
        assert get_job(tenant_id, job.id).status is JobStatus.ACTIVE
        assert broker_module.message_present("testq", [job.message_id]) == [True]
    assert wait_for(tenant_id, job.id).status is JobStatus.SUCCEEDED
    _wait(lambda: broker_module.message_present("testq", [job.message_id]) == [False])


def test_jobs_claimed_ahead_are_given_back_when_the_worker_stops(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    """A fetched message's job is claimed before a thread is free for it; if the worker stops
    first, the job goes back to queued with its attempt returned, and runs elsewhere."""
    worker = worker_factory(threads=1)  # prefetch 3: one running, two claimed and waiting
    # 2 s: the first job must still run when the worker stops, even on a loaded machine
    jobs = [
        enqueue(slow_echo_type, {"value": i, "sleep": 2.0}, tenant_id=tenant_id) for i in range(3)
    ]
    _wait(lambda: any((tenant_id, j.id) in started_runs for j in jobs))
    _wait(lambda: sum(EventType.STARTED in types_of(tenant_id, j.id) for j in jobs) >= 2)
    worker.stop(timeout=10_000)
    never_ran = [j for j in jobs if (tenant_id, j.id) not in started_runs]
    assert never_ran
    given_back = 0
    for job in never_ran:
        row = get_job(tenant_id, job.id)
        assert row.status is JobStatus.QUEUED and row.attempts == 0
        events = events_of(tenant_id, job.id)
        if any(e.event_type is EventType.RESCUED for e in events):
            given_back += 1
            rescued = [e for e in events if e.event_type is EventType.RESCUED][-1]
            assert rescued.data["reason"] == "worker shutdown"
    assert given_back >= 1
    worker_factory(threads=2)
    for job in jobs:
        assert wait_for(tenant_id, job.id).status is JobStatus.SUCCEEDED
        assert_legal_history(types_of(tenant_id, job.id))


def test_the_consumer_knows_the_worker_thread_count(worker_factory: StartWorker) -> None:
    """The consumer sizes its fetches by the worker's threads (pgjobs/worker/consumer.py)."""
    worker = worker_factory(threads=3)
    assert worker.broker.worker_threads == 3


def test_a_worker_holds_at_most_three_messages_per_thread(
    tenant_id: uuid.UUID, worker_factory: StartWorker
) -> None:
    """The prefetch is three messages per thread (pgjobs/worker/setup.py): a worker with 2
    threads and a full queue claims ahead (a message waits for each thread while the next
    batch is fetched) but never holds more than 6 jobs; the rest stay queued."""
    worker = worker_factory(threads=2)
    assert worker.consumers["testq"].prefetch == 6
    jobs = [
        enqueue(slow_echo_type, {"value": i, "sleep": 1.0}, tenant_id=tenant_id) for i in range(12)
    ]
    ids = {j.id for j in jobs}
    _wait(lambda: len([r for r in started_runs if r[1] in ids]) >= 2)
    time.sleep(0.3)  # room for any further fetch while the first two run
    claimed = [j for j in jobs if get_job(tenant_id, j.id).status is JobStatus.ACTIVE]
    assert 2 < len(claimed) <= 6
    assert sum(get_job(tenant_id, j.id).status is JobStatus.QUEUED for j in jobs) >= 6


def test_dramatiq_queue_prefetch_still_sets_the_prefetch(
    monkeypatch: pytest.MonkeyPatch, worker_factory: StartWorker
) -> None:
    import dramatiq.worker

    monkeypatch.setattr(dramatiq.worker, "QUEUE_PREFETCH", 2)
    worker = worker_factory(threads=2)
    assert worker.queue_prefetch == 2 and worker.consumers["testq"].prefetch == 2


def test_completions_wait_for_company_and_go_with_the_next_claim(tenant_id: uuid.UUID) -> None:
    """Completions alone wait (up to COMPLETION_WAIT_S, here made long) for others or for a
    claim round, and then commit in it; nothing is reported written before."""
    from pgjobs.worker import state_writer as sw

    jobs = [enqueue(echo_type, {"value": i}, tenant_id=tenant_id) for i in range(3)]
    writer = sw.StateWriter(worker="test")
    requests = [sm.ClaimRequest(j.id, tenant_id, j.message_id) for j in jobs]
    claimed = [c for c in writer.claim(requests[:2]) if c is not None]
    assert len(claimed) == 2
    written: list[bool] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sw, "COMPLETION_WAIT_S", 60.0)
        for job in claimed:
            writer.complete(
                sm.Completion(job.id, job.attempt, "1", 1.0), str(job.id), written.append
            )
        time.sleep(0.5)
        assert written == []
        assert all(get_job(tenant_id, j.id).status is JobStatus.ACTIVE for j in jobs[:2])
        writer.claim(requests[2:])  # the claim's round takes the completions along
        assert written == [True, True]
        assert all(get_job(tenant_id, j.id).status is JobStatus.SUCCEEDED for j in jobs[:2])


def test_a_completion_its_caller_waits_for_is_written_at_once(tenant_id: uuid.UUID) -> None:
    from pgjobs.worker import state_writer as sw

    job = enqueue(echo_type, {"value": 1}, tenant_id=tenant_id)
    writer = sw.StateWriter(worker="test")
    [claimed] = writer.claim([sm.ClaimRequest(job.id, tenant_id, job.message_id)])
    assert claimed is not None
    done = threading.Event()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sw, "COMPLETION_WAIT_S", 60.0)
        completion = sm.Completion(job.id, claimed.attempt, "1", 1.0)
        writer.complete(completion, None, lambda held: done.set())
        assert done.wait(10.0)
    assert get_job(tenant_id, job.id).status is JobStatus.SUCCEEDED
