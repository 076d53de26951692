"""The job tables' statements find their rows through the indexes meant for them, in the plan
a prepared statement keeps, whatever the table held when it was planned.

Right after a bulk enqueue the statistics are stale; a generic plan then once intersected the
ids with every live job from the partial run_at index (4 ms instead of 0.1 ms per statement, and
growing with the backlog). On a table of a few rows (a new database, workers started on an
empty queue) a sequential scan is the cheaper plan at that moment, and a prepared statement
kept it as the table grew (the engines now run with ``enable_seqscan = off``). And a
``status = $1`` condition alone cannot use a partial index over the live statuses. Each
statement is PREPAREd here and its generic plan explained, on the engine it runs on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement

from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.statements import array_literal

pytestmark = pytest.mark.usefixtures("jobs_env")


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


BACKLOGS = pytest.mark.parametrize(
    "backlog", [10_000, 3], ids=["never-analyzed backlog", "tiny table"]
)
"""Jobs in the table when the plans are made: a backlog never analyzed, and a few rows."""


def _enqueue_backlog(tenant_id: uuid.UUID, backlog: int) -> list[Any]:
    """``backlog`` pending jobs (never analyzed); the last call's jobs."""
    from pgjobs.producer import JobRequest, enqueue_many
    from pgjobs.producer.builtin_types import scheduled_preview

    payload = {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy"}
    jobs: list[Any] = []
    for offset in range(0, backlog, 2000):
        size = min(2000, backlog - offset)
        jobs = enqueue_many([JobRequest(scheduled_preview, payload, tenant_id)] * size)
    return jobs


def _indexes(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        if "Index Name" in plan:
            yield plan["Index Name"]
        for value in plan.values():
            yield from _indexes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _indexes(item)


@BACKLOGS
def test_batched_transitions_use_the_primary_key(
    use_fresh_db: str, tenant_id: uuid.UUID, backlog: int
) -> None:
    """Planned on the hot path's own connections (the autocommit engine's), as prepared
    statements are: on a tiny table too, where a sequential scan is the cheaper plan at that
    moment and a cached generic plan would keep scanning the table as it grows. A limited
    round always runs generic plans (docs/limits.md): its statements must find a key's jobs
    through the key indexes, never through a status index or a hash of every waiting job."""
    jobs = _enqueue_backlog(tenant_id, backlog)
    ids = array_literal([j.id for j in jobs[:3]])
    tenants = array_literal([tenant_id] * 3)
    texts = array_literal(["m1", "m2", "m3"])
    numbers = array_literal([1, 1, 1])
    flags = array_literal([True, False, True])
    claim = {
        "ids": ids,
        "tenant_ids": tenants,
        "message_ids": texts,
        "aheads": flags,
        "lease_seconds": 30,
        "worker": "w",
    }
    done = {"done_ids": ids, "done_attempts": numbers, "results": texts, "durations": numbers}
    statements = {
        "MARK_SENT": (sm.MARK_SENT, {"ids": ids}),
        "RESEND": (sm.RESEND, {"ids": ids, "message_ids": texts, "reason": "test"}),
        "CLAIM": (sm.CLAIM, claim),
        "EXTEND_LEASES": (sm.EXTEND_LEASES, {"ids": ids, "attempts": numbers, "lease_seconds": 30}),
        "LOCK_LIMIT_KEYS": (sm.LOCK_LIMIT_KEYS, {"ids": ids}),
        "LOCK_LIMIT_AND_RATE_KEYS": (sm.LOCK_LIMIT_AND_RATE_KEYS, {"ids": ids, "rate_keys": texts}),
        "PARKED_KEYS": (sm.PARKED_KEYS, {"ids": ids}),
    }
    # these also look up the keys of the batch's limited jobs, through the key index
    by_key = {
        "COMPLETE": (sm.COMPLETE, done),
        "CLAIM_AND_COMPLETE": (sm.CLAIM_AND_COMPLETE, {**claim, **done}),
        "CLAIM_LIMITED": (sm.CLAIM_LIMITED, claim),
        "CLAIM_AND_COMPLETE_LIMITED": (sm.CLAIM_AND_COMPLETE_LIMITED, {**claim, **done}),
    }
    rates = {"rate_ids": ids, "rate_keys": texts, "rate_ns": numbers, "rate_pers": numbers}
    # and, with rates, the keys' windows and their lines of waiting jobs
    by_rate = {
        "CLAIM_RATED": (sm.CLAIM_RATED, {**claim, **rates}),
        "CLAIM_AND_COMPLETE_RATED": (sm.CLAIM_AND_COMPLETE_RATED, {**claim, **done, **rates}),
    }
    with autocommit() as conn:
        for name, (statement, params) in statements.items():
            used = _generic_plan_indexes(conn, statement, params) - {"pk_tenants"}
            assert used == {"pk_content_jobs"}, f"{name} uses {sorted(used)}"
        for name, (statement, params) in by_key.items():
            used = _generic_plan_indexes(conn, statement, params) - {"pk_tenants"}
            assert used == {"pk_content_jobs", "ix_content_jobs_concurrency_key"}, name
        for name, (statement, params) in by_rate.items():
            used = _generic_plan_indexes(conn, statement, params) - {"pk_tenants"}
            keys = {"ix_content_jobs_concurrency_key", "ix_content_jobs_rate_key"}
            assert used == {"pk_content_jobs", "pk_rate_windows"} | keys, name


@BACKLOGS
def test_maintenance_scans_use_their_partial_indexes(
    use_fresh_db: str, tenant_id: uuid.UUID, backlog: int
) -> None:
    """The relay, the rescuer, the pruner and the unserved-jobs report each read the small set
    they need through its partial index, on the connections they run on (the transactional
    engine's), whatever the table's size when the plan was made: a sequential scan would read
    every finished job on every pass."""
    from pgjobs.producer.served import WAITING_BY_TYPE
    from pgjobs.worker.maintenance import PRUNE

    _enqueue_backlog(tenant_id, backlog)
    unsent = {
        "status": "pending",
        "older_than": 30,
        "horizon": 3600,
        "limit": 100,
        "types": "{scheduled_preview,mcp_ping}",
    }
    statements = {
        "UNSENT_CANDIDATES": (sm.UNSENT_CANDIDATES, unsent, "ix_content_jobs_live_run_at"),
        "WAITING_BY_TYPE": (WAITING_BY_TYPE, {}, "ix_content_jobs_live_run_at"),
        "RESCUE_EXPIRED": (
            sm.RESCUE_EXPIRED,
            {"grace": 5, "limit": 100},
            "ix_content_jobs_active_lease",
        ),
        "PRUNE": (PRUNE, {"retention": 60, "limit": 100}, "ix_content_jobs_completed_at"),
    }
    with transaction() as conn:
        for name, (statement, params, index) in statements.items():
            used = _generic_plan_indexes(conn, statement, params) - {"pk_content_jobs"}
            assert used == {index}, f"{name} uses {sorted(used)}"


def _generic_plan_indexes(
    conn: Connection, statement: ClauseElement, params: dict[str, Any]
) -> set[str]:
    """The indexes of the statement's generic plan, the plan a prepared statement keeps,
    planned on ``conn``'s own session settings: PREPAREd with $n parameters, then EXPLAIN
    EXECUTE under ``plan_cache_mode = force_generic_plan`` (an EXPLAIN with bound values
    would plan for those values instead)."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    compiled = statement.compile(dialect=PGDialect_asyncpg())  # $1, $2, ... placeholders
    names = list(dict.fromkeys(compiled.positiontup or []))
    name = sql.Identifier(f"plan_{uuid.uuid4().hex[:12]}")
    driver.execute(sql.SQL("PREPARE {} AS ").format(name) + sql.SQL(str(compiled)))
    try:
        driver.execute("SET plan_cache_mode = force_generic_plan")
        values = sql.SQL(", ").join(sql.Literal(params[n]) for n in names)
        arguments = sql.SQL("({})").format(values) if names else sql.SQL("")
        explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}{}").format(name, arguments)
        row = driver.execute(explain).fetchone()
    finally:
        driver.execute("RESET plan_cache_mode")
        driver.execute(sql.SQL("DEALLOCATE {}").format(name))
    assert row is not None
    return set(_indexes(row[0]))
