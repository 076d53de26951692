"""The producer API: what a user's application calls to enqueue jobs and ask about them.

from pgjobs.producer import enqueue, get_job
job = enqueue("scheduled_preview", {...}, tenant_id=tenant.id)
get_job(tenant.id, job.id).status
"""

from pgjobs.producer.control import CancelResult, RetryResult, cancel_job, retry_job
from pgjobs.producer.enqueue import EnqueuedJob, JobRequest, enqueue, enqueue_many
from pgjobs.producer.errors import (
    InvalidOption,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    ProducerError,
    UnknownJobType,
    UnknownTenant,
)
from pgjobs.producer.job_types import Backoff, JobType, Limit, Rate, get_job_type, job_type
from pgjobs.producer.sender import flush
from pgjobs.producer.status import (
    Page,
    count_jobs_by_status,
    event_cursor,
    get_job,
    get_job_events,
    list_jobs,
)

__all__ = [
    "Backoff",
    "CancelResult",
    "EnqueuedJob",
    "InvalidOption",
    "InvalidPayload",
    "InvalidTransition",
    "JobNotFound",
    "JobRequest",
    "JobType",
    "Limit",
    "Page",
    "PayloadTooLarge",
    "ProducerError",
    "Rate",
    "RetryResult",
    "UnknownJobType",
    "UnknownTenant",
    "cancel_job",
    "count_jobs_by_status",
    "enqueue",
    "enqueue_many",
    "event_cursor",
    "flush",
    "get_job",
    "get_job_events",
    "get_job_type",
    "job_type",
    "list_jobs",
    "retry_job",
]
