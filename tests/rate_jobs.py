"""Job types with rate limits, for tests/test_rates.py.

Worker processes load this module with ``JOBS_IMPORTS=rate_jobs``; the test imports it too, to
enqueue the same types. The measure of a rate is the jobs' ``started`` events (the claim's
database clock, the clock the window is kept by).
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from pgjobs.producer.job_types import Limit, Rate, job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

QUEUE = "rates"
PER_SECOND = 5


class Tick(BaseModel):
    account: str
    seconds: float = 0.005


rated_type = job_type(
    "rate_tick",
    Tick,
    queue=QUEUE,
    max_attempts=3,
    rate=Rate(PER_SECOND, per=1.0, key="payload.account"),
)

both_type = job_type(
    "rate_and_limit",
    Tick,
    queue=QUEUE,
    max_attempts=3,
    concurrency=Limit(max=1, key="payload.account"),
    rate=Rate(2, per=1.0, key="payload.account"),
)


@handles(rated_type)
def tick(ctx: JobContext[Tick]) -> dict[str, str]:
    time.sleep(ctx.payload.seconds)
    return {"account": ctx.payload.account}


@handles(both_type)
def tick_both(ctx: JobContext[Tick]) -> dict[str, str]:
    time.sleep(ctx.payload.seconds)
    return {"account": ctx.payload.account}
