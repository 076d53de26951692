"""Job types with concurrency limits, for tests/test_limits.py.

Worker processes load this module with ``JOBS_IMPORTS=limit_jobs``; the test imports it too, to
enqueue the same types. Each handler run that returns writes one ``limit_runs`` row (its key,
and its start and end by this machine's clock, shared by every process), so a test measures how
many runs of a key overlapped, independently of the job's own rows and events.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel
from sqlalchemy import Connection, text

from pgjobs.db.engine import autocommit
from pgjobs.producer.job_types import Limit, job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

QUEUE = "limits"
MAX_PER_KEY = 2

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS limit_runs (
    job_id bigint NOT NULL, attempt int NOT NULL, key text NOT NULL, pid int NOT NULL,
    started float8 NOT NULL, ended float8 NOT NULL
)
"""


class Sleep(BaseModel):
    account: str
    seconds: float = 0.2


limited_type = job_type(
    "limit_sleep",
    Sleep,
    queue=QUEUE,
    max_attempts=3,
    concurrency=Limit(max=MAX_PER_KEY, key="payload.account"),
)


def create_runs_table(conn: Connection) -> None:
    conn.execute(text(RUNS_DDL))


@handles(limited_type)
def sleep(ctx: JobContext[Sleep]) -> dict[str, str]:
    started = time.time()
    time.sleep(ctx.payload.seconds)
    ended = time.time()
    with autocommit() as conn:
        conn.execute(
            text("INSERT INTO limit_runs VALUES (:job, :attempt, :key, :pid, :started, :ended)"),
            {
                "job": ctx.job_id,
                "attempt": ctx.attempt,
                "key": ctx.payload.account,
                "pid": os.getpid(),
                "started": started,
                "ended": ended,
            },
        )
    return {"account": ctx.payload.account}
