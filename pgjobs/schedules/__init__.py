"""Periodic jobs: schedules that fire exactly one job per slot, however many schedulers run.

::

    from pgjobs import schedules

    s = schedules.create(tenant.id, "hourly-sync", "sync_accounts", cron="@hourly",
                         tz="Europe/Berlin", payload={"full": False})
    schedules.upcoming(tenant.id, s.id, 3)   # the next three slots (UTC)
    schedules.pause(tenant.id, s.id); schedules.resume(tenant.id, s.id)
    schedules.run_now(tenant.id, s.id)       # one extra job now

Schedules the application owns are declared in code next to their job type and written at
deploy by ``jobctl schedules sync`` (:func:`schedule`, :func:`sync`). The maintenance process
fires due slots (pgjobs/worker/scheduler.py). docs/schedules.md has the rules: slots, misfire
policies, daylight saving, and why no slot fires twice.

This package needs no worker code: an application that only enqueues can manage schedules.
"""

from pgjobs.db.models.job_schedule import MisfirePolicy, ScheduleStatus
from pgjobs.db.schemas.schedule import ScheduleRead
from pgjobs.schedules.api import (
    archive,
    create,
    get,
    get_by_name,
    pause,
    resume,
    run_now,
    upcoming,
    update,
)
from pgjobs.schedules.api import list_schedules as list  # schedules.list(...), like the other verbs
from pgjobs.schedules.declared import SyncReport, declared, forget, schedule, sync
from pgjobs.schedules.definition import Definition
from pgjobs.schedules.errors import (
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotActive,
    ScheduleNotFound,
)
from pgjobs.schedules.firing import SlotRef, parse_key, slot_key
from pgjobs.schedules.timing import Timing, timing

__all__ = [
    "Definition",
    "InvalidSchedule",
    "MisfirePolicy",
    "ScheduleExists",
    "ScheduleNotActive",
    "ScheduleNotFound",
    "ScheduleRead",
    "ScheduleStatus",
    "SlotRef",
    "SyncReport",
    "Timing",
    "archive",
    "create",
    "declared",
    "forget",
    "get",
    "get_by_name",
    "list",
    "parse_key",
    "pause",
    "resume",
    "run_now",
    "schedule",
    "slot_key",
    "sync",
    "timing",
    "upcoming",
    "update",
]
