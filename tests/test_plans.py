"""The batched transitions find their rows by primary key whatever the statistics say.

Right after a bulk enqueue the statistics are stale; a generic plan then once intersected the
ids with every live job from the partial run_at index (4 ms instead of 0.1 ms per statement, and
growing with the backlog). Plans are forced generic here, as a prepared statement's become.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url

from db.jobs import state_machine as sm
from db.statements import array_literal

pytestmark = pytest.mark.usefixtures("jobs_env")


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


def _indexes(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        if "Index Name" in plan:
            yield plan["Index Name"]
        for value in plan.values():
            yield from _indexes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _indexes(item)


def test_batched_transitions_use_the_primary_key(use_fresh_db: str, tenant_id: uuid.UUID) -> None:
    from producer import JobRequest, enqueue_many
    from producer.builtin_types import scheduled_preview

    payload = {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy"}
    for _ in range(5):  # a backlog, never analyzed
        jobs = enqueue_many([JobRequest(scheduled_preview, payload, tenant_id)] * 2000)
    ids = array_literal([j.id for j in jobs[:3]])
    tenants = array_literal([tenant_id] * 3)
    texts = array_literal(["m1", "m2", "m3"])
    numbers = array_literal([1, 1, 1])
    claim = {"ids": ids, "tenant_ids": tenants, "message_ids": texts, "lease_seconds": 30}
    done = {"done_ids": ids, "done_attempts": numbers, "results": texts, "durations": numbers}
    statements = {
        "MARK_SENT": (sm.MARK_SENT, {"ids": ids}),
        "RESEND": (sm.RESEND, {"ids": ids, "message_ids": texts, "reason": "test"}),
        "CLAIM": (sm.CLAIM, {**claim, "worker": "w"}),
        "COMPLETE": (sm.COMPLETE, done),
        "CLAIM_AND_COMPLETE": (sm.CLAIM_AND_COMPLETE, {**claim, **done, "worker": "w"}),
        "EXTEND_LEASES": (sm.EXTEND_LEASES, {"ids": ids, "attempts": numbers, "lease_seconds": 30}),
    }
    dialect = PGDialect_psycopg()
    conninfo = make_url(use_fresh_db).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for name, (statement, params) in statements.items():
            sql = str(statement.compile(dialect=dialect))
            [plan] = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
            used = set(_indexes(plan)) - {"pk_tenants"}
            assert used == {"pk_content_jobs"}, f"{name} uses {sorted(used)}"
        conn.rollback()
