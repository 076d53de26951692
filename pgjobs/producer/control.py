"""Cancel and retry: the producer's two commands on an existing job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus
from pgjobs.db.statements import Plan, run
from pgjobs.db.validation import as_text
from pgjobs.logs import get_logger
from pgjobs.producer import broker, sender
from pgjobs.producer.errors import InvalidOption, InvalidTransition, JobNotFound
from pgjobs.producer.job_types import get_job_type
from pgjobs.producer.status import get_job_plan, job_ref

log = get_logger(__name__)

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
    plan = retry_plan(tenant_id, job_id, actor=actor)
    with autocommit() as conn:
        outgoing, result = run(conn, plan)
    sender.send_and_mark([outgoing])
    return result


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
