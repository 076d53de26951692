"""Typed errors of the producer API. Each is documented in docs/producer.md."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Self

from pgjobs.db.errors import InvalidInput, JobsError, UnknownTenant

__all__ = [
    "InvalidOption",
    "InvalidPayload",
    "InvalidTransition",
    "JobNotFound",
    "PayloadTooLarge",
    "ProducerError",
    "QuotaExceeded",
    "UnknownJobType",
    "UnknownTenant",
]


class ProducerError(JobsError):
    """Base of the producer's input errors: nothing was written when one is raised."""

    index: int | None = None
    """For ``enqueue_many``: the position of the request the error is about."""


class UnknownJobType(ProducerError):
    """No job type of that name is registered."""


class InvalidPayload(ProducerError):
    """The payload failed the job type's model. ``errors`` lists (field path, error type,
    message) without the offending values."""

    def __init__(self, job_type: str, errors: list[tuple[str, str, str]]) -> None:
        self.job_type = job_type
        self.errors = errors
        fields = "; ".join(f"{loc}: {msg}" for loc, _, msg in errors)
        super().__init__(f"invalid payload for {job_type}: {fields}")


class PayloadTooLarge(ProducerError):
    """The payload's JSON is over ``JOBS_MAX_PAYLOAD_BYTES``."""


class InvalidOption(ProducerError, InvalidInput):
    """An enqueue, query or command argument is of the wrong type or out of range (a tenant id
    that is not a UUID, a negative or too distant delay, text with NUL, a page size over the
    cap, a forged cursor...). Also a ``db.errors.InvalidInput``: ``fields`` names the
    argument."""

    @classmethod
    def for_field(cls, field: str, rule: str) -> Self:
        return cls(f"{field} {rule}", (field,))


class JobNotFound(ProducerError):
    """No such job for this tenant (another tenant's job is reported the same way)."""


class InvalidTransition(ProducerError):
    """The job is not in a state that allows this (e.g. retrying a running job)."""


class QuotaExceeded(ProducerError):
    """The jobs would take a tenant past one of its daily quotas (``jobctl tenants set-quota``);
    nothing was written. ``resets_at``: the next midnight UTC of the database clock, when the
    day's counts start again; ``quota``: that quota's jobs per day (None if unknown);
    ``job_type``: its job type (None: all the tenant's types); ``count``: today's count the
    call would have reached (over ``quota``); ``tenant_id``: whose quota (a batch may hold
    several tenants' jobs)."""

    def __init__(
        self,
        message: str,
        resets_at: datetime,
        *,
        quota: int | None = None,
        job_type: str | None = None,
        count: int | None = None,
        tenant_id: uuid.UUID | None = None,
    ) -> None:
        super().__init__(message)
        self.resets_at = resets_at
        self.quota = quota
        self.job_type = job_type
        self.count = count
        self.tenant_id = tenant_id
