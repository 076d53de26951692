"""A job type on a fair queue, for tests/test_fair_shares.py.

Worker processes load this module with ``JOBS_IMPORTS=fair_jobs``; the test imports it too, to
enqueue the same type. The handler only sleeps: the tests read who started when from the
jobs' own ``started`` events.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from pgjobs.producer.job_types import job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

QUEUE = "fair"


class Nap(BaseModel):
    seconds: float = 0.005


fair_type = job_type("fair_nap", Nap, queue=QUEUE, max_attempts=3)


@handles(fair_type)
def nap(ctx: JobContext[Nap]) -> None:
    time.sleep(ctx.payload.seconds)
