"""enqueue / enqueue_many: the outbox guarantees, idempotency, and bad input."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from helpers import job_ids_in_redis, make_tenant
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pgjobs.db.engine import get_engine, transaction
from pgjobs.db.models import ContentJob, EventType, JobEvent, JobStatus
from pgjobs.producer import (
    InvalidOption,
    InvalidPayload,
    JobRequest,
    PayloadTooLarge,
    UnknownJobType,
    UnknownTenant,
    enqueue,
    enqueue_many,
    flush,
    get_job,
    get_job_events,
)

pytestmark = pytest.mark.usefixtures("jobs_env")

CRED = str(uuid.uuid4())


def preview(team: str = "Navy") -> dict[str, object]:
    return {"credential_id": CRED, "season": 2026, "team": team}


def _count_jobs(tenant_id: uuid.UUID) -> int:
    with transaction() as conn:
        query = select(func.count()).where(ContentJob.tenant_id == tenant_id)
        return int(conn.execute(query).scalar_one())


def _count_events(tenant_id: uuid.UUID) -> int:
    with transaction() as conn:
        query = select(func.count()).where(JobEvent.tenant_id == tenant_id)
        return int(conn.execute(query).scalar_one())


def test_enqueue_writes_row_event_and_one_message(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    job = enqueue("scheduled_preview", preview(), tenant_id=tenant_id)
    assert job.created and job.message_id
    # the message is on Redis when enqueue returns; the row is marked queued moments later
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [job.id]
    assert get_job(tenant_id, job.id).status is JobStatus.PENDING
    assert flush(timeout=10)
    stored = get_job(tenant_id, job.id)
    assert stored.status is JobStatus.QUEUED
    assert stored.queue_job_id == job.message_id
    assert stored.payload["team"] == "Navy"
    events = get_job_events(tenant_id, job.id).items
    assert [e.event_type for e in events] == [EventType.ENQUEUED]
    assert "team" not in str(events[0].data)  # events never carry the payload
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [job.id]
    body = redis_client.hget(f"{jobs_env}:content.msgs", job.message_id)
    assert body is not None and b"Navy" not in body  # ids only on Redis


def test_caller_rollback_sends_nothing(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    with Session(get_engine()) as session:
        enqueue("scheduled_preview", preview(), tenant_id=tenant_id, session=session)
        session.rollback()
    assert _count_jobs(tenant_id) == 0
    assert job_ids_in_redis(redis_client, jobs_env, "content") == []


def test_caller_commit_sends_exactly_once(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    with Session(get_engine()) as session:
        a = enqueue("scheduled_preview", preview("A"), tenant_id=tenant_id, session=session)
        b = enqueue("scheduled_preview", preview("B"), tenant_id=tenant_id, session=session)
        assert job_ids_in_redis(redis_client, jobs_env, "content") == []  # not before commit
        session.commit()
        session.commit()  # a second commit must not send again
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == sorted([a.id, b.id])
    assert flush(timeout=10)
    assert get_job(tenant_id, a.id).status is JobStatus.QUEUED


def test_idempotency_under_20_concurrent_producers(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    barrier = threading.Barrier(20)
    results: list[int] = []
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            barrier.wait()
            job = enqueue(
                "scheduled_preview", preview(), tenant_id=tenant_id, idempotency_key="same"
            )
            results.append(job.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 20
    assert _count_jobs(tenant_id) == 1
    assert job_ids_in_redis(redis_client, jobs_env, "content") == [results[0]]


def test_idempotent_repeat_returns_existing_job(tenant_id: uuid.UUID) -> None:
    first = enqueue("scheduled_preview", preview(), tenant_id=tenant_id, idempotency_key="k1")
    again = enqueue("scheduled_preview", preview(), tenant_id=tenant_id, idempotency_key="k1")
    assert again.id == first.id and first.created and not again.created
    assert _count_events(tenant_id) == 1


def test_enqueue_many_one_batch(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    requests = [JobRequest("scheduled_preview", preview(f"T{i}"), tenant_id) for i in range(50)]
    jobs = enqueue_many(requests)
    assert [get_job(tenant_id, j.id).payload["team"] for j in jobs[:3]] == ["T0", "T1", "T2"]
    assert sorted(job_ids_in_redis(redis_client, jobs_env, "content")) == sorted(j.id for j in jobs)
    assert _count_events(tenant_id) == 50


def test_enqueue_many_results_match_the_rows(tenant_id: uuid.UUID) -> None:
    """Each result, in order, is its own row: the batch's answer gives run_at only where it
    changes from one row to the next, and a repeated idempotency key matches the job found."""
    found = enqueue("scheduled_preview", preview(), tenant_id=tenant_id, idempotency_key="k")
    at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    options: list[dict[str, object]] = [
        {}, {}, {"delay": 90}, {"run_at": at}, {"idempotency_key": "k"}, {"run_at": at}, {},
        {"idempotency_key": "new"}, {"delay": 90},
    ]  # fmt: skip
    requests = [
        JobRequest("scheduled_preview", preview(f"T{i}"), tenant_id, **o)  # type: ignore[arg-type]
        for i, o in enumerate(options)
    ]
    jobs = enqueue_many(requests)
    assert [j.created for j in jobs] == [True] * 4 + [False] + [True] * 4
    assert jobs[4].id == found.id and jobs[4].message_id == found.message_id
    assert jobs[3].run_at == jobs[5].run_at == at
    assert jobs[0].run_at == jobs[1].run_at == jobs[6].run_at < jobs[2].run_at
    for job in jobs:
        row = get_job(tenant_id, job.id)
        assert (job.tenant_id, job.type, job.run_at) == (row.tenant_id, row.type, row.run_at)
    assert len({j.id for j in jobs}) == len(jobs)


def test_delayed_job_goes_to_the_delay_queue(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    job = enqueue("scheduled_preview", preview(), tenant_id=tenant_id, delay=60)
    assert job.run_at > datetime.now(UTC) + timedelta(seconds=50)
    assert redis_client.hexists(f"{jobs_env}:content.DQ.msgs", job.message_id or "")


def test_invalid_payload_names_fields_not_values(tenant_id: uuid.UUID) -> None:
    secretish = "DO-NOT-ECHO-" + uuid.uuid4().hex
    with pytest.raises(InvalidPayload) as info:
        enqueue(
            "scheduled_preview",
            {"credential_id": secretish, "season": "x", "team": "A", "bogus": secretish},
            tenant_id=tenant_id,
        )
    text = str(info.value)
    assert "credential_id" in text and "season" in text and "bogus" in text
    assert secretish not in text and secretish not in repr(info.value.errors)
    assert _count_jobs(tenant_id) == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"type": "no_such_type"}, UnknownJobType),
        ({"delay": -1}, InvalidOption),
        ({"run_at": datetime(2030, 1, 1)}, InvalidOption),
        ({"delay": 1, "run_at": datetime(2030, 1, 1, tzinfo=UTC)}, InvalidOption),
        ({"max_attempts": 0}, InvalidOption),
        ({"priority": 10**6}, InvalidOption),
        ({"idempotency_key": ""}, InvalidOption),
    ],
)
def test_bad_options_raise_and_write_nothing(
    tenant_id: uuid.UUID, kwargs: dict[str, object], error: type[Exception]
) -> None:
    job_type = kwargs.pop("type", "scheduled_preview")
    with pytest.raises(error):
        enqueue(job_type, preview(), tenant_id=tenant_id, **kwargs)  # type: ignore[arg-type]
    assert _count_jobs(tenant_id) == 0


def test_oversized_payload(tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgjobs.settings import get_settings

    monkeypatch.setenv("JOBS_MAX_PAYLOAD_BYTES", "200")
    get_settings.cache_clear()
    with pytest.raises(PayloadTooLarge, match="limit is 200"):
        enqueue("scheduled_preview", preview("x" * 100), tenant_id=tenant_id)
    assert _count_jobs(tenant_id) == 0


def test_unknown_tenant_writes_nothing_even_in_a_batch(tenant_id: uuid.UUID) -> None:
    ghost = uuid.uuid4()
    with pytest.raises(UnknownTenant):
        enqueue_many(
            [
                JobRequest("scheduled_preview", preview(), tenant_id),
                JobRequest("scheduled_preview", preview(), ghost),
            ]
        )
    assert _count_jobs(tenant_id) == 0


@pytest.mark.parametrize(
    "item",
    [
        ("scheduled_preview", {"title": "T", "scene": "x"}),  # a plain tuple of the fields
        {"type": "scheduled_preview"},
        None,
    ],
)
def test_an_item_that_is_not_a_job_request_is_refused_by_position(
    tenant_id: uuid.UUID, item: object
) -> None:
    """JobRequest is a named tuple: a plain tuple of the same fields is still not one."""
    good = JobRequest("scheduled_preview", preview(), tenant_id)
    if isinstance(item, tuple):
        item = (*item, tenant_id)
    with pytest.raises(InvalidOption, match="must hold JobRequest items") as raised:
        enqueue_many([good, item])  # type: ignore[list-item]
    assert raised.value.index == 1
    with pytest.raises(InvalidOption):  # one request, not in a list: its fields are not jobs
        enqueue_many(good)  # type: ignore[arg-type]
    assert _count_jobs(tenant_id) == 0


def test_enqueued_jobs_are_named_tuples_with_the_rows_fields(tenant_id: uuid.UUID) -> None:
    job = enqueue("scheduled_preview", preview(), tenant_id=tenant_id)
    row = get_job(tenant_id, job.id)
    written = (row.id, tenant_id, "scheduled_preview", JobStatus.PENDING, row.queue_job_id)
    assert job == (*written, row.run_at, True)
    assert job._replace(created=False).created is False and job.created is True


def test_send_failure_leaves_job_pending_and_durable(
    tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgjobs.producer import broker

    def refuse(*args: object, **kwargs: object) -> None:
        raise redis_lib.ConnectionError("redis down")

    monkeypatch.setattr(broker, "send", refuse)
    job = enqueue("scheduled_preview", preview(), tenant_id=tenant_id)
    assert get_job(tenant_id, job.id).status is JobStatus.PENDING


def test_other_tenants_job_is_not_found(tenant_id: uuid.UUID) -> None:
    from pgjobs.producer import JobNotFound

    job = enqueue("scheduled_preview", preview(), tenant_id=tenant_id)
    other = make_tenant()
    with pytest.raises(JobNotFound):
        get_job(other, job.id)
    with pytest.raises(JobNotFound):
        get_job_events(other, job.id)
    with pytest.raises(JobNotFound):
        get_job(tenant_id, 10**15)
