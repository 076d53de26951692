"""Rate limits at claim time: each rated job's key, and the sweep of lost delayed messages
(docs/limits.md).

A rate key may be a function of the payload, so the worker computes it, in the claim round's
transaction, from the payloads of the batch's rated jobs (one extra statement, only when some
registered type has a rate). The claim statement then checks each key's sliding window and
parks a job over its rate ``waiting`` with the time its window has room; this module sends it a
message delayed to that time. If that message is lost (Redis emptied, a send failed), the
maintenance sweep sends a new one once the job is overdue by ``JOBS_RELAY_QUEUED_AFTER_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.logs import get_logger
from pgjobs.producer.job_types import rated_types
from pgjobs.settings import get_settings
from pgjobs.worker.limits import send_released

log = get_logger(__name__)

FALLBACK_VALUE = "?"
"""The key value of a job whose key no longer computes (its type's rate changed after it was
enqueued; the enqueue checks it): such jobs share one window of their scope."""


def rate_check(conn: Connection, job_ids: Sequence[int]) -> sm.RateCheck | None:
    """The rate (key, n, per) of each job of ``job_ids`` whose type has one; None when there
    is none (no rated type registered, or none in the batch)."""
    rated = rated_types()
    if not rated:
        return None
    candidates = sm.rate_candidates(conn, job_ids, sorted(rated))
    if not candidates:
        return None
    check = sm.RateCheck([], [], [], [])
    for job in candidates:
        rate = rated[job.type]
        try:
            key = rate.key_for(job.type, job.tenant_id, job.payload)
        except Exception as exc:  # noqa: BLE001 - a user's key function: never stop the round
            log.warning("rates.key_failed", job_id=job.id, error_type=type(exc).__name__)
            key = f"{rate.scope or job.type}:{FALLBACK_VALUE}"
        check.ids.append(job.id)
        check.keys.append(key)
        check.ns.append(rate.n)
        check.pers.append(float(rate.per))
    return check


def send_parked(parked: list[sm.ReleasedJob]) -> None:
    """Send the messages of jobs a committed claim round parked for their rate, each delayed
    to when its window has room (raises nothing: the sweep re-sends a lost one)."""
    if parked:
        send_released(parked, event="rates.parked")


def resend_lost() -> int:
    """The maintenance pass: a new message for each job waiting for its rate whose due time
    passed ``JOBS_RELAY_QUEUED_AFTER_SECONDS`` ago; returns how many were sent."""
    settings = get_settings()
    with autocommit() as conn:
        lost = sm.resend_lost_rate_waits(
            conn, grace_seconds=settings.relay_queued_after_seconds, limit=settings.relay_batch_size
        )
    if lost:
        log.warning("rates.resent_lost", jobs=len(lost))
        send_released(lost, event="rates.resent")
    return len(lost)


def refresh_rate_gauges() -> None:
    """The ``pgjobs_rate_waiting_jobs`` gauge from :func:`sm.rate_waiting` (raises nothing)."""
    from pgjobs.worker import metrics

    try:
        with autocommit() as conn:
            metrics.rates(sm.rate_waiting(conn))
    except Exception as exc:  # noqa: BLE001 - a gauge must never stop its thread
        log.warning("rates.gauge_failed", error_type=type(exc).__name__)
