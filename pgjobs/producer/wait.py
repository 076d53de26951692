"""Waiting for a job to finish, from a script or a test: the status query, asked again until
the job is terminal."""

from __future__ import annotations

import math
import time
import uuid

from pgjobs.db.models import TERMINAL_STATUSES
from pgjobs.db.schemas.job import JobRead
from pgjobs.producer.errors import InvalidOption
from pgjobs.producer.status import get_job

MIN_INTERVAL = 0.05
"""Closest together two status queries of one wait can be (seconds)."""


def wait_for_job(
    tenant_id: uuid.UUID, job_id: int, *, timeout: float = 60.0, interval: float = 0.2
) -> JobRead:
    """The job once it is succeeded, failed or cancelled, read every ``interval`` seconds.

    TimeoutError when it is not after ``timeout`` seconds (the job goes on); the errors of
    :func:`get_job` otherwise (JobNotFound, InvalidOption).
    """
    for name, value in (("timeout", timeout), ("interval", interval)):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidOption.for_field(name, "must be a number of seconds")
    if timeout < 0:
        raise InvalidOption.for_field("timeout", "must be 0 or more")
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(tenant_id, job_id)
        if job.status in TERMINAL_STATUSES:
            return job
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"job {job.id} is still {job.status.value} after {timeout:g} s")
        time.sleep(min(max(interval, MIN_INTERVAL), left))
