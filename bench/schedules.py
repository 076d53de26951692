"""Periodic schedules at scale: many active schedules firing every minute.

10,000 schedules across 100 tenants (``* * * * *``, the noop job type), written by
``pgjobs.schedules.sync`` per tenant, as an application's deploy would. The maintenance loop
runs in this process exactly as ``jobctl maintenance`` runs it (every service, the scheduler
looking every ``JOBS_SCHEDULER_INTERVAL_SECONDS``), the scheduler's passes timed. No workers
run by default: on this machine they would take the cores the pass is measured on
(``--schedule-workers`` runs them, a diagnostic). Measured over whole minutes:

* the scheduler's wall time per minute (the passes that fired that minute's slots, added up);
* the firing delay of every job: from its slot to the commit that enqueued it (the scheduler
  measures it per batch: the database clock at the batch's start minus the slot, plus the
  batch's own time up to its commit, the messages' send included).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench import ours
from bench.noop_jobs import noop
from bench.procs import WorkerShape
from bench.results import ScheduleResult
from bench.services import Servers, scratch
from bench.stats import median, percentile
from pgjobs import schedules
from pgjobs.db.tenants import create_tenant
from pgjobs.schedules.definition import define
from pgjobs.worker import maintenance
from pgjobs.worker.scheduler import FireResult, fire_due


def run(
    srv: Servers,
    shape: WorkerShape,
    log_dir: Path,
    *,
    schedule_count: int = 10_000,
    tenants: int = 100,
    minutes: int = 3,
    workers: bool = False,
    progress: Callable[[str], None] = print,
) -> ScheduleResult:
    """Write the schedules, run the maintenance loop for ``minutes`` whole minutes, and time
    ``enqueue_many`` alone for as many jobs half-way through each (the floor under a pass)."""
    with scratch(srv) as env:
        started = time.perf_counter()
        per_tenant = schedule_count // tenants
        for t in range(tenants):
            tenant = create_tenant(name=f"bench {t}", slug=f"bench-{t}-{uuid.uuid4().hex[:6]}")
            definitions = [
                define(f"s{i}", noop, cron="* * * * *", payload={"n": i}) for i in range(per_tenant)
            ]
            schedules.sync(tenant.id, definitions)
        created_s = time.perf_counter() - started
        progress(f"schedules: {per_tenant * tenants:,} written in {created_s:.1f} s")
        group = ours._workers(env, shape, log_dir) if workers else None
        if group is not None:
            group.start()
        passes: list[tuple[float, float, FireResult]] = []  # (start, seconds, result)
        floors: list[float] = []

        def timed() -> FireResult:
            begun = time.time()
            result = fire_due()
            passes.append((begun, time.time() - begun, result))
            return result

        stop = threading.Event()
        saved = list(maintenance.SERVICES)
        maintenance.SERVICES[:] = [
            (name, timed if name == "scheduler" else service, period)
            for name, service, period in saved
        ]
        loop = threading.Thread(target=maintenance.run_maintenance, args=(stop,), daemon=True)
        try:
            loop.start()
            first_minute = int(time.time() // 60) + 1  # the first whole minute
            for minute in range(first_minute, first_minute + minutes):
                # half-way through each minute, the pass done: the floor, in the same conditions
                time.sleep(max(0.0, minute * 60 + 30 - time.time()))
                floors.append(_enqueue_many_alone(per_tenant * tenants))
            time.sleep(max(0.0, (first_minute + minutes) * 60 + 20 - time.time()))
        finally:
            stop.set()
            loop.join(60)
            maintenance.SERVICES[:] = saved
            if group is not None:
                group.stop()
        floor_s = median(floors)
        progress(f"diagnostic: enqueue_many alone, {per_tenant * tenants:,} jobs: {floor_s:.2f} s")
        measured = [p for p in passes if first_minute <= p[0] // 60 < first_minute + minutes]
        per_minute: dict[int, float] = {}
        delays: list[float] = []
        jobs = 0
        for begun, seconds, result in measured:
            if result.jobs:
                minute = int(begun // 60)
                per_minute[minute] = per_minute.get(minute, 0.0) + seconds
                delays += result.delays
                jobs += result.jobs
        walls = sorted(per_minute.values())
        return ScheduleResult(
            schedules=per_tenant * tenants,
            tenants=tenants,
            minutes=minutes,
            jobs=jobs,
            workers=workers,
            wall_p50_s=percentile(walls, 50),
            wall_p99_s=percentile(walls, 99),
            wall_max_s=max(walls, default=float("nan")),
            delay_p50_s=percentile(delays, 50),
            delay_p99_s=percentile(delays, 99),
            delay_max_s=max(delays, default=float("nan")),
            idle_pass_ms=1000 * percentile([s for _, s, r in measured if not r.jobs], 50),
            write_seconds=created_s,
            enqueue_many_s=floor_s,
        )


def _enqueue_many_alone(jobs: int) -> float:
    """The same number of jobs through ``enqueue_many`` alone, in batches of the scheduler's
    size, each in a transaction with its send after commit, in one thread: the floor under a
    pass, measured half-way through each minute so it shares the pass's conditions."""
    from pgjobs.db.engine import session_scope
    from pgjobs.producer import JobRequest, enqueue_many

    tenant = create_tenant(name="floor", slug=f"floor-{uuid.uuid4().hex[:6]}").id
    batch = 1000
    started = time.perf_counter()
    for offset in range(0, jobs, batch):
        requests = [
            JobRequest(noop, {"n": i}, tenant, idempotency_key=f"floor:{i}")
            for i in range(offset, min(jobs, offset + batch))
        ]
        with session_scope() as session:
            enqueue_many(requests, session=session)
    return time.perf_counter() - started
