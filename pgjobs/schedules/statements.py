"""Every statement on ``job_schedules``, named, with the small functions that run them.

Each runs on the driver connection (pgjobs/db/statements.py) inside the caller's transaction.
Commands lock the schedule's row (``FOR UPDATE``) before deciding anything, so a command and
the scheduler never act on a stale row; the scheduler skips rows a command holds
(``SKIP LOCKED``) and fires them on its next pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from pgjobs.db.models.job_schedule import ScheduleStatus
from pgjobs.db.statements import execute
from pgjobs.schedules.definition import Definition

COLUMNS = """id, tenant_id, name, job_type, payload, cron, interval_seconds, timezone, status,
    misfire_policy, catch_up_limit, jitter_seconds, declared, next_run_at, last_run_at,
    last_job_id, created_at, updated_at"""

# The f-strings below join this module's own constant SQL fragments, never input.
SELECT_ONE = text(
    f"""
    SELECT {COLUMNS}, now() AS db_now FROM job_schedules
    WHERE id = CAST(:id AS uuid) AND tenant_id = CAST(:tenant_id AS uuid)
    """  # noqa: S608
)

LOCK_ONE = text(
    f"""
    SELECT {COLUMNS}, now() AS db_now FROM job_schedules
    WHERE id = CAST(:id AS uuid) AND tenant_id = CAST(:tenant_id AS uuid)
    FOR UPDATE
    """  # noqa: S608
)

SELECT_BY_NAME = text(
    f"""
    SELECT {COLUMNS}, now() AS db_now FROM job_schedules
    WHERE tenant_id = CAST(:tenant_id AS uuid) AND name = :name
    """  # noqa: S608
)

LOCK_TENANT = text(
    f"""
    SELECT {COLUMNS}, now() AS db_now FROM job_schedules
    WHERE tenant_id = CAST(:tenant_id AS uuid)
    ORDER BY name
    FOR UPDATE
    """  # noqa: S608
)
"""``sync``: every schedule of the tenant, locked for the comparison and the writes."""

LIST = text(
    f"""
    SELECT {COLUMNS} FROM job_schedules
    WHERE tenant_id = CAST(:tenant_id AS uuid) AND status = ANY(CAST(:statuses AS text[]))
      AND name > :after
    ORDER BY name
    LIMIT :limit
    """  # noqa: S608
)

CLOCK = text("SELECT now() AS db_now")

INSERT = text(
    f"""
    INSERT INTO job_schedules (id, tenant_id, name, job_type, payload, cron, interval_seconds,
                               timezone, status, misfire_policy, catch_up_limit, jitter_seconds,
                               declared, next_run_at)
    SELECT CAST(:id AS uuid), t.id, CAST(:name AS text), CAST(:job_type AS text),
           CAST(:payload AS jsonb), CAST(:cron AS text), CAST(:interval_seconds AS int),
           CAST(:timezone AS text), CAST(:status AS text), CAST(:misfire_policy AS text),
           CAST(:catch_up_limit AS smallint), CAST(:jitter_seconds AS int),
           CAST(:declared AS boolean), CAST(:next_run_at AS timestamptz)
    FROM tenants t WHERE t.id = CAST(:tenant_id AS uuid)  -- none for an unknown tenant
    RETURNING {COLUMNS}
    """  # noqa: S608
)

WRITE = text(
    f"""
    UPDATE job_schedules
    SET name = :name, job_type = :job_type, payload = CAST(:payload AS jsonb), cron = :cron,
        interval_seconds = :interval_seconds, timezone = :timezone, status = :status,
        misfire_policy = :misfire_policy, catch_up_limit = :catch_up_limit,
        jitter_seconds = :jitter_seconds, declared = :declared, next_run_at = :next_run_at,
        updated_at = now()
    WHERE id = CAST(:id AS uuid)
    RETURNING {COLUMNS}
    """  # noqa: S608
)
"""A locked row's new definition and status (update, pause, resume, archive, sync)."""

RECORD_RUN_NOW = text(
    """
    UPDATE job_schedules SET last_run_at = now(), last_job_id = :job_id, updated_at = now()
    WHERE id = CAST(:id AS uuid)
    """
)

# --- the scheduler --------------------------------------------------------------------------------

LOCK_DUE = text(
    """
    SELECT id, tenant_id, job_type, payload, cron, interval_seconds, timezone, misfire_policy,
           catch_up_limit, jitter_seconds, next_run_at,
           coalesce(CAST(:now AS timestamptz), now()) AS db_now
    FROM job_schedules
    WHERE status = 'active' AND next_run_at <= coalesce(CAST(:now AS timestamptz), now())
      AND id <> ALL(CAST(:skip AS uuid[]))
    ORDER BY next_run_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)
"""Due schedules, locked for the pass's transaction; other passes skip them. ``:now`` is NULL
except in tests, which give the clock; ``:skip`` holds schedules this pass could not fire."""

ADVANCE = text(
    """
    UPDATE job_schedules s
    SET next_run_at = a.next_run_at,
        last_run_at = coalesce(a.last_run_at, s.last_run_at),
        last_job_id = coalesce(a.last_job_id, s.last_job_id),
        updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:next_runs AS timestamptz[]),
                CAST(:last_runs AS timestamptz[]), CAST(:last_jobs AS bigint[]))
         AS a(id, next_run_at, last_run_at, last_job_id)
    WHERE s.id = a.id
    """
)
"""The fired schedules' next slots, in the transaction that wrote their jobs."""


def fields(definition: Definition) -> dict[str, Any]:
    """The parameters of INSERT and WRITE that a definition fills."""
    return {
        "name": definition.name,
        "job_type": definition.job_type,
        "payload": definition.payload_json,
        "cron": definition.timing.cron,
        "interval_seconds": definition.timing.interval_seconds,
        "timezone": definition.timing.timezone,
        "misfire_policy": definition.misfire_policy.value,
        "catch_up_limit": definition.catch_up_limit,
        "jitter_seconds": definition.jitter_seconds,
    }


def insert(
    conn: Connection,
    tenant_id: uuid.UUID,
    definition: Definition,
    *,
    status: ScheduleStatus,
    next_run_at: datetime | None,
    declared: bool,
) -> Any:
    """The new row, or None when the tenant does not exist. A taken name raises
    ``UniqueViolation`` (constraint ``uq_job_schedules_tenant_id_name``)."""
    params = fields(definition) | {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "status": status.value,
        "next_run_at": next_run_at,
        "declared": declared,
    }
    return execute(conn, INSERT, params).fetchone()


def write(
    conn: Connection,
    schedule_id: uuid.UUID,
    definition: Definition,
    *,
    status: ScheduleStatus,
    next_run_at: datetime | None,
    declared: bool,
) -> Any:
    """Rewrite a locked row; returns it."""
    params = fields(definition) | {
        "id": schedule_id,
        "status": status.value,
        "next_run_at": next_run_at,
        "declared": declared,
    }
    return execute(conn, WRITE, params).fetchone()


def lock_one(conn: Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> Any:
    return execute(conn, LOCK_ONE, {"id": schedule_id, "tenant_id": tenant_id}).fetchone()


def clock(conn: Connection) -> datetime:
    """The database's clock (the transaction's start)."""
    row = execute(conn, CLOCK, {}).fetchone()
    assert row is not None
    now: datetime = row.db_now
    return now


@dataclass(frozen=True, slots=True)
class Advance:
    """One fired schedule's new state."""

    schedule_id: uuid.UUID
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: int | None


def lock_due(
    conn: Connection, now: datetime | None, limit: int, skip: Sequence[uuid.UUID]
) -> list[Any]:
    params = {"now": now, "limit": limit, "skip": list(skip)}
    return execute(conn, LOCK_DUE, params).fetchall()


def advance(conn: Connection, advances: Sequence[Advance]) -> None:
    if not advances:
        return
    # A batch's schedules mostly share their times: each is written out once.
    texts: dict[datetime | None, str | None] = {None: None}

    def stamp(moment: datetime | None) -> str | None:
        found = texts.get(moment)
        if found is None and moment is not None:
            found = texts[moment] = moment.isoformat()
        return found

    params = {
        "ids": [str(a.schedule_id) for a in advances],
        "next_runs": [stamp(a.next_run_at) for a in advances],
        "last_runs": [stamp(a.last_run_at) for a in advances],
        "last_jobs": [a.last_job_id for a in advances],
    }
    execute(conn, ADVANCE, params)
