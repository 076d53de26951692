"""The maintenance process: small periodic services, each safe to run in several processes.

* relay (pgjobs/producer/relay.py): pending rows not sent, scheduled rows now due, lost messages;
* rescuer: expired leases go back to queued (``rescued``) or to failed when attempts are used up;
* pruner: terminal jobs older than the retention, with their events (cascade), and quota
  counts of days before yesterday (pgjobs/producer/quotas.py);
* broker housekeeping: Dramatiq's own Redis maintenance (messages held by dead workers);
* unserved: a warning per job type and ``JOBS_UNSERVED_WARNING_SECONDS`` for due jobs that no
  running worker serves, or whose type this process does not know (pgjobs/producer/served.py).
* scheduler (pgjobs/worker/scheduler.py): due schedule slots become jobs.
* limits (pgjobs/worker/limits.py): waiting jobs of keys with free concurrency slots, and held
  jobs of fair shares with room, are sent (the safety net: the round that frees one sends
  them first).
* rates (pgjobs/worker/rates.py): jobs waiting for their rate whose delayed message was lost
  (overdue by ``JOBS_RELAY_QUEUED_AFTER_SECONDS``) get a new one.

Each pass locks the rows it works on with ``FOR UPDATE SKIP LOCKED``, so two maintenance
processes split the work instead of doing it twice (River elects a leader instead; row locks
need no election and no failover).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import text

from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus
from pgjobs.logs import get_logger
from pgjobs.producer import broker, served
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.job_types import get_job_type, queues
from pgjobs.producer.quotas import PRUNE_USAGE
from pgjobs.producer.relay import relay_once
from pgjobs.settings import get_settings
from pgjobs.worker.limits import sweep_waiting
from pgjobs.worker.rates import resend_lost
from pgjobs.worker.scheduler import fire_due

log = get_logger(__name__)

PRUNE = text(
    """
    WITH doomed AS (
        SELECT id FROM content_jobs
        WHERE status IN ('succeeded', 'failed', 'cancelled')
          AND completed_at < now() - make_interval(secs => :retention)
        ORDER BY completed_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM content_jobs j USING doomed d WHERE j.id = d.id
    """
)


def rescue_once() -> int:
    """Requeue or fail jobs whose lease expired; send the requeued jobs' messages."""
    settings = get_settings()
    with transaction() as conn:
        rescued = sm.rescue_expired(
            conn, grace_seconds=settings.rescue_grace_seconds, limit=settings.relay_batch_size
        )
    outgoing = []
    for job in rescued:
        if job.status is not JobStatus.QUEUED or job.queue_job_id is None:
            continue
        try:
            queue = get_job_type(job.type).queue
        except UnknownJobType:
            continue
        outgoing.append(broker.Outgoing(job.id, job.tenant_id, queue, job.queue_job_id))
    if rescued:
        failed = len(rescued) - len(outgoing)
        log.warning("rescuer.rescued", requeued=len(outgoing), failed=failed)
    try:
        broker.send(outgoing)
    except Exception as exc:  # noqa: BLE001 - rows are queued; the relay re-sends lost messages
        log.warning("rescuer.send_failed", error_type=type(exc).__name__)
    return len(rescued)


def prune_once(*, max_batches: int = 100) -> int:
    """Delete terminal jobs past the retention (their events cascade), a batch per statement,
    batch after batch while they come back full: the pruner keeps up with any job rate."""
    settings = get_settings()
    params = {"retention": settings.retention_days * 86400, "limit": settings.prune_batch_size}
    deleted = 0
    for _ in range(max_batches):
        with autocommit() as conn:
            batch = int(conn.execute(PRUNE, params).rowcount)
        deleted += batch
        if batch < settings.prune_batch_size:
            break
    with autocommit() as conn:
        conn.execute(PRUNE_USAGE)
    if deleted:
        log.info("pruner.deleted", jobs=deleted)
    return deleted


def broker_housekeeping_once() -> None:
    """Requeue messages that workers killed without acking still hold on Redis."""
    broker.run_broker_maintenance(queues())


def report_unserved_once() -> list[served.WaitingType]:
    """Warn about due jobs that nothing will run, one line per job type; return them.

    * A type this process does not know (``relay.unknown_job_type``): the relay cannot send
      its jobs' messages, since the type names their queue. Its module belongs in this
      process's ``JOBS_IMPORTS``.
    * A type no running worker serves (``jobs.unserved``), once its oldest due job has waited
      ``JOBS_UNSERVED_WARNING_SECONDS`` (workers that are starting are given that long).

    Runs once per that interval, so a type is reported once per interval, not per pass.
    """
    settings = get_settings()
    workers = served.live_workers()
    serving = {t for w in workers for t in w.job_types}
    reported = []
    for waiting in served.waiting_jobs():
        if waiting.queue is None:
            log.warning(
                "relay.unknown_job_type",
                job_type=waiting.job_type,
                waiting=waiting.waiting,
                hint="declare it in this process: add its module to JOBS_IMPORTS",
            )
        if (
            waiting.job_type not in serving
            and waiting.due_for_seconds >= settings.unserved_warning_seconds
        ):
            log.warning(
                "jobs.unserved",
                job_type=waiting.job_type,
                queue=waiting.queue,
                waiting=waiting.waiting,
                due_for_s=round(waiting.due_for_seconds),
                running_workers=len(workers),
                hint="no running worker serves this type: start one with its handler's module "
                "in JOBS_IMPORTS (and its queue, if the worker has --queues)",
            )
        if waiting.queue is None or waiting.job_type not in serving:
            reported.append(waiting)
    return reported


def _every_warning_interval() -> float:
    return get_settings().unserved_warning_seconds


def scheduler_period() -> float:
    return get_settings().scheduler_interval_seconds


# (name, pass, period: seconds, a function of the settings giving them, or None: every tick)
SERVICES: list[tuple[str, Callable[[], object], float | Callable[[], float] | None]] = [
    ("broker", broker_housekeeping_once, None),
    ("relay", relay_once, None),
    ("rescuer", rescue_once, None),
    ("limits", sweep_waiting, None),
    ("rates", resend_lost, None),
    ("pruner", prune_once, 60.0),
    ("unserved", report_unserved_once, _every_warning_interval),
    ("scheduler", fire_due, scheduler_period),
]


def run_maintenance(stop: threading.Event, *, interval: float | None = None) -> None:
    """Run every service on its period until ``stop`` is set. A failing service is logged
    and tried again on its next period; it never stops the others."""
    tick = interval if interval is not None else get_settings().maintenance_interval_seconds
    periods = {
        name: period() if callable(period) else (period or tick) for name, _, period in SERVICES
    }
    due = {name: 0.0 for name in periods}
    log.info("maintenance.started", services=list(periods))
    while not stop.is_set():
        now = time.monotonic()
        for name, service, _ in SERVICES:
            if now < due[name]:
                continue
            due[name] = now + periods[name]
            started = time.perf_counter()
            try:
                service()
            except Exception as exc:  # noqa: BLE001
                log.warning(
                    "maintenance.service_failed", service=name, error_type=type(exc).__name__
                )
            elapsed = (time.perf_counter() - started) * 1000
            if elapsed > 1000:
                log.info("maintenance.slow_pass", service=name, duration_ms=round(elapsed, 1))
        stop.wait(max(0.0, min(due.values()) - time.monotonic()))
    log.info("maintenance.stopped")
