"""Exceptions a handler raises (or meets at a checkpoint) to steer what happens to its job."""

from __future__ import annotations

from pgjobs.db.errors import JobsError


class PermanentError(JobsError):
    """The job cannot succeed by retrying (bad input, 4xx from a provider): fail it now."""


class JobCancelled(JobsError):
    """Raised at a checkpoint when the job was asked to cancel; the job ends ``cancelled``."""


class LeaseLost(JobsError):
    """Raised at a checkpoint when this worker no longer holds the job (it was rescued and
    claimed elsewhere, or ended): the handler stops and this worker writes nothing more."""


class JobTimeLimitExceeded(JobsError):
    """The job ran past its type's time limit (raised into the handler's thread)."""
