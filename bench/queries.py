"""Status queries against a large history: ``get_job``, ``list_jobs`` and ``get_job_events``.

Timed as a caller sees them (pool checkout, SQL, row to pydantic model), one call at a time,
for random tenants and jobs, after a warm-up. The plan of one call of each is kept for the
report, so a slow figure can be read against what PostgreSQL did.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.results import QueryResult
from bench.stats import p50_p99
from pgjobs.db.engine import autocommit
from pgjobs.producer import get_job, get_job_events, list_jobs
from pgjobs.producer.status import JobFilters, list_jobs_query

WARMUP = 200


def _time(calls: int, call: Callable[[int], object]) -> list[float]:
    for i in range(WARMUP):
        call(i)
    out = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _plan(statement: Any) -> str:
    with autocommit() as conn:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}").all()
    return "\n".join(r[0] for r in rows)


def run(tenants: list[uuid.UUID], jobs: int, calls: int, seed: int) -> list[QueryResult]:
    """``calls`` timed calls of each query; job ``id`` belongs to ``tenants[id % len]``."""
    rng = random.Random(seed)
    picks = [rng.randint(1, jobs) for _ in range(calls + WARMUP)]
    owners = [tenants[j % len(tenants)] for j in picks]
    some = [rng.choice(tenants) for _ in range(calls + WARMUP)]
    results = []
    timings = _time(calls, lambda i: get_job(owners[i], picks[i]))
    results.append(QueryResult("get_job", calls, *p50_p99(timings)))
    timings = _time(calls, lambda i: list_jobs(some[i], limit=50))
    plan = _plan(list_jobs_query(some[0], JobFilters(), cursor=None, limit=50, order="newest"))
    results.append(QueryResult("list_jobs (first page, 50)", calls, *p50_p99(timings), plan))
    timings = _time(calls, lambda i: get_job_events(owners[i], picks[i]))
    results.append(QueryResult("get_job_events (first page)", calls, *p50_p99(timings)))
    return results
