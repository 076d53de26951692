"""Daily quotas per tenant: how many jobs it may create per UTC day, for all its job types or
for one, and how many it has created today.

The count is kept by the enqueue statement itself (pgjobs/db/jobs/state_machine.py, the
``counted`` step): the jobs it creates are added to the tenant's usage rows in the same
statement, and a row whose count would pass its quota breaks the table's CHECK, so PostgreSQL
refuses the whole statement: nothing is written and :class:`QuotaExceeded` is raised. Row locks
serialise concurrent producers on the same count, so a quota is never passed, not even by one.
Days are the database clock's, in UTC. A job found by its idempotency key is not counted again.
A tenant without quotas pays one join against an empty index per enqueue.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.db.errors import CheckViolation
from pgjobs.db.models.tenant_quota import ALL_TYPES, QUOTA_CHECK
from pgjobs.db.statements import execute
from pgjobs.db.validation import as_int, as_uuid
from pgjobs.logs import get_logger
from pgjobs.producer.errors import InvalidOption, QuotaExceeded, UnknownTenant
from pgjobs.producer.job_types import get_job_type

log = get_logger(__name__)

PER_DAY_MAX = 2**31 - 1

SET_QUOTA = text(
    """
    INSERT INTO tenant_quotas (tenant_id, job_type, per_day)
    SELECT id, :job_type, :per_day FROM tenants WHERE id = :tenant_id
    ON CONFLICT (tenant_id, job_type)
    DO UPDATE SET per_day = EXCLUDED.per_day, updated_at = now()
    RETURNING tenant_id
    """
)
REMOVE_QUOTA = text(
    "DELETE FROM tenant_quotas WHERE tenant_id = :tenant_id AND job_type = :job_type "
    "RETURNING tenant_id"
)
USAGE = text(
    """
    SELECT q.job_type, q.per_day, coalesce(u.used, 0) AS used,
           date_trunc('day', timezone('UTC', now())) + interval '1 day' AS resets_at
    FROM tenant_quotas q
    LEFT JOIN tenant_quota_usage u
      ON u.tenant_id = q.tenant_id AND u.job_type = q.job_type
     AND u.day = CAST(timezone('UTC', now()) AS date)
    WHERE q.tenant_id = :tenant_id
    ORDER BY q.job_type
    """
)
PRUNE_USAGE = text(
    "DELETE FROM tenant_quota_usage WHERE day < CAST(timezone('UTC', now()) AS date) - 1"
)
"""Counts of days before yesterday: nothing reads them any more."""


class QuotaUsage(BaseModel):
    """One quota of a tenant and today's count against it."""

    model_config = ConfigDict(frozen=True)

    job_type: str | None
    """None: all of the tenant's job types together."""
    per_day: int
    used: int
    resets_at: datetime
    """The next midnight UTC (the database clock's)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def left(self) -> int:
        return max(0, self.per_day - self.used)


def set_quota(tenant_id: uuid.UUID, per_day: int, *, job_type: str | None = None) -> QuotaUsage:
    """At most ``per_day`` jobs a UTC day for the tenant: all its job types together, or
    ``job_type`` only. Replaces that quota if it exists; takes effect at the next enqueue
    (today's count stays). Raises InvalidOption, UnknownJobType, UnknownTenant."""
    tenant = as_uuid(tenant_id, "tenant_id", InvalidOption)
    limit = as_int(per_day, "per_day", 0, PER_DAY_MAX, InvalidOption)
    scope = _scope(job_type)
    with transaction() as conn:
        row = execute(
            conn, SET_QUOTA, {"tenant_id": tenant, "job_type": scope, "per_day": limit}
        ).fetchone()
    if row is None:
        raise UnknownTenant("unknown tenant")
    log.info("quota.set", tenant_id=str(tenant), job_type=scope, per_day=limit)
    return next(u for u in quota_usage(tenant) if (u.job_type or ALL_TYPES) == scope)


def remove_quota(tenant_id: uuid.UUID, *, job_type: str | None = None) -> bool:
    """Remove a quota (all types, or ``job_type``'s); whether there was one."""
    tenant = as_uuid(tenant_id, "tenant_id", InvalidOption)
    scope = ALL_TYPES if job_type is None else _name(job_type)
    with transaction() as conn:
        found = execute(conn, REMOVE_QUOTA, {"tenant_id": tenant, "job_type": scope}).fetchone()
    log.info("quota.removed", tenant_id=str(tenant), job_type=scope, found=found is not None)
    return found is not None


def quota_usage(tenant_id: uuid.UUID) -> list[QuotaUsage]:
    """The tenant's quotas and today's counts (the tenant-wide one first)."""
    tenant = as_uuid(tenant_id, "tenant_id", InvalidOption)
    with transaction() as conn:
        rows = execute(conn, USAGE, {"tenant_id": tenant}).fetchall()
    return [
        QuotaUsage(
            job_type=None if r.job_type == ALL_TYPES else r.job_type,
            per_day=r.per_day,
            used=r.used,
            resets_at=r.resets_at.replace(tzinfo=UTC),
        )
        for r in rows
    ]


@contextmanager
def quota_refusals() -> Iterator[None]:
    """Around an enqueue statement: its refusal by a quota's CHECK becomes QuotaExceeded."""
    try:
        yield
    except CheckViolation as exc:
        if not (exc.constraint or "").endswith(QUOTA_CHECK):
            raise
        raise refusal(exc.row) from None


def refusal(row: str | None) -> QuotaExceeded:
    """QuotaExceeded for a refused usage row, as PostgreSQL wrote it in the error's detail:
    ``Failing row contains (tenant_id, day, job_type, used, per_day).`` The day is the database
    clock's, so ``resets_at`` is too; an unreadable detail falls back to this host's clock."""
    message = "a daily quota of the tenant would be exceeded (nothing was written)"
    found = _FAILING_ROW.fullmatch((row or "").strip())
    if found is None:
        return QuotaExceeded(message, next_midnight_utc())
    day = datetime.fromisoformat(found["day"]).replace(tzinfo=UTC)
    job_type = found["job_type"]
    return QuotaExceeded(
        message,
        day + timedelta(days=1),
        quota=int(found["per_day"]),
        job_type=None if job_type == ALL_TYPES else job_type,
        count=int(found["used"]),
        tenant_id=uuid.UUID(found["tenant_id"]),
    )


_FAILING_ROW = re.compile(
    r"Failing row contains \((?P<tenant_id>[0-9a-f-]{36}), (?P<day>\d{4}-\d{2}-\d{2}), "
    r"(?P<job_type>.+), (?P<used>\d+), (?P<per_day>\d+)\)\."
)


def next_midnight_utc(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    today = now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def _scope(job_type: str | None) -> str:
    if job_type is None:
        return ALL_TYPES
    return get_job_type(_name(job_type)).name


def _name(job_type: Any) -> str:
    if not isinstance(job_type, str) or not job_type or job_type == ALL_TYPES:
        raise InvalidOption.for_field("job_type", "must be a job type's name")
    return job_type
