"""A 5 ms job type with no limit, for bench/limits.py: workers that import only this module
declare no limit at all (their claims take the plain statement)."""

from __future__ import annotations

import time

from pydantic import BaseModel

from pgjobs.producer.job_types import job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

QUEUE = "bench"
HANDLER_SECONDS = 0.005


class KeyedPayload(BaseModel):
    key: str = "k"


plain = job_type("bench_sleep", KeyedPayload, queue=QUEUE, description="bench: 5 ms, no limit")


def sleep(ctx: JobContext[KeyedPayload]) -> None:
    """Sleeps 5 ms: the result stored is JSON null."""
    time.sleep(HANDLER_SECONDS)


handles(plain)(sleep)
