"""Job types and handlers of the fault tests (tests/test_faults.py).

Real worker processes load this module with ``JOBS_IMPORTS=fault_jobs`` (``tests/`` on their
PYTHONPATH); the test process imports it too, to enqueue the same types.

Handlers leave a trace of every run they finish in the ``fault_effects`` table of the job's
database (created by :func:`create_effects_table`), so a test can check that each job's work
happened at least once, and which attempt did it, independently of the job's own rows.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text

from pgjobs.db.engine import autocommit
from pgjobs.producer.job_types import Backoff, job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

QUEUE = "faults"

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS fault_effects (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    note text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def create_effects_table(conn: Any) -> None:
    """Create ``fault_effects`` (``conn``: a SQLAlchemy connection to the job database)."""
    conn.execute(text(EFFECTS_DDL))


def record_effect(ctx: JobContext[Any], note: str | None = None) -> None:
    with autocommit() as conn:
        conn.execute(
            text(
                "INSERT INTO fault_effects (job_id, attempt, pid, note) "
                "VALUES (:job_id, :attempt, :pid, :note)"
            ),
            {"job_id": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid(), "note": note},
        )


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- a small unit of work: used by the kill, Redis, PostgreSQL and malformed-message tests -----


class Work(BaseModel):
    n: int = 0
    sleep_ms: float = 5.0
    progress_every: int = 5
    """Jobs whose ``n`` is a multiple of this report progress halfway (a checkpoint)."""
    fail_attempts: int = 0
    """Attempts up to this one raise (and are retried)."""


work_type = job_type(
    "fault_work",
    Work,
    queue=QUEUE,
    max_attempts=10,
    time_limit_seconds=60.0,
    backoff=Backoff(base_seconds=0.1, max_seconds=0.5),
)

flaky_type = job_type(
    "fault_flaky",
    Work,
    queue=QUEUE,
    max_attempts=10,
    time_limit_seconds=60.0,
    # Long enough for a retry's message to wait in Redis's delay queue for a while.
    backoff=Backoff(base_seconds=3.0, max_seconds=3.0),
)


@handles(flaky_type)
@handles(work_type)
def do_work(ctx: JobContext[Work]) -> dict[str, Any]:
    if ctx.attempt <= ctx.payload.fail_attempts:
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    half = ctx.payload.sleep_ms / 2000
    time.sleep(half)
    if ctx.payload.progress_every and ctx.payload.n % ctx.payload.progress_every == 0:
        ctx.progress(50, f"half of {ctx.payload.n}")
    time.sleep(half)
    record_effect(ctx)
    return {"n": ctx.payload.n, "attempt": ctx.attempt}


# --- a handler that uses a credential, fails, retries and runs past its time limit ------------


class CanaryPayload(BaseModel):
    credential_id: uuid.UUID


CANARY_TIME_LIMIT = 1.5

canary_type = job_type(
    "fault_canary",
    CanaryPayload,
    queue=QUEUE,
    max_attempts=3,
    time_limit_seconds=CANARY_TIME_LIMIT,
    backoff=Backoff(base_seconds=0.1, max_seconds=0.2, jitter=False),
)


@handles(canary_type)
def use_canary(ctx: JobContext[CanaryPayload]) -> None:
    """Every attempt decrypts the credential, proves it did (a SHA-256 of the value), logs the
    value and raises with it in the message; the last attempt instead sleeps past its time
    limit with the value in scope. Everything the runtime writes must come out redacted."""
    with ctx.credential(ctx.payload.credential_id) as secret:
        value = secret.reveal()
        record_effect(ctx, note=sha256_hex(value))
        ctx.log.info("using", key=value, attempt=ctx.attempt)
        if ctx.is_last_attempt:
            deadline = time.monotonic() + 10 * CANARY_TIME_LIMIT
            while time.monotonic() < deadline:  # short sleeps: the time limit is raised in here
                time.sleep(0.02)
        raise RuntimeError(f"provider refused the key {value} (attempt {ctx.attempt})")
