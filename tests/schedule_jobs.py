"""A job type and the schedules an application declares next to it (imported through
``JOBS_IMPORTS=schedule_jobs`` by the sync and process tests)."""

from __future__ import annotations

from pydantic import BaseModel

import pgjobs


class Tick(BaseModel):
    label: str = "tick"


tick = pgjobs.job_type("sched_tick", Tick, queue="ticks")

DECLARED = [
    pgjobs.schedule("heartbeat", tick, every=30, payload={"label": "heartbeat"}),
    pgjobs.schedule(
        "nightly-digest", tick, cron="30 2 * * *", tz="Europe/Berlin", payload={"label": "d"}
    ),
]
