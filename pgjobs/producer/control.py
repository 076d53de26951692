"""Cancel, retry and run now: the producer's commands on existing jobs, one job or many."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus
from pgjobs.db.statements import Plan, run
from pgjobs.db.validation import BIGINT_MAX, as_id, as_text, as_uuid
from pgjobs.logs import get_logger
from pgjobs.producer import broker, sender
from pgjobs.producer.errors import (
    InvalidOption,
    InvalidTransition,
    JobNotFound,
    UnknownJobType,
)
from pgjobs.producer.job_types import get_job_type
from pgjobs.producer.status import get_job_plan, job_ref, list_filters

log = get_logger(__name__)

R = TypeVar("R")

REASON_MAX = 1000
"""Characters of a cancellation reason (it is stored in the job's ``cancelled`` event)."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    job_id: int
    status: JobStatus
    """The job's status after the call: cancelled, or still active when asked to stop."""
    stop_requested: bool
    """True for a running job: it stops at its next checkpoint and then ends cancelled."""


def cancel_job(
    tenant_id: uuid.UUID, job_id: int, *, reason: str | None = None, actor: str | None = None
) -> CancelResult:
    """Cancel a pending/queued job at once, or ask a running job to stop.

    Cancelling a job that is already terminal changes nothing and says so (no error: cancel is
    idempotent). JobNotFound for a missing job or another tenant's. ``reason`` (recorded in the
    ``cancelled`` event) is at most 1,000 characters; ``actor`` (who asked) is recorded there
    too.
    """
    plan = cancel_plan(tenant_id, job_id, reason=reason, actor=actor)
    with autocommit() as conn:
        return run(conn, plan)


def cancel_plan(
    tenant_id: object, job_id: object, *, reason: object = None, actor: object = None
) -> Plan[CancelResult]:
    """:func:`cancel_job` for either shell (pgjobs/db/statements.py): arguments checked now."""
    checked_tenant, checked_job = job_ref(tenant_id, job_id)
    if reason is not None:
        reason = as_text(reason, "reason", max_length=REASON_MAX, error=InvalidOption)
    return _cancel(checked_tenant, checked_job, reason, _actor(actor))


def _actor(actor: object) -> str | None:
    if actor is None:
        return None
    return as_text(actor, "actor", min_length=1, max_length=200, error=InvalidOption)


def _cancel(
    tenant_id: uuid.UUID, job_id: int, reason: str | None, actor: str | None
) -> Plan[CancelResult]:
    outcome = yield from sm.cancel_plan(job_id, tenant_id, reason, actor)
    if outcome is None:
        raise JobNotFound(f"job {job_id} not found")
    if outcome.cancelled:
        status = JobStatus.CANCELLED
    elif outcome.requested:
        status = JobStatus.ACTIVE
    else:
        status = outcome.previous
    log.info("job.cancel", job_id=job_id, tenant_id=str(tenant_id), status=status.value)
    return CancelResult(job_id, status, outcome.requested)


@dataclass(frozen=True, slots=True)
class RetryResult:
    job_id: int
    status: JobStatus
    """The job's status after the call: pending, its message sent (it reads queued once
    marked: :func:`pgjobs.flush` waits for that)."""
    attempt: int
    """The number of the attempt the retry runs (attempts so far + 1)."""
    max_attempts: int
    """The job's attempt budget, grown by one when the retry needed it."""


def retry_job(tenant_id: uuid.UUID, job_id: int, *, actor: str | None = None) -> RetryResult:
    """Give a failed or cancelled job one more attempt (a ``retry`` event marks it manual, and
    names ``actor`` when given).

    InvalidTransition when the job is not failed or cancelled; JobNotFound when missing.
    """
    return _commit_then_send(retry_plan(tenant_id, job_id, actor=actor))


def retry_plan(
    tenant_id: object, job_id: object, *, actor: object = None
) -> Plan[tuple[broker.Outgoing, RetryResult]]:
    """:func:`retry_job` for either shell, up to the message to send after it."""
    checked_tenant, checked_job = job_ref(tenant_id, job_id)
    return _retry(checked_tenant, checked_job, _actor(actor))


def _retry(
    tenant_id: uuid.UUID, job_id: int, actor: str | None
) -> Plan[tuple[broker.Outgoing, RetryResult]]:
    message_id = broker.new_message_id()
    retried = yield from sm.manual_retry_plan(job_id, tenant_id, message_id, actor)
    if retried is None:
        current = yield from get_job_plan(tenant_id, job_id)  # raises JobNotFound
        raise InvalidTransition(
            f"job {job_id} is {current.status.value}: only failed or cancelled jobs can be retried"
        )
    log.info("job.retry", job_id=job_id, tenant_id=str(tenant_id))
    outgoing = broker.Outgoing(job_id, tenant_id, get_job_type(retried.type).queue, message_id)
    result = RetryResult(job_id, JobStatus.PENDING, retried.attempts + 1, retried.max_attempts)
    return outgoing, result


# --- many jobs at once, and run now ------------------------------------------------------------

BULK_MAX = 10_000
"""Jobs one bulk call moves at most (``sm.BULK_BATCH`` per statement; about 1.5 s): a bigger
selection is left for another call (``BulkResult.more``), so a dashboard request stays short."""

BulkAction = Literal["cancel", "retry"]
_MOVABLE: dict[str, tuple[str, ...]] = {"cancel": sm.CANCELLABLE, "retry": sm.RETRYABLE}


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: BulkAction
    job_ids: list[int]
    """The jobs moved: cancelled or asked to stop, or retried (pending, messages sent)."""
    stop_requested: list[int]
    """Of those, the running jobs asked to stop at their next checkpoint (cancel only)."""
    more: bool
    """True when the call stopped at ``BULK_MAX`` jobs: call again for the rest."""


def select_jobs(
    tenant_id: object,
    *,
    ids: Iterable[object] | None = None,
    status: JobStatus | str | Iterable[JobStatus | str] | None = None,
    type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    idempotency_key: str | None = None,
    max_id: object = None,
) -> sm.JobSelection:
    """The jobs of one tenant a bulk call is about, checked: ``ids`` (at most ``BULK_MAX``),
    or the filters of :func:`pgjobs.list_jobs`, none newer than ``max_id`` (a count's)."""
    checked_ids = None
    if ids is not None:
        checked_ids = tuple(sorted({as_id(i, "ids", InvalidOption) for i in ids}))
        if len(checked_ids) > BULK_MAX:
            raise InvalidOption.for_field("ids", f"at most {BULK_MAX} jobs per call")
    filters = list_filters(status, type, created_after, created_before, idempotency_key)
    return sm.JobSelection(
        tenant_id=as_uuid(tenant_id, "tenant_id", InvalidOption),
        ids=checked_ids,
        statuses=(filters.status,) if isinstance(filters.status, JobStatus) else filters.status,
        type=filters.type,
        created_after=filters.created_after,
        created_before=filters.created_before,
        idempotency_key=filters.idempotency_key,
        max_id=BIGINT_MAX if max_id is None else as_id(max_id, "max_id", InvalidOption),
    )


def count_selected(selection: sm.JobSelection, action: BulkAction) -> sm.BulkCount:
    """How many jobs ``action`` would move (a bulk call's confirmation), and the newest id to
    pass back as ``max_id`` so the call acts on those only."""
    with autocommit() as conn:
        return run(conn, count_selected_plan(selection, action))


def count_selected_plan(selection: sm.JobSelection, action: BulkAction) -> Plan[sm.BulkCount]:
    return sm.bulk_count_plan(selection, _movable(action))


def _movable(action: str) -> tuple[str, ...]:
    if action not in _MOVABLE:
        raise InvalidOption.for_field("action", "must be 'cancel' or 'retry'")
    return _MOVABLE[action]


def cancel_jobs(
    selection: sm.JobSelection, *, reason: str | None = None, actor: str | None = None
) -> BulkResult:
    """:func:`cancel_job` for every selected job that is not terminal: pending, queued and
    waiting ones cancelled, running ones asked to stop; ``sm.BULK_BATCH`` jobs a statement."""
    plan = cancel_jobs_plan(selection, reason=reason, actor=actor)
    with autocommit() as conn:
        return run(conn, plan)


def cancel_jobs_plan(
    selection: sm.JobSelection, *, reason: object = None, actor: object = None
) -> Plan[BulkResult]:
    """:func:`cancel_jobs` for either shell."""
    if reason is not None:
        reason = as_text(reason, "reason", max_length=REASON_MAX, error=InvalidOption)
    checked_actor = _actor(actor)

    def batch(after_id: int) -> Plan[sm.BulkBatch]:
        return sm.bulk_cancel_plan(selection, after_id, reason, checked_actor)

    moved = yield from _batches(batch)
    result = BulkResult(
        "cancel", [r.id for r in moved], [r.id for r in moved if not r.done], _full(moved)
    )
    log.info("jobs.cancel", tenant_id=str(selection.tenant_id), jobs=len(result.job_ids))
    return result


def retry_jobs(selection: sm.JobSelection, *, actor: str | None = None) -> BulkResult:
    """:func:`retry_job` for every selected failed or cancelled job; ``sm.BULK_BATCH`` jobs a
    statement, their messages sent after."""
    return _commit_then_send(retry_jobs_plan(selection, actor=actor))


def retry_jobs_plan(
    selection: sm.JobSelection, *, actor: object = None
) -> Plan[tuple[list[broker.Outgoing], BulkResult]]:
    """:func:`retry_jobs` for either shell, up to the messages to send after it."""
    checked_actor = _actor(actor)

    def batch(after_id: int) -> Plan[sm.BulkBatch]:
        return sm.bulk_retry_plan(selection, after_id, checked_actor)

    moved = yield from _batches(batch)
    outgoing = []
    for row in moved:
        try:
            queue = get_job_type(row.type).queue
        except UnknownJobType:
            continue  # not registered in this process: the relay sends it (the row is pending)
        outgoing.append(broker.Outgoing(row.id, selection.tenant_id, queue, row.queue_job_id))
    log.info("jobs.retry", tenant_id=str(selection.tenant_id), jobs=len(moved))
    return outgoing, BulkResult("retry", [r.id for r in moved], [], _full(moved))


def _batches(batch: Callable[[int], Plan[sm.BulkBatch]]) -> Plan[list[Any]]:
    """Run ``batch`` from id 0 upwards until a batch is not full or ``BULK_MAX`` jobs moved."""
    moved: list[Any] = []
    after_id = 0
    while len(moved) < BULK_MAX:
        done = yield from batch(after_id)
        moved.extend(done.moved)
        if len(done.moved) < sm.BULK_BATCH:
            break
        after_id = done.last_id
    return moved


def _full(moved: list[Any]) -> bool:
    return len(moved) >= BULK_MAX


@dataclass(frozen=True, slots=True)
class RunNowResult:
    job_id: int
    status: JobStatus
    """Pending or queued, as before: the job is due now, its new message sent."""


def run_job_now(tenant_id: uuid.UUID, job_id: int, *, actor: str | None = None) -> RunNowResult:
    """Make a delayed job (pending or queued with a due time in the future) due now, under a
    new message id sent at once; the delayed message then finds it run or running and does
    nothing. An ``enqueued`` event (resent, ``run now``) names ``actor``.

    InvalidTransition when the job is not delayed (already due, running or ended); JobNotFound
    when missing."""
    return _commit_then_send(run_job_now_plan(tenant_id, job_id, actor=actor))


def run_job_now_plan(
    tenant_id: object, job_id: object, *, actor: object = None
) -> Plan[tuple[broker.Outgoing, RunNowResult]]:
    """:func:`run_job_now` for either shell, up to the message to send after it."""
    checked_tenant, checked_job = job_ref(tenant_id, job_id)
    return _run_now(checked_tenant, checked_job, _actor(actor))


def _run_now(
    tenant_id: uuid.UUID, job_id: int, actor: str | None
) -> Plan[tuple[broker.Outgoing, RunNowResult]]:
    message_id = broker.new_message_id()
    job_type = yield from sm.run_now_plan(job_id, tenant_id, message_id, actor)
    current = yield from get_job_plan(tenant_id, job_id)  # raises JobNotFound
    if job_type is None:
        raise InvalidTransition(
            f"job {job_id} is {current.status.value} and due: only a delayed job can run now"
            if current.status in (JobStatus.PENDING, JobStatus.QUEUED)
            else f"job {job_id} is {current.status.value}: only a delayed job can run now"
        )
    log.info("job.run_now", job_id=job_id, tenant_id=str(tenant_id))
    outgoing = broker.Outgoing(job_id, tenant_id, get_job_type(job_type).queue, message_id)
    return outgoing, RunNowResult(job_id, current.status)


def _commit_then_send(plan: Plan[tuple[broker.Outgoing | list[broker.Outgoing], R]]) -> R:
    """Run a transition's plan (one autocommit statement or more), then send the messages it
    made: after the commit, as the outbox requires."""
    with autocommit() as conn:
        outgoing, result = run(conn, plan)
    sender.send_and_mark(outgoing if isinstance(outgoing, list) else [outgoing])
    return result
