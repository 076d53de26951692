"""The noop job type and its handler, imported by our workers through JOBS_IMPORTS.

It goes through the whole system (outbox row, claim with lease, ``started`` and ``completed``
events) and does nothing else, so what the bench measures is the system's own cost.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from pgjobs.producer.job_types import job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles

QUEUE = "bench"


class NoopPayload(BaseModel):
    n: int = 0


noop = job_type("bench_noop", NoopPayload, queue=QUEUE, max_attempts=3, description="bench")


@handles(noop)
def run_noop(ctx: JobContext[NoopPayload]) -> None:
    """Does nothing: the result stored is JSON null."""


class NapPayload(BaseModel):
    ms: float = 5.0


nap = job_type("bench_nap", NapPayload, queue=QUEUE, max_attempts=3, description="bench, 5 ms")


@handles(nap)
def run_nap(ctx: JobContext[NapPayload]) -> None:
    """Sleeps ``ms`` (5 ms: the limits bench's handler, a short provider call)."""
    time.sleep(ctx.payload.ms / 1000)
