"""Job types of the HTTP API tests (tests/test_api.py): real worker processes load this module
with ``JOBS_IMPORTS`` (``tests/`` on their PYTHONPATH), the API process and the test process
import it too."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from pgjobs.producer.job_types import Backoff, job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers.registry import handles

QUEUE = "apitest"


class Steps(BaseModel):
    steps: int = Field(default=0, ge=0, le=100)
    step_ms: float = Field(default=0.0, ge=0, le=5000)
    fail: bool = False
    note: str = Field(default="", max_length=1_000_000)
    pad: int = Field(default=0, ge=0, le=450)
    """Characters added to each progress message (large events, for a slow reader's test)."""


steps_type = job_type(
    "api_steps",
    Steps,
    queue=QUEUE,
    max_attempts=2,
    time_limit_seconds=60.0,
    backoff=Backoff(base_seconds=0.05, max_seconds=0.1, jitter=False),
    description="Report progress in steps, then succeed (or fail for good).",
)


@handles(steps_type)
def run_steps(ctx: JobContext[Steps]) -> dict[str, Any]:
    for i in range(ctx.payload.steps):
        time.sleep(ctx.payload.step_ms / 1000)
        message = f"step {i + 1} " + "." * ctx.payload.pad
        ctx.progress(100 * (i + 1) // (ctx.payload.steps + 1), message)
    if ctx.payload.fail:
        raise PermanentError("asked to fail")
    return {"steps": ctx.payload.steps}
