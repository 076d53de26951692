"""Prometheus metrics of job outcomes, per job type (beside Dramatiq's own message metrics).

Exposed by `jobctl worker --metrics-port` (see docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from pgjobs.db.jobs.state_machine import RateWaiting, ShareUsage, SlotUsage
    from pgjobs.producer.served import WaitingType

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


unserved_jobs = Gauge(
    "pgjobs_unserved_jobs",
    "Due jobs waiting whose type no running worker serves, by job type "
    "(pgjobs/producer/served.py; refreshed by every worker process)",
    ["job_type"],
    multiprocess_mode="mostrecent",
)
_unserved_types: set[str] = set()


def unserved(waiting: Sequence[WaitingType]) -> None:
    """Set the gauge to ``waiting``; types reported before and served now go back to 0."""
    now = {w.job_type: w.waiting for w in waiting}
    for job_type in _unserved_types - now.keys():
        unserved_jobs.labels(job_type).set(0)
    for job_type, count in now.items():
        unserved_jobs.labels(job_type).set(count)
    _unserved_types.update(now)


limit_slots_in_use = Gauge(
    "pgjobs_limit_slots_in_use",
    "Concurrency slots taken (live active jobs), by limit key (docs/limits.md)",
    ["key"],
    multiprocess_mode="mostrecent",
)
limit_waiting = Gauge(
    "pgjobs_limit_waiting_jobs",
    "Jobs waiting for a concurrency slot, by limit key (docs/limits.md)",
    ["key"],
    multiprocess_mode="mostrecent",
)
rate_waiting = Gauge(
    "pgjobs_rate_waiting_jobs",
    "Jobs waiting for room in their rate key's window, by rate key (docs/limits.md)",
    ["key"],
    multiprocess_mode="mostrecent",
)
share_in_flight = Gauge(
    "pgjobs_share_in_flight_jobs",
    "Jobs of a tenant's fair share running or due, by share (queue:tenant; docs/limits.md)",
    ["key"],
    multiprocess_mode="mostrecent",
)
share_held = Gauge(
    "pgjobs_share_held_jobs",
    "Jobs held beyond a tenant's fair share, by share (queue:tenant; docs/limits.md)",
    ["key"],
    multiprocess_mode="mostrecent",
)
_reported: dict[str, set[str]] = {}
"""Per gauge name, the keys it has reported: a key idle now goes back to 0."""


def _by_key(gauge: Gauge, values: dict[str, int]) -> None:
    reported = _reported.setdefault(gauge._name, set())
    for key in reported - values.keys():
        gauge.labels(key).set(0)
    for key, value in values.items():
        gauge.labels(key).set(value)
    reported.update(values)


def limits(usage: Sequence[SlotUsage]) -> None:
    """Set the limit gauges; keys reported before and idle now go back to 0."""
    _by_key(limit_slots_in_use, {u.key: u.in_use for u in usage})
    _by_key(limit_waiting, {u.key: u.waiting for u in usage})


def shares(usage: Sequence[ShareUsage]) -> None:
    """Set the fair share gauges; shares reported before and idle now go back to 0."""
    _by_key(share_in_flight, {u.key: u.in_flight for u in usage})
    _by_key(share_held, {u.key: u.held for u in usage})


def rates(waiting: Sequence[RateWaiting]) -> None:
    """Set the rate gauge; keys reported before and with none waiting now go back to 0."""
    _by_key(rate_waiting, {w.key: w.waiting for w in waiting})


def outcome(job_type: str, result: str, seconds: float | None = None) -> None:
    jobs_total.labels(job_type, result).inc()
    if seconds is not None:
        job_duration.labels(job_type, result).observe(seconds)
