"""Which slots of a due schedule become jobs, and the key that makes each slot's job unique.

Pure functions of the schedule and the database's clock: the scheduler
(pgjobs/worker/scheduler.py) calls them under the schedule's row lock, and the tests call them
with any clock they like.

**Slot keys.** A slot's job carries the idempotency key ``schedule:<schedule id>:<slot in UTC,
ISO 8601>`` (e.g. ``schedule:4f0c...:2026-03-29T01:00:00Z``). Keys are unique per tenant in
``content_jobs``, so the database refuses a second job for a slot whoever tries to write it; the
key also records, on the job row and in its ``enqueued`` event, which schedule and slot the job
came from (``list_jobs(tenant, idempotency_key=slot_key(...))`` finds it). A run-now job's key
is ``schedule:<schedule id>:manual:<random hex>``. Keys starting with ``schedule:`` are reserved
for schedules.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pgjobs.db.models.job_schedule import MisfirePolicy
from pgjobs.db.timestamps import LATEST
from pgjobs.schedules.timing import Timing

KEY_PREFIX = "schedule:"
_SLOT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_KEY = re.compile(
    r"schedule:(?P<id>[0-9a-f-]{36}):(?:(?P<slot>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"
    r"|manual:(?P<token>[0-9a-f]{32}))"
)


def slot_key(schedule_id: uuid.UUID, slot: datetime) -> str:
    """The idempotency key of the job for ``slot`` of a schedule."""
    return f"{KEY_PREFIX}{schedule_id}:{_slot_text(slot)}"


@functools.lru_cache(maxsize=4096)
def _slot_text(slot: datetime) -> str:
    """A slot as its keys write it (a pass's schedules mostly share their slots)."""
    return slot.astimezone(UTC).strftime(_SLOT_FORMAT)


def run_now_key(schedule_id: uuid.UUID) -> str:
    """A fresh key for a run-now job (each run-now is a job of its own)."""
    return f"{KEY_PREFIX}{schedule_id}:manual:{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class SlotRef:
    """Where a job came from, read back from its idempotency key."""

    schedule_id: uuid.UUID
    slot: datetime | None
    """The slot's time (UTC); None for a run-now job."""


def parse_key(key: str | None) -> SlotRef | None:
    """The schedule and slot a job's idempotency key names; None for any other key."""
    match = _KEY.fullmatch(key or "")
    if match is None:
        return None
    slot = match["slot"]
    when = datetime.strptime(slot, _SLOT_FORMAT).replace(tzinfo=UTC) if slot else None
    return SlotRef(uuid.UUID(match["id"]), when)


def jitter(key: str, jitter_seconds: int) -> timedelta:
    """How long after its slot the job runs: spread over ``[0, jitter_seconds)`` by a hash
    of the key, so every attempt at firing a slot gives the same ``run_at``."""
    if jitter_seconds <= 0:
        return timedelta(0)
    fraction = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return timedelta(milliseconds=round(fraction * jitter_seconds * 1000))


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pass does with one due schedule."""

    slots: tuple[datetime, ...]
    """Slots that become jobs, in order."""
    next_run_at: datetime
    """The first slot after the pass's clock (LATEST when the expression has no more)."""
    missed: bool
    """Some due slot was later than the grace: the misfire policy applied."""


@functools.lru_cache(maxsize=4096)
def plan(
    timing: Timing,
    next_run_at: datetime,
    now: datetime,
    policy: MisfirePolicy,
    catch_up_limit: int | None,
    grace: timedelta,
) -> Plan:
    """The slots of a schedule due at ``now`` (its slots from ``next_run_at`` to ``now``) that
    become jobs. A slot at most ``grace`` late is on time and always fires; older ones are
    missed, and the policy decides:

    * ``skip``: missed slots are dropped;
    * ``run_once``: one job for all due slots, for the latest of them;
    * ``catch_up``: the latest ``catch_up_limit`` missed slots fire, older ones are dropped.

    Cached: the schedules of one pass share their timing, clock and next slot, mostly.
    """
    cutoff = now - grace
    on_time = tuple(timing.slots(max(next_run_at, cutoff), now))
    upcoming = timing.first_after(now) or LATEST
    missed = next_run_at < cutoff
    if not missed or policy is MisfirePolicy.SKIP:
        return Plan(on_time, upcoming, missed)
    if policy is MisfirePolicy.RUN_ONCE:
        latest = on_time[-1:] or tuple(timing.latest_before(cutoff, next_run_at, 1))
        return Plan(latest, upcoming, missed)
    late = timing.latest_before(cutoff, next_run_at, catch_up_limit or 1)
    return Plan((*late, *on_time), upcoming, missed)
