"""The scheduler: a maintenance service that turns due schedule slots into jobs.

One pass, batch by batch, each batch one transaction:

1. lock due active schedules (``next_run_at <= now()``) ``FOR UPDATE SKIP LOCKED``: other
   maintenance processes skip them and take the next ones;
2. plan each one's slots with the database's clock and its misfire policy
   (pgjobs/schedules/firing.py);
3. enqueue one job per slot with ``enqueue_many(..., session=...)``: the ordinary enqueue path,
   whose idempotency key ``schedule:<id>:<slot>`` the database refuses to hold twice;
4. advance each schedule's ``next_run_at`` in the same transaction, and commit. The messages
   leave after the commit (the outbox).

So a process killed anywhere before the commit leaves neither jobs nor an advanced schedule:
the next pass, in any process, fires the same slots. A slot can never get two jobs (the row
lock serialises the passes, and the key refuses a second job even if something rewinds a
schedule), and a slot is only ever dropped by a misfire policy. The clock is the database's:
no two maintenance machines disagree about what is due.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from pgjobs.db.engine import session_scope
from pgjobs.db.models.job_schedule import MisfirePolicy
from pgjobs.logs import get_logger
from pgjobs.producer.enqueue import EnqueuedJob, JobRequest, enqueue_many
from pgjobs.producer.errors import ProducerError, QuotaExceeded
from pgjobs.producer.job_types import get_job_type
from pgjobs.producer.payloads import validated_payload
from pgjobs.schedules import statements as st
from pgjobs.schedules.firing import Plan, jitter, plan, slot_key
from pgjobs.schedules.timing import Timing
from pgjobs.settings import get_settings

log = get_logger(__name__)

ENQUEUE_CHUNK = 5000
"""Jobs per ``enqueue_many`` call inside a batch (a catch-up can fire many per schedule)."""


@dataclass
class FireResult:
    """What one pass did."""

    jobs: int = 0
    """Jobs created (a slot whose job already existed is not counted)."""
    schedules: int = 0
    """Schedules advanced."""
    misfired: int = 0
    """Schedules that had slots later than the grace (their misfire policy applied)."""
    unfireable: int = 0
    """Due schedules left as they were: their job type is unknown here, or their payload no
    longer passes its model (logged as ``scheduler.unfireable``)."""
    delays: list[float] = field(default_factory=list)
    """Per job created, seconds from its slot to the commit that enqueued it."""


@dataclass(frozen=True, slots=True)
class _Due:
    row: Any
    plan: Plan


@dataclass
class _Pass:
    """One pass's shared state: its threads fire batches side by side."""

    now: datetime | None
    limit: int
    grace: timedelta
    batches_left: int
    result: FireResult = field(default_factory=FireResult)
    unfireable: list[uuid.UUID] = field(default_factory=list)
    misfired: list[uuid.UUID] = field(default_factory=list)
    over_quota: set[uuid.UUID] = field(default_factory=set)
    """Schedules whose jobs a tenant's daily quota refused in this pass: their due slots are
    dropped (the schedule advances without a job), the others fire."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def fire_due(
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    max_batches: int = 1000,
    threads: int | None = None,
) -> FireResult:
    """Fire every due slot, batch after batch until none is due. ``now`` replaces the
    database's clock (tests); every other caller leaves it out.

    When the first batch comes back full, ``threads`` (``JOBS_SCHEDULER_THREADS``) fire the
    rest side by side, each its own batches (``SKIP LOCKED`` splits them): while one waits for
    PostgreSQL or Redis, another prepares its jobs."""
    settings = get_settings()
    state = _Pass(
        now,
        batch_size or settings.schedule_batch_size,
        timedelta(seconds=settings.schedule_misfire_grace_seconds),
        max_batches,
    )
    started = time.perf_counter()
    if _fire_batches(state, first_only=True):
        helpers = [
            threading.Thread(target=_fire_batches, args=(state,), name=f"pgjobs-scheduler-{n}")
            for n in range(max(1, threads or settings.scheduler_threads) - 1)
        ]
        for helper in helpers:
            helper.start()
        _fire_batches(state)
        for helper in helpers:
            helper.join()
    result = state.result
    result.unfireable = len(state.unfireable)
    if state.misfired:
        log.warning(
            "scheduler.misfired",
            schedules=len(state.misfired),
            schedule_ids=[str(i) for i in state.misfired[:20]],
            grace_s=settings.schedule_misfire_grace_seconds,
        )
    if result.jobs:
        log.debug(
            "scheduler.fired",
            jobs=result.jobs,
            schedules=result.schedules,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
    return result


def _fire_batches(state: _Pass, *, first_only: bool = False) -> bool:
    """Fire batches until none is due (or one, with ``first_only``). True when the last batch
    was full: more may be due."""
    full = False
    while True:
        with state.lock:
            if state.batches_left <= 0:
                return False
            state.batches_left -= 1
            skip = list(state.unfireable)
        opened = time.perf_counter()
        try:
            with session_scope() as session:
                rows = st.lock_due(session.connection(), state.now, state.limit, skip)
                if not rows:
                    return False
                clock = rows[0].db_now
                plans: dict[tuple[Any, ...], Plan] = {}
                due = [_Due(row, _plan(row, clock, state.grace, plans)) for row in rows]
                fired = _fire(session, due, state)
        except _OverQuota as over:  # the batch rolled back (its messages too): again without
            with state.lock:  # the refused schedules' jobs
                state.over_quota |= over.schedule_ids
                state.batches_left += 1
            continue
        committed = time.perf_counter() - opened
        _count(state, fired, clock, committed)
        full = len(rows) >= state.limit
        if first_only or not full:
            return full


def _count(
    state: _Pass, fired: list[tuple[_Due, list[EnqueuedJob]]], clock: datetime, committed: float
) -> None:
    with state.lock:
        result = state.result
        result.schedules += len(fired)
        for entry, jobs in fired:
            result.misfired += entry.plan.missed
            slots = entry.plan.slots if jobs else []  # none: dropped over a quota
            for slot, job in zip(slots, jobs, strict=True):
                if job.created:
                    result.jobs += 1
                    result.delays.append((clock - slot).total_seconds() + committed)
            if entry.plan.missed:
                state.misfired.append(entry.row.id)


def _plan(row: Any, clock: datetime, grace: timedelta, plans: dict[tuple[Any, ...], Plan]) -> Plan:
    """The row's plan; rows of a batch with the same timing, policy and next run share one."""
    key = (
        row.cron, row.interval_seconds, row.timezone, row.misfire_policy, row.catch_up_limit,
        row.next_run_at,
    )  # fmt: skip
    found = plans.get(key)
    if found is None:
        timing = Timing(row.cron, row.interval_seconds, row.timezone)
        policy = MisfirePolicy(row.misfire_policy)
        found = plans[key] = plan(timing, row.next_run_at, clock, policy, row.catch_up_limit, grace)
    return found


def _fire(session: Session, due: list[_Due], state: _Pass) -> list[tuple[_Due, list[EnqueuedJob]]]:
    """Enqueue the planned slots' jobs and advance the schedules, in the session's
    transaction. Schedules whose jobs cannot be enqueued here are left out (and added to the
    pass's ``unfireable``); the others fire."""
    with state.lock:
        dropped = {entry.row.id for entry in due} & state.over_quota
    requests = {entry.row.id: [] if entry.row.id in dropped else _requests(entry) for entry in due}
    try:
        jobs = _enqueue(session, [r for entry in due for r in requests[entry.row.id]])
    except QuotaExceeded as exc:  # the statement failed: the transaction must roll back
        over = {entry.row.id for entry in due if _refused_by(entry.row, exc)} - dropped
        if not over:
            raise
        log.warning(
            "scheduler.over_quota",
            tenant_id=str(exc.tenant_id),
            job_type=exc.job_type,
            per_day=exc.quota,
            schedule_ids=[str(i) for i in sorted(over)[:20]],
        )
        raise _OverQuota(over) from None
    except ProducerError:  # before its call wrote anything (a chunk written earlier is found
        # again by its keys): find who cannot be fired, fire the others
        bad = {entry.row.id for entry in due if not _fireable(entry.row)}
        if not bad:
            raise
        with state.lock:
            state.unfireable.extend(bad)
        due = [entry for entry in due if entry.row.id not in bad]
        jobs = _enqueue(session, [r for entry in due for r in requests[entry.row.id]])
    fired = []
    advances = []
    position = 0
    for entry in due:
        mine = jobs[position : position + len(requests[entry.row.id])]
        position += len(mine)
        fired.append((entry, mine))
        last_slot = entry.plan.slots[-1] if mine else None
        last_job = mine[-1].id if mine else None
        advances.append(st.Advance(entry.row.id, entry.plan.next_run_at, last_slot, last_job))
    st.advance(session.connection(), advances)
    return fired


class _OverQuota(Exception):
    """A batch's enqueue was refused by these schedules' tenants' quotas."""

    def __init__(self, schedule_ids: set[uuid.UUID]) -> None:
        super().__init__("over quota")
        self.schedule_ids = schedule_ids


def _refused_by(row: Any, exc: QuotaExceeded) -> bool:
    """Whether the schedule's jobs count against the quota that refused the batch."""
    return row.tenant_id == exc.tenant_id and exc.job_type in (None, row.job_type)


def _requests(entry: _Due) -> list[JobRequest]:
    row = entry.row
    out = []
    for slot in entry.plan.slots:
        key = slot_key(row.id, slot)
        run_at = slot + jitter(key, row.jitter_seconds)
        out.append(
            JobRequest(row.job_type, row.payload, row.tenant_id, idempotency_key=key, run_at=run_at)
        )
    return out


def _enqueue(session: Session, requests: list[JobRequest]) -> list[EnqueuedJob]:
    jobs: list[EnqueuedJob] = []
    for i in range(0, len(requests), ENQUEUE_CHUNK):
        jobs += enqueue_many(requests[i : i + ENQUEUE_CHUNK], session=session)
    return jobs


def _fireable(row: Any) -> bool:
    """Whether this process can enqueue the schedule's job (the check enqueue makes)."""
    try:
        job_type = get_job_type(row.job_type)
        validated_payload(job_type, row.payload, get_settings().max_payload_bytes)
    except ProducerError as exc:
        log.warning(
            "scheduler.unfireable",
            schedule_id=str(row.id),
            tenant_id=str(row.tenant_id),
            job_type=row.job_type,
            error_type=type(exc).__name__,
        )
        return False
    return True
