"""The demo's own job type, `demo_render`: steps with progress, optional failures.

Imported by the demo's worker processes through ``JOBS_IMPORTS=pgjobs.cli.demo_jobs``; it shows how
a user declares a job type and its handler in a few lines.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from pgjobs.producer.job_types import Backoff, job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles


class RenderPayload(BaseModel):
    title: str = Field(max_length=100)
    steps: int = Field(default=10, ge=1, le=1000)
    step_seconds: float = Field(default=0.2, ge=0, le=10)
    fail_attempts: int = Field(default=0, ge=0, description="Attempts that fail on purpose.")


demo_render = job_type(
    "demo_render",
    RenderPayload,
    queue="demo",
    max_attempts=3,
    time_limit_seconds=60,
    backoff=Backoff(base_seconds=0.5, max_seconds=2),
    description="Pretend to render something in steps (the demo's job).",
)


@handles(demo_render)
def render(ctx: JobContext[RenderPayload]) -> dict[str, Any]:
    payload = ctx.payload
    for step in range(payload.steps):
        if step == payload.steps // 2 and ctx.attempt <= payload.fail_attempts:
            raise RuntimeError(f"render crashed half-way (attempt {ctx.attempt})")
        ctx.progress(100 * step / payload.steps, f"{payload.title}: step {step + 1}")
        time.sleep(payload.step_seconds)
    return {"title": payload.title, "frames": payload.steps, "attempt": ctx.attempt}
