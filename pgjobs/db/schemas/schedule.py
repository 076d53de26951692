"""A schedule as the schedules API returns it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgjobs.db.models.job_schedule import MisfirePolicy, ScheduleStatus
from pgjobs.db.schemas.common import ReadModel


class ScheduleRead(ReadModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    job_type: str
    payload: dict[str, Any]
    cron: str | None
    """A five-field expression or a name like ``@hourly``; None for an interval schedule."""
    interval_seconds: int | None
    timezone: str
    status: ScheduleStatus
    misfire_policy: MisfirePolicy
    catch_up_limit: int | None
    jitter_seconds: int
    declared: bool
    """Declared in code and owned by ``jobctl schedules sync``."""
    next_run_at: datetime | None
    """The next slot to fire (None unless active)."""
    last_run_at: datetime | None
    last_job_id: int | None
    created_at: datetime
    updated_at: datetime
