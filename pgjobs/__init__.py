"""pgjobs: background jobs with durable, queryable state in PostgreSQL, delivered by Dramatiq.

What an application needs is here::

    import pgjobs

    thumbnail = pgjobs.job_type("thumbnail", Thumbnail, queue="media")
    tenant = pgjobs.get_tenant("acme")  # a slug or an id
    job = pgjobs.enqueue(thumbnail, {"image_id": 42}, tenant_id=tenant.id)
    pgjobs.wait_for_job(tenant.id, job.id).status

Periodic jobs: ``pgjobs.schedule(...)`` declares one in code, ``pgjobs.schedules`` is their API.

The subpackages hold the rest: ``pgjobs.producer`` (enqueue, status, the relay), ``pgjobs.worker``
(the Dramatiq app, handlers), ``pgjobs.vault`` (credentials and keys), ``pgjobs.mcp`` (MCP
servers), ``pgjobs.db`` (tables, the state machine), ``pgjobs.services`` (finding PostgreSQL and
Redis), ``pgjobs.cli`` (``jobctl``).

Names are loaded on first use, so ``import pgjobs`` costs nothing until one is touched, and an
application that only enqueues never imports the worker's modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgjobs.db.errors import (
        ConfigurationError,
        DatabaseError,
        DatabaseUnavailable,
        InvalidInput,
        JobsError,
        NotFound,
    )
    from pgjobs.db.schemas.credential import CredentialRead
    from pgjobs.db.schemas.job import JobEventRead, JobRead
    from pgjobs.db.schemas.tenant import TenantRead
    from pgjobs.db.tenants import create_tenant, get_tenant, list_tenants
    from pgjobs.producer.control import CancelResult, RetryResult, cancel_job, retry_job
    from pgjobs.producer.enqueue import EnqueuedJob, JobRequest, enqueue, enqueue_many
    from pgjobs.producer.errors import (
        InvalidOption,
        InvalidPayload,
        InvalidTransition,
        JobNotFound,
        PayloadTooLarge,
        ProducerError,
        QuotaExceeded,
        UnknownJobType,
        UnknownTenant,
    )
    from pgjobs.producer.job_types import Backoff, JobType, Limit, Rate, job_type
    from pgjobs.producer.quotas import QuotaUsage, quota_usage, remove_quota, set_quota
    from pgjobs.producer.sender import flush
    from pgjobs.producer.status import (
        Page,
        count_jobs_by_status,
        get_job,
        get_job_events,
        list_jobs,
    )
    from pgjobs.producer.wait import wait_for_job
    from pgjobs.schedules.declared import schedule
    from pgjobs.services.locate import engine_url
    from pgjobs.vault.credentials import (
        CredentialExists,
        CredentialNotFound,
        create_credential,
        find_credential,
        get_credential,
        list_credentials,
    )
    from pgjobs.worker.context import JobContext
    from pgjobs.worker.errors import PermanentError
    from pgjobs.worker.handlers.registry import handles

_HOMES: dict[str, str] = {
    # declaring job types and handlers
    "job_type": "pgjobs.producer.job_types",
    "JobType": "pgjobs.producer.job_types",
    "Backoff": "pgjobs.producer.job_types",
    "Limit": "pgjobs.producer.job_types",
    "Rate": "pgjobs.producer.job_types",
    "handles": "pgjobs.worker.handlers.registry",
    "JobContext": "pgjobs.worker.context",
    "PermanentError": "pgjobs.worker.errors",
    # enqueueing and commands
    "enqueue": "pgjobs.producer.enqueue",
    "enqueue_many": "pgjobs.producer.enqueue",
    "JobRequest": "pgjobs.producer.enqueue",
    "EnqueuedJob": "pgjobs.producer.enqueue",
    "cancel_job": "pgjobs.producer.control",
    "retry_job": "pgjobs.producer.control",
    "CancelResult": "pgjobs.producer.control",
    "RetryResult": "pgjobs.producer.control",
    "flush": "pgjobs.producer.sender",
    # periodic jobs (``pgjobs.schedules`` is the module of their API)
    "schedule": "pgjobs.schedules.declared",
    # status
    "get_job": "pgjobs.producer.status",
    "list_jobs": "pgjobs.producer.status",
    "get_job_events": "pgjobs.producer.status",
    "count_jobs_by_status": "pgjobs.producer.status",
    "wait_for_job": "pgjobs.producer.wait",
    "Page": "pgjobs.producer.status",
    "JobRead": "pgjobs.db.schemas.job",
    "JobEventRead": "pgjobs.db.schemas.job",
    # tenants
    "get_tenant": "pgjobs.db.tenants",
    "create_tenant": "pgjobs.db.tenants",
    "list_tenants": "pgjobs.db.tenants",
    "TenantRead": "pgjobs.db.schemas.tenant",
    # daily quotas per tenant
    "set_quota": "pgjobs.producer.quotas",
    "remove_quota": "pgjobs.producer.quotas",
    "quota_usage": "pgjobs.producer.quotas",
    "QuotaUsage": "pgjobs.producer.quotas",
    # credentials (stored encrypted; a job's payload carries only the id)
    "create_credential": "pgjobs.vault.credentials",
    "find_credential": "pgjobs.vault.credentials",
    "get_credential": "pgjobs.vault.credentials",
    "list_credentials": "pgjobs.vault.credentials",
    "CredentialRead": "pgjobs.db.schemas.credential",
    "CredentialExists": "pgjobs.vault.credentials",
    "CredentialNotFound": "pgjobs.vault.credentials",
    # the database, for an application's own engine
    "engine_url": "pgjobs.services.locate",
    # typed errors
    "JobsError": "pgjobs.db.errors",
    "ConfigurationError": "pgjobs.db.errors",
    "DatabaseError": "pgjobs.db.errors",
    "DatabaseUnavailable": "pgjobs.db.errors",
    "InvalidInput": "pgjobs.db.errors",
    "NotFound": "pgjobs.db.errors",
    "ProducerError": "pgjobs.producer.errors",
    "UnknownJobType": "pgjobs.producer.errors",
    "UnknownTenant": "pgjobs.producer.errors",
    "InvalidPayload": "pgjobs.producer.errors",
    "PayloadTooLarge": "pgjobs.producer.errors",
    "InvalidOption": "pgjobs.producer.errors",
    "InvalidTransition": "pgjobs.producer.errors",
    "JobNotFound": "pgjobs.producer.errors",
    "QuotaExceeded": "pgjobs.producer.errors",
}

__all__ = [
    "Backoff",
    "CancelResult",
    "ConfigurationError",
    "CredentialExists",
    "CredentialNotFound",
    "CredentialRead",
    "DatabaseError",
    "DatabaseUnavailable",
    "EnqueuedJob",
    "InvalidInput",
    "InvalidOption",
    "InvalidPayload",
    "InvalidTransition",
    "JobContext",
    "JobEventRead",
    "JobNotFound",
    "JobRead",
    "JobRequest",
    "JobType",
    "JobsError",
    "Limit",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PermanentError",
    "ProducerError",
    "QuotaExceeded",
    "QuotaUsage",
    "Rate",
    "RetryResult",
    "TenantRead",
    "UnknownJobType",
    "UnknownTenant",
    "cancel_job",
    "count_jobs_by_status",
    "create_credential",
    "create_tenant",
    "engine_url",
    "enqueue",
    "enqueue_many",
    "find_credential",
    "flush",
    "get_credential",
    "get_job",
    "get_job_events",
    "get_tenant",
    "handles",
    "job_type",
    "list_credentials",
    "list_jobs",
    "list_tenants",
    "quota_usage",
    "remove_quota",
    "retry_job",
    "schedule",
    "schedules",
    "set_quota",
    "wait_for_job",
]


def __getattr__(name: str) -> Any:
    """Load a public name from the module that defines it, on first use (PEP 562)."""
    if name == "schedules":  # the subpackage itself
        return importlib.import_module("pgjobs.schedules")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pgjobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
