"""``GET /v1/job-types``: what can be enqueued here, with each payload's JSON Schema."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter

from pgjobs.api.auth import Caller
from pgjobs.api.schemas import JobTypeOut
from pgjobs.producer.job_types import all_job_types

router = APIRouter(prefix="/v1", tags=["job types"])


@cache
def _described() -> list[JobTypeOut]:
    return [
        JobTypeOut(
            name=t.name,
            queue=t.queue,
            priority=t.priority,
            max_attempts=t.max_attempts,
            time_limit_seconds=t.time_limit_seconds,
            description=t.description,
            payload_schema=t.payload_model.model_json_schema(),
        )
        for t in all_job_types()
    ]


@router.get("/job-types", response_model=list[JobTypeOut])
async def job_types(principal: Caller) -> list[JobTypeOut]:
    """Every job type this API process knows (the built-in ones and ``JOBS_IMPORTS``'s)."""
    return _described()
