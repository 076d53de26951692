"""Prometheus metrics of job outcomes, per job type (beside Dramatiq's own message metrics).

Exposed by `jobctl worker --metrics-port` (see docs/operations.md).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

jobs_total = Counter(
    "pgjobs_job_outcomes_total",
    "Attempts that ended, by job type and outcome",
    ["job_type", "outcome"],
)
job_duration = Histogram(
    "pgjobs_job_duration_seconds",
    "Handler run time of an attempt, by job type and outcome",
    ["job_type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
claims_skipped = Counter(
    "pgjobs_claims_skipped_total",
    "Deliveries that found their job missing, finished, not due or held (duplicates)",
)


def outcome(job_type: str, result: str, seconds: float | None = None) -> None:
    jobs_total.labels(job_type, result).inc()
    if seconds is not None:
        job_duration.labels(job_type, result).observe(seconds)
