"""Every constraint the contract names refuses bad rows, as a typed project error."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Table, insert

from pgjobs.db.engine import transaction
from pgjobs.db.errors import CheckViolation, ForeignKeyViolation, NotNullViolation, UniqueViolation
from pgjobs.db.models import AppCredential, ContentJob, JobEvent, McpServer, Tenant

pytestmark = pytest.mark.usefixtures("use_session_db")


def _insert(table: Table, **values: Any) -> Any:
    with transaction() as conn:
        return conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()


def _tenant() -> uuid.UUID:
    slug = f"c-{uuid.uuid4().hex[:10]}"
    tenant_id: uuid.UUID = _insert(Tenant.__table__, id=uuid.uuid4(), name="T", slug=slug)
    return tenant_id


def _credential(tenant_id: uuid.UUID, **over: Any) -> uuid.UUID:
    values = dict(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        provider="openai",
        name="main",
        secret_ciphertext=b"c",
        secret_nonce=b"n" * 12,
        key_id="k1",
        secret_mask="****",
        status="unknown",
    )
    values.update(over)
    cred_id: uuid.UUID = _insert(AppCredential.__table__, **values)
    return cred_id


def _job(tenant_id: uuid.UUID, **over: Any) -> int:
    values: dict[str, Any] = dict(tenant_id=tenant_id, type="noop", status="pending")
    values.update(over)
    job_id: int = _insert(ContentJob.__table__, **values)
    return job_id


def test_tenant_slug_is_unique() -> None:
    slug = f"u-{uuid.uuid4().hex[:10]}"
    _insert(Tenant.__table__, id=uuid.uuid4(), name="A", slug=slug)
    with pytest.raises(UniqueViolation) as info:
        _insert(Tenant.__table__, id=uuid.uuid4(), name="B", slug=slug)
    assert info.value.constraint == "uq_tenants_slug"
    assert slug not in str(info.value)


def test_credential_unique_per_tenant_provider_name() -> None:
    t = _tenant()
    _credential(t)
    with pytest.raises(UniqueViolation, match="uq_app_credentials_tenant_id_provider_name"):
        _credential(t)
    _credential(_tenant())  # same provider/name, other tenant: fine


@pytest.mark.parametrize(
    ("table", "values"),
    [
        (Tenant.__table__, {"name": None, "slug": "x-none"}),
        (ContentJob.__table__, {"type": None, "status": "pending"}),
    ],
)
def test_not_null(table: Table, values: dict[str, Any]) -> None:
    if table is ContentJob.__table__:
        values = {**values, "tenant_id": _tenant()}
    else:
        values = {**values, "id": uuid.uuid4()}
    with pytest.raises(NotNullViolation):
        _insert(table, **values)


def test_foreign_keys() -> None:
    with pytest.raises(ForeignKeyViolation, match="fk_content_jobs_tenant_id_tenants"):
        _job(uuid.uuid4())
    t = _tenant()
    with pytest.raises(ForeignKeyViolation, match="fk_job_events_job_id_content_jobs"):
        _insert(JobEvent.__table__, job_id=-1, tenant_id=t, event_type="enqueued")


def test_deleting_a_tenant_deletes_its_jobs_and_their_events() -> None:
    """job_events.tenant_id has no foreign key of its own (migration 0011): a tenant's events
    go with its jobs, and another tenant's stay."""
    gone, kept = _tenant(), _tenant()
    jobs = {t: _job(t) for t in (gone, kept)}
    for t, job in jobs.items():
        _insert(JobEvent.__table__, job_id=job, tenant_id=t, event_type="enqueued")
    with transaction() as conn:
        conn.exec_driver_sql("delete from tenants where id = %s", (gone,))
        counts = conn.exec_driver_sql(
            "select tenant_id, count(*) from job_events where tenant_id = any(%s) group by 1",
            ([gone, kept],),
        ).all()
        assert counts == [(kept, 1)]
        left = conn.exec_driver_sql(
            "select count(*) from content_jobs where tenant_id = %s", (gone,)
        )
        assert left.scalar() == 0


def test_mcp_server_cannot_reference_another_tenants_credential() -> None:
    a, b = _tenant(), _tenant()
    cred_b = _credential(b)
    with pytest.raises(ForeignKeyViolation, match="fk_mcp_servers_auth_ref_app_credentials"):
        _insert(
            McpServer.__table__,
            id=uuid.uuid4(),
            tenant_id=a,
            label="x",
            base_url="http://127.0.0.1:1",
            auth_type="token",
            auth_ref=cred_b,
            status="unknown",
        )


def test_mcp_server_with_auth_needs_a_credential() -> None:
    with pytest.raises(CheckViolation, match="ck_mcp_servers_auth_ref_required"):
        _insert(
            McpServer.__table__,
            id=uuid.uuid4(),
            tenant_id=_tenant(),
            label="x",
            base_url="http://127.0.0.1:1",
            auth_type="basic",
            status="unknown",
        )


@pytest.mark.parametrize(
    ("over", "constraint"),
    [
        ({"status": "bogus"}, "ck_content_jobs_status"),
        ({"status": "succeeded"}, "ck_content_jobs_finalized"),
        ({"status": "active"}, "ck_content_jobs_active_lease"),
        ({"attempts": -1}, "ck_content_jobs_attempts_nonnegative"),
        ({"max_attempts": 0}, "ck_content_jobs_max_attempts_positive"),
        ({"progress": 101}, "ck_content_jobs_progress_range"),
    ],
)
def test_job_checks(over: dict[str, Any], constraint: str) -> None:
    t = _tenant()
    with pytest.raises(CheckViolation) as info:
        with transaction() as conn:
            conn.exec_driver_sql(
                "insert into content_jobs (tenant_id, type, status, attempts, max_attempts,"
                " progress) values (%(t)s, 'noop', %(status)s, %(attempts)s, %(max)s, %(p)s)",
                {
                    "t": t,
                    "status": over.get("status", "pending"),
                    "attempts": over.get("attempts", 0),
                    "max": over.get("max_attempts", 3),
                    "p": over.get("progress", 0),
                },
            )
    assert info.value.constraint == constraint


def test_event_type_enum_and_idempotency_key_unique_per_tenant() -> None:
    t = _tenant()
    job = _job(t, idempotency_key="k")
    with pytest.raises(UniqueViolation, match="uq_content_jobs_tenant_id_idempotency_key"):
        _job(t, idempotency_key="k")
    _job(_tenant(), idempotency_key="k")
    with pytest.raises(CheckViolation, match="ck_job_events_event_type"), transaction() as conn:
        conn.exec_driver_sql(
            "insert into job_events (job_id, tenant_id, event_type) values (%s, %s, 'nope')",
            (job, t),
        )


def test_deleting_a_job_cascades_to_its_events() -> None:
    t = _tenant()
    job = _job(t)
    _insert(JobEvent.__table__, job_id=job, tenant_id=t, event_type="enqueued")
    with transaction() as conn:
        conn.exec_driver_sql("delete from content_jobs where id = %s", (job,))
        left = conn.exec_driver_sql("select count(*) from job_events where job_id = %s", (job,))
        assert left.scalar() == 0
