"""Cancel and retry: the producer's two commands on an existing job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus
from pgjobs.db.validation import as_text
from pgjobs.logs import get_logger
from pgjobs.producer import broker, sender
from pgjobs.producer.errors import InvalidOption, InvalidTransition, JobNotFound
from pgjobs.producer.job_types import get_job_type
from pgjobs.producer.status import get_job, job_ref

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


def cancel_job(tenant_id: uuid.UUID, job_id: int, *, reason: str | None = None) -> CancelResult:
    """Cancel a pending/queued job at once, or ask a running job to stop.

    Cancelling a job that is already terminal changes nothing and says so (no error: cancel is
    idempotent). JobNotFound for a missing job or another tenant's. ``reason`` (recorded in the
    ``cancelled`` event) is at most 1,000 characters.
    """
    tenant_id, job_id = job_ref(tenant_id, job_id)
    if reason is not None:
        reason = as_text(reason, "reason", max_length=REASON_MAX, error=InvalidOption)
    with autocommit() as conn:
        outcome = sm.cancel(conn, job_id, tenant_id, reason)
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


def retry_job(tenant_id: uuid.UUID, job_id: int) -> RetryResult:
    """Give a failed or cancelled job one more attempt (a ``retry`` event marks it manual).

    InvalidTransition when the job is not failed or cancelled; JobNotFound when missing.
    """
    tenant_id, job_id = job_ref(tenant_id, job_id)
    message_id = broker.new_message_id()
    with autocommit() as conn:
        retried = sm.manual_retry(conn, job_id, tenant_id, message_id)
    if retried is None:
        current = get_job(tenant_id, job_id)  # raises JobNotFound
        raise InvalidTransition(
            f"job {job_id} is {current.status.value}: only failed or cancelled jobs can be retried"
        )
    queue = get_job_type(retried.type).queue
    sender.send_and_mark([broker.Outgoing(job_id, tenant_id, queue, message_id)])
    log.info("job.retry", job_id=job_id, tenant_id=str(tenant_id))
    return RetryResult(job_id, JobStatus.PENDING, retried.attempts + 1, retried.max_attempts)
