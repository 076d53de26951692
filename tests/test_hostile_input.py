"""Hostile input to the producer API: every argument of every public function, generated.

Each call either succeeds or raises an error of docs/producer.md (a ``ProducerError`` or
``UnknownTenant``) whose message prints, having written nothing; never a driver error, a
``DatabaseError`` or a raw Python exception. Then the regressions these properties found: rows
that were committed before an error and broke the tenant's list for good, payloads pydantic
validates but cannot serialise, text PostgreSQL cannot store, forged cursors, non-UUID tenants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from helpers import make_tenant
from hostile import (
    PROPERTY,
    Arguments,
    call_checked,
    cursor_of,
    cursors,
    delays,
    far_datetimes,
    garbage,
    hostile_payload_values,
    hostile_text,
    huge_ints,
    nested,
    non_uuids,
    numbers,
    refused_cleanly,
    row_counts,
)
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.db.models import JobStatus
from pgjobs.producer import (
    EnqueuedJob,
    InvalidOption,
    InvalidPayload,
    JobRequest,
    ProducerError,
    UnknownTenant,
    cancel_job,
    count_jobs_by_status,
    enqueue,
    enqueue_many,
    get_job,
    get_job_events,
    list_jobs,
    retry_job,
)

pytestmark = pytest.mark.usefixtures("jobs_env")

DOCUMENTED = (ProducerError, UnknownTenant)
"""The errors docs/producer.md lists for the producer API."""


def preview(**changes: object) -> dict[str, object]:
    return {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy", **changes}


@pytest.fixture
def job_id(tenant_id: uuid.UUID) -> int:
    """A job of ``tenant_id``: the valid id the property tests mix in."""
    return enqueue("scheduled_preview", preview(), tenant_id=tenant_id).id


def tenants(tenant_id: uuid.UUID) -> st.SearchStrategy[Any]:
    """The test's tenant, as a UUID or its string."""
    return st.sampled_from([tenant_id, str(tenant_id)])


HOSTILE_TENANTS = st.one_of(st.uuids(), non_uuids)
"""An unknown tenant, or no UUID at all."""
HOSTILE_IDS = st.one_of(numbers, huge_ints, hostile_text, garbage)
HOSTILE_TEXT = hostile_text | garbage | numbers
VALID_TEXT = st.none() | st.text(alphabet="abc-_.:", min_size=1, max_size=20)
LIMITS = st.integers(1, 500)
SOON = st.datetimes(datetime(2000, 1, 1), datetime(8999, 1, 1), timezones=st.just(UTC))


def any_payloads() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"data": hostile_payload_values},
        optional={"mapping": st.dictionaries(hostile_text, hostile_payload_values, max_size=3)},
    )


HOSTILE_PAYLOADS = st.one_of(
    st.builds(lambda team: preview(team=team), hostile_text),
    st.builds(lambda key, value: preview(**{key: value}), hostile_text, numbers),
    garbage,
)


def request(data: st.DataObject, tenant_id: uuid.UUID) -> JobRequest:
    """One job request: its arguments valid but (mostly) one."""
    args = Arguments(
        data, "type", "payload", "tenant_id", "key", "delay", "run_at", "priority", "attempts"
    )
    type_name = args.draw(
        "type", st.sampled_from(["scheduled_preview", "hostile_any"]), HOSTILE_TEXT
    )
    payload = args.draw(
        "payload",
        st.builds(preview) if type_name != "hostile_any" else st.just({"data": 1}),
        any_payloads() if type_name == "hostile_any" else HOSTILE_PAYLOADS,
    )
    delay = args.draw(
        "delay",
        st.none() | st.floats(0, 3600) | st.timedeltas(timedelta(0), timedelta(days=365)),
        delays,
    )
    return JobRequest(
        type=type_name,
        payload=payload,
        tenant_id=args.draw("tenant_id", tenants(tenant_id), HOSTILE_TENANTS),
        idempotency_key=args.draw("key", VALID_TEXT, HOSTILE_TEXT),
        delay=delay,
        run_at=args.draw(
            "run_at", st.none() if delay is not None else st.none() | SOON, far_datetimes
        ),
        priority=args.draw("priority", st.none() | st.integers(-10, 10), numbers),
        max_attempts=args.draw("attempts", st.none() | st.integers(1, 100), numbers),
    )


def still_readable(tenant_id: uuid.UUID, outcome: object) -> None:
    """Whatever happened, the tenant's jobs still list, and a job just enqueued reads back."""
    list_jobs(tenant_id, limit=500)
    if isinstance(outcome, EnqueuedJob):
        assert get_job(tenant_id, outcome.id).run_at == outcome.run_at
    if isinstance(outcome, list):
        for job in outcome:
            get_job(tenant_id, job.id)


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_enqueue_answers_hostile_arguments(tenant_id: uuid.UUID, data: st.DataObject) -> None:
    r = request(data, tenant_id)
    session = data.draw(st.none() | garbage if data.draw(st.integers(0, 9)) == 0 else st.none())
    outcome = call_checked(
        lambda: enqueue(
            r.type,
            r.payload,
            tenant_id=r.tenant_id,
            session=session,
            idempotency_key=r.idempotency_key,
            delay=r.delay,
            run_at=r.run_at,
            priority=r.priority,
            max_attempts=r.max_attempts,
        ),
        DOCUMENTED,
    )
    still_readable(tenant_id, outcome)


@PROPERTY
@given(data=st.data())
def test_enqueue_many_answers_hostile_batches(tenant_id: uuid.UUID, data: st.DataObject) -> None:
    args = Arguments(data, "requests")
    batch = args.draw(
        "requests",
        st.lists(st.builds(lambda: request(data, tenant_id)), min_size=1, max_size=3),
        st.one_of(garbage, hostile_text, st.lists(garbage, min_size=1, max_size=2)),
    )
    outcome = call_checked(lambda: enqueue_many(batch), DOCUMENTED)
    still_readable(tenant_id, outcome)


@PROPERTY
@given(data=st.data())
def test_status_queries_answer_hostile_arguments(
    tenant_id: uuid.UUID, job_id: int, data: st.DataObject
) -> None:
    call = data.draw(st.sampled_from(["get_job", "get_job_events", "count_jobs_by_status"]))
    args = Arguments(data, "tenant", "job", "cursor", "limit", "type")
    tenant = args.draw("tenant", tenants(tenant_id), HOSTILE_TENANTS)
    if call == "count_jobs_by_status":
        job_type = args.draw("type", VALID_TEXT, HOSTILE_TEXT)
        call_checked(lambda: count_jobs_by_status(tenant, type=job_type), DOCUMENTED)
        return
    job = args.draw("job", st.just(job_id), HOSTILE_IDS)
    if call == "get_job":
        call_checked(lambda: get_job(tenant, job), DOCUMENTED)
        return
    cursor = args.draw("cursor", st.none() | st.integers(0, job_id).map(cursor_of), cursors)
    limit = args.draw("limit", LIMITS, numbers)
    call_checked(lambda: get_job_events(tenant, job, cursor=cursor, limit=limit), DOCUMENTED)


@PROPERTY
@given(data=st.data())
def test_list_jobs_answers_hostile_arguments(
    tenant_id: uuid.UUID, job_id: int, data: st.DataObject
) -> None:
    args = Arguments(
        data, "tenant", "status", "type", "after", "before", "key", "cursor", "limit", "order"
    )
    statuses = st.sampled_from(list(JobStatus))
    tenant = args.draw("tenant", tenants(tenant_id), HOSTILE_TENANTS)
    options = {
        "status": args.draw("status", st.none() | statuses | st.lists(statuses), HOSTILE_TEXT),
        "type": args.draw("type", VALID_TEXT, HOSTILE_TEXT),
        "created_after": args.draw("after", st.none() | SOON, far_datetimes | garbage),
        "created_before": args.draw("before", st.none() | SOON, far_datetimes | hostile_text),
        "idempotency_key": args.draw("key", VALID_TEXT, HOSTILE_TEXT),
        "cursor": args.draw("cursor", st.none() | st.integers(0, job_id).map(cursor_of), cursors),
        "limit": args.draw("limit", LIMITS, numbers),
        "order": args.draw("order", st.sampled_from(["newest", "oldest"]), hostile_text),
    }
    call_checked(lambda: list_jobs(tenant, **options), DOCUMENTED)


@PROPERTY
@given(data=st.data())
def test_cancel_and_retry_answer_hostile_arguments(
    tenant_id: uuid.UUID, job_id: int, data: st.DataObject
) -> None:
    args = Arguments(data, "tenant", "job", "reason")
    tenant = args.draw("tenant", tenants(tenant_id), HOSTILE_TENANTS)
    job = args.draw("job", st.just(job_id), HOSTILE_IDS)
    reason = args.draw("reason", VALID_TEXT, HOSTILE_TEXT | st.text(min_size=1001))
    if data.draw(st.booleans()):
        call_checked(lambda: cancel_job(tenant, job, reason=reason), DOCUMENTED)
    else:
        call_checked(lambda: retry_job(tenant, job), DOCUMENTED)


# --- regressions: a row committed, then an error, and the tenant's list broken for good ---------


@pytest.mark.parametrize(
    "when",
    [
        {"delay": 1e12},
        {"delay": float("inf")},
        {"delay": 10**400},
        {"delay": timedelta.max},
        {"run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))},
        {"run_at": datetime.max.replace(tzinfo=UTC)},
        {"run_at": datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))},
    ],
    ids=["1e12", "inf", "10**400", "timedelta.max", "9999-local", "datetime.max", "datetime.min"],
)
def test_far_future_times_are_refused_before_writing(
    tenant_id: uuid.UUID, when: dict[str, Any]
) -> None:
    before = row_counts()
    with pytest.raises(InvalidOption) as info:
        enqueue("scheduled_preview", preview(), tenant_id=tenant_id, **when)
    refused_cleanly(info.value, DOCUMENTED)
    assert row_counts() == before
    assert list_jobs(tenant_id).items == []


def test_the_latest_time_allowed_is_stored_and_read_back(tenant_id: uuid.UUID) -> None:
    late = datetime(9998, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=14)))
    job = enqueue("scheduled_preview", preview(), tenant_id=tenant_id, run_at=late)
    assert job.run_at == late
    assert list_jobs(tenant_id).items[0].run_at == late


FAR_ROWS = [
    # (run_at, created_at) as PostgreSQL text: beyond Python's years 1..9999 both ways
    ("infinity", "now"),
    ("294276-12-31 23:59:59+00", "-infinity"),
    ("4713-01-01 00:00:00+00 BC", "20000-01-01 00:00:00+00"),
    ("9999-12-31 23:00:00-05", "0001-01-01 00:00:00+05"),
]


def insert_far_rows(tenant_id: uuid.UUID) -> list[int]:
    """Jobs (each with an event) whose times Python cannot hold, written by hand."""
    ids = []
    with transaction() as conn:
        for n, (run_at, created_at) in enumerate(FAR_ROWS):
            job = conn.execute(
                text(
                    "INSERT INTO content_jobs (tenant_id, type, payload, status, max_attempts,"
                    " priority, run_at, created_at, idempotency_key)"
                    " VALUES (:t, 'scheduled_preview', '{}', 'pending', 3, 0,"
                    " CAST(:run_at AS timestamptz), CAST(:created_at AS timestamptz), :key)"
                    " RETURNING id"
                ),
                {"t": tenant_id, "run_at": run_at, "created_at": created_at, "key": f"far-{n}"},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO job_events (job_id, tenant_id, event_type, data, created_at)"
                    " VALUES (:j, :t, 'enqueued', '{}', CAST(:at AS timestamptz))"
                ),
                {"j": job, "t": tenant_id, "at": run_at},
            )
            ids.append(job)
    return ids


def test_rows_beyond_python_dates_do_not_break_reads(tenant_id: uuid.UUID) -> None:
    ids = insert_far_rows(tenant_id)
    listed = list_jobs(tenant_id).items
    assert sorted(j.id for j in listed) == ids
    for job_id in ids:
        job = get_job(tenant_id, job_id)
        assert job.run_at.year in (1, 9999) and job.created_at.tzinfo is not None
        assert len(get_job_events(tenant_id, job_id).items) == 1
    assert count_jobs_by_status(tenant_id)[JobStatus.PENDING] == len(ids)
    assert cancel_job(tenant_id, ids[0]).status is JobStatus.CANCELLED
    # the idempotent repeat reads the far row back instead of failing on it
    again = enqueue("scheduled_preview", preview(), tenant_id=tenant_id, idempotency_key="far-1")
    assert not again.created and again.id == ids[1]


# --- regressions: payloads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        (object(), "JSON cannot represent"),
        (b"\xff\xfe", "not UTF-8"),
        ("lone \ud800 surrogate", "not valid Unicode"),
        (nested(10_000), "nested too deeply"),
    ],
    ids=["object", "bytes", "surrogate", "nesting"],
)
def test_unserialisable_payloads_are_invalid_payload(
    tenant_id: uuid.UUID, value: object, cause: str
) -> None:
    before = row_counts()
    with pytest.raises(InvalidPayload) as info:
        enqueue("hostile_any", {"data": value}, tenant_id=tenant_id)
    assert info.value.errors[0][1] == "serialization" and cause in str(info.value)
    refused_cleanly(info.value, DOCUMENTED)
    assert row_counts() == before


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"data": "a\x00b"}, "data"),
        ({"data": [1, {"x": "\x00"}]}, "data.1.x"),
        ({"mapping": {"k\x00": 1}}, "mapping.'k\\x00'"),
        ({"mapping": {"k\ud800": 1}}, "mapping.'k\\ud800'"),
        ({"data": 10**140_000}, "data"),
    ],
    ids=["nul-value", "nul-nested", "nul-key", "surrogate-key", "long-number"],
)
def test_payloads_jsonb_cannot_hold_are_refused_by_field(
    tenant_id: uuid.UUID, payload: dict[str, object], path: str
) -> None:
    before = row_counts()
    with pytest.raises(InvalidPayload) as info:
        enqueue("hostile_any", payload, tenant_id=tenant_id)
    assert [e[0] for e in info.value.errors] == [path]
    refused_cleanly(info.value, DOCUMENTED)
    assert row_counts() == before


def test_nul_in_a_typed_payload_field_names_it(tenant_id: uuid.UUID) -> None:
    with pytest.raises(InvalidPayload) as info:
        enqueue("scheduled_preview", preview(team="Na\x00vy"), tenant_id=tenant_id)
    assert info.value.errors[0][0] == "team"


def test_text_that_only_looks_suspect_is_stored(tenant_id: uuid.UUID) -> None:
    """A literal backslash-u0000 and a real U+FFFD are text jsonb holds."""
    payload = {"data": "\\u0000 \ufffd", "mapping": {"\ufffd": "\\u0000"}}
    job = enqueue("hostile_any", payload, tenant_id=tenant_id)
    assert get_job(tenant_id, job.id).payload == payload


# --- regressions: options, cursors, tenants -------------------------------------------------------


@pytest.mark.parametrize("key", ["a\x00b", "\x00", "a\ud800", "\udcff"])
def test_idempotency_keys_postgresql_cannot_store(tenant_id: uuid.UUID, key: str) -> None:
    before = row_counts()
    with pytest.raises(InvalidOption, match="idempotency_key") as info:
        enqueue("scheduled_preview", preview(), tenant_id=tenant_id, idempotency_key=key)
    refused_cleanly(info.value, DOCUMENTED)
    assert row_counts() == before
    with pytest.raises(InvalidOption, match="idempotency_key"):
        list_jobs(tenant_id, idempotency_key=key)


@pytest.mark.parametrize("last_id", [10**22, 2**63, -1, " 1", "+1", "1_0", "\u0661"])
def test_forged_cursors_are_invalid_option(
    tenant_id: uuid.UUID, job_id: int, last_id: object
) -> None:
    with pytest.raises(InvalidOption, match="cursor"):
        list_jobs(tenant_id, cursor=cursor_of(last_id))
    with pytest.raises(InvalidOption, match="cursor"):
        get_job_events(tenant_id, job_id, cursor=cursor_of(last_id))


CALLS_WITH_A_TENANT: dict[str, Callable[[Any], object]] = {
    "enqueue": lambda t: enqueue("scheduled_preview", preview(), tenant_id=t),
    "enqueue_many": lambda t: enqueue_many([JobRequest("scheduled_preview", preview(), t)]),
    "get_job": lambda t: get_job(t, 1),
    "get_job_events": lambda t: get_job_events(t, 1),
    "list_jobs": list_jobs,
    "count_jobs_by_status": count_jobs_by_status,
    "cancel_job": lambda t: cancel_job(t, 1),
    "retry_job": lambda t: retry_job(t, 1),
}


@pytest.mark.parametrize("call", CALLS_WITH_A_TENANT.values(), ids=CALLS_WITH_A_TENANT.keys())
@pytest.mark.parametrize("tenant", ["not-a-uuid", "", 42, None, b"\x00" * 16, "\x00"])
def test_a_tenant_that_is_not_a_uuid_is_invalid_option_everywhere(
    db_env: str, call: Callable[[Any], object], tenant: object
) -> None:
    before = row_counts()
    with pytest.raises(InvalidOption, match="tenant_id must be a UUID"):
        call(tenant)
    assert row_counts() == before


def test_a_tenant_id_as_a_string_is_read_as_its_uuid(tenant_id: uuid.UUID) -> None:
    job = enqueue("scheduled_preview", preview(), tenant_id=str(tenant_id))  # type: ignore[arg-type]
    assert get_job(str(tenant_id), job.id).tenant_id == tenant_id  # type: ignore[arg-type]
    other = make_tenant()
    with pytest.raises(UnknownTenant):
        enqueue("scheduled_preview", preview(), tenant_id=uuid.uuid4())
    assert list_jobs(other).items == []
