"""Typed errors of the schedules API. Nothing was written when one is raised.

A payload that fails the job type's model is the producer's ``InvalidPayload`` (or
``PayloadTooLarge``), an unknown type its ``UnknownJobType``: the same errors ``enqueue`` gives.
"""

from __future__ import annotations

from pgjobs.db.errors import NotFound
from pgjobs.producer.errors import InvalidOption, InvalidTransition, ProducerError

__all__ = [
    "InvalidSchedule",
    "ScheduleExists",
    "ScheduleNotActive",
    "ScheduleNotFound",
]


class InvalidSchedule(InvalidOption):
    """A schedule argument is wrong: a cron expression that does not parse (or never fires),
    an unknown time zone, an interval out of range, an unknown misfire policy, a bad name.
    ``fields`` names the argument; the message never repeats its value."""


class ScheduleNotFound(ProducerError, NotFound):
    """No such schedule for this tenant (another tenant's schedule is reported the same way)."""


class ScheduleExists(ProducerError):
    """The tenant already has a schedule of this name (archived ones included)."""


class ScheduleNotActive(InvalidTransition):
    """The schedule is paused or archived and the command needs it active (run now), or it is
    archived and the command cannot apply to it (pause)."""
