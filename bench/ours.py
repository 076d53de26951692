"""This system's side of each measure: the noop job type through the whole system.

Every job has its full event trail (``enqueued``, ``started``, ``completed``), its outbox row,
its claim with a lease, and the worker's logging as shipped (JSON at INFO).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from pathlib import Path

import redis

from bench.latency import open_loop
from bench.noop_jobs import nap, noop
from bench.procs import (
    ServerCpu,
    WorkerGroup,
    WorkerShape,
    busy_share,
    machine_ticks,
    ours_argv,
    poll_env,
    self_cpu,
)
from bench.results import DrainResult, LatencyResult, RateResult, insert_alone_side
from bench.services import QUEUE, Env, Servers, scratch, wait_until
from bench.stats import p50_p99
from pgjobs.db.engine import autocommit, reset_engine
from pgjobs.db.held import held_connection
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.statements import run_driver
from pgjobs.db.tenants import create_tenant
from pgjobs.producer import JobRequest, enqueue, enqueue_many, flush

POLL_S = 0.01
BATCH = 1000

Around = Callable[[Env, uuid.UUID], AbstractContextManager[object]]


def _tenant() -> uuid.UUID:
    return create_tenant(name="bench", slug=f"bench-{uuid.uuid4().hex[:8]}").id


def _workers(
    env: Env, shape: WorkerShape, log_dir: Path, every_queue: bool = False, **settings: str
) -> WorkerGroup:
    """``every_queue``: no ``--queues`` (every shipped queue, as ``jobctl worker`` starts)."""
    worker_env = env.worker_env()
    worker_env.update(poll_env(shape))
    worker_env.update({f"JOBS_{k.upper()}": v for k, v in settings.items()})
    argv = ours_argv(shape, None if every_queue else QUEUE)
    return WorkerGroup(f"ours-{env.namespace}", argv, worker_env, log_dir)


def fill(tenant: uuid.UUID, jobs: int, start: int = 0, napping: bool = False) -> None:
    """Queue ``jobs`` noop jobs (``napping``: 5 ms jobs) with ``enqueue_many`` (batches of
    1,000)."""
    for offset in range(0, jobs, BATCH):
        size = min(BATCH, jobs - offset)
        enqueue_many(
            [
                JobRequest(nap, {}, tenant) if napping else JobRequest(noop, {"n": n}, tenant)
                for n in range(start + offset, start + offset + size)
            ]
        )
    flush()  # every job queued before the workers start, as after any quiet moment


def _commits(env: Env) -> int:
    with env.pg() as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def _redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def drain(
    srv: Servers,
    shape: WorkerShape,
    jobs: int,
    log_dir: Path,
    db_settings: dict[str, str] | None = None,
    around: Around | None = None,
    every_queue: bool = False,
    napping: bool = False,
    **settings: str,
) -> DrainResult:
    """Queue ``jobs``, start the workers, wait for the last completion. Times come from the
    database: ``max(completed_at)`` minus the database clock read just before the launch.

    ``settings`` are JOBS_* settings of the workers; ``db_settings`` are set on the scratch
    database (``ALTER DATABASE ... SET``) for diagnostic runs; ``around(env, tenant)`` is a
    context entered once the jobs are queued and left after the drain (what else runs during
    it: the API's event streams, a NOTIFY trigger and its listener). ``napping``: 5 ms jobs
    (``bench_nap``) instead of noop jobs."""
    with scratch(srv) as env, env.pg() as conn, ExitStack() as extra:
        for name, value in (db_settings or {}).items():
            conn.execute(f"ALTER DATABASE {conn.info.dbname} SET {name} = '{value}'")
        tenant = _tenant()
        fill(tenant, jobs, napping=napping)
        if around is not None:
            extra.enter_context(around(env, tenant))
        client = env.redis()
        msgs = f"{env.namespace}:{QUEUE}.msgs"
        assert client.hlen(msgs) == jobs
        group = _workers(env, shape, log_dir, every_queue, **settings)
        cpu = ServerCpu(srv.redis_url, env.database_url)
        commits, commands, polls = _commits(env), _redis_commands(client), 0
        cpu.mark()
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        launched: datetime = row[0]  # type: ignore[assignment]
        started = time.perf_counter()
        group.start()
        redis_empty = None
        try:
            while redis_empty is None:
                polls += 1
                if client.hlen(msgs) == 0:
                    redis_empty = time.perf_counter() - started
                elif time.perf_counter() - started > 900:
                    raise RuntimeError("drain did not finish:\n" + group.tail())
                else:
                    time.sleep(POLL_S)
            query = "SELECT count(*) FROM content_jobs WHERE status = 'succeeded'"
            if not wait_until(lambda: conn.execute(query).fetchone() == (jobs,), 60, 0.1):
                raise RuntimeError("Redis is empty but jobs are not all succeeded")
            worker_cpu = group.cpu_seconds()
            pg_cpu, redis_cpu = cpu.since()
            commands = _redis_commands(client) - commands - polls - 1
        finally:
            group.stop()
        first, last = conn.execute(
            "SELECT min(started_at), max(completed_at) FROM content_jobs"
        ).fetchone()  # type: ignore[misc]
        time.sleep(1.0)  # backends flush their statistics when they exit
        commits = _commits(env) - commits
        client.close()
        return DrainResult(
            side="ours",
            jobs=jobs,
            seconds=(last - launched).total_seconds(),
            steady_seconds=(last - first).total_seconds(),
            worker_cpu_ms_per_job=worker_cpu * 1000 / jobs,
            pg_cpu_ms_per_job=pg_cpu * 1000 / jobs,
            redis_cpu_ms_per_job=redis_cpu * 1000 / jobs,
            redis_commands_per_job=commands / jobs,
            commits_per_job=commits / jobs,
            redis_empty_seconds=redis_empty,
        )


Work = Callable[[uuid.UUID, int, int], None]
"""One timed call: (tenant, first job number, jobs in the call)."""


def _rate(srv: Servers, count: int, batch: int, work: Work, side: str) -> RateResult:
    """``work`` from one thread for ``count`` jobs in calls of ``batch``, no workers running;
    every row marked queued before the clock stops (the whole cost of the calls)."""
    with scratch(srv) as env:
        tenant = _tenant()
        client = env.redis()
        warm = min(200, count)
        for offset in range(0, warm, batch):
            work(tenant, offset, min(batch, warm - offset))
        flush()
        cpu = ServerCpu(srv.redis_url, env.database_url)
        reset_engine()  # backends flush their statistics when they exit
        time.sleep(0.5)
        commits, commands = _commits(env), _redis_commands(client)
        cpu.mark()
        cpu0, ticks0 = self_cpu(), machine_ticks()
        started = time.perf_counter()
        for offset in range(0, count, batch):
            work(tenant, offset, min(batch, count - offset))
        flush()
        seconds = time.perf_counter() - started
        producer, busy = self_cpu() - cpu0, busy_share(ticks0, machine_ticks())
        pg_cpu, redis_cpu = cpu.since()
        commands = _redis_commands(client) - commands - 1
        client.close()
        reset_engine()
        time.sleep(0.5)
        commits = _commits(env) - commits
        return RateResult(
            side=side,
            jobs=count,
            seconds=seconds,
            producer_cpu_us_per_job=producer * 1e6 / count,
            pg_cpu_us_per_job=pg_cpu * 1e6 / count,
            redis_cpu_us_per_job=redis_cpu * 1e6 / count,
            commits_per_job=commits / count,
            redis_commands_per_job=commands / count,
            machine_busy_pct=busy,
        )


def enqueue_rate(srv: Servers, count: int) -> RateResult:
    """``enqueue`` in a loop from one thread, no workers running."""

    def work(tenant: uuid.UUID, first: int, _: int) -> None:
        enqueue(noop, {"n": first}, tenant_id=tenant)

    return _rate(srv, count, 1, work, "ours")


def enqueue_many_rate(srv: Servers, count: int, batch: int) -> RateResult:
    """``enqueue_many`` with ``batch`` jobs per call, from one thread, no workers running."""

    def work(tenant: uuid.UUID, first: int, size: int) -> None:
        enqueue_many([JobRequest(noop, {"n": first + i}, tenant) for i in range(size)])

    return _rate(srv, count, batch, work, f"ours (batches of {batch})")


def insert_alone_rate(srv: Servers, count: int, batch: int) -> RateResult:
    """The outbox INSERT alone (``insert_pending``, the statement both enqueues run), with
    the rows built before the clock starts: no validation, no message, no Redis, no mark.
    What PostgreSQL's durable write of a row and its event costs: the floor under the
    enqueues' time. On the thread's held connection, as ``enqueue`` writes."""
    rows: list[sm.NewJob] = []

    def work(tenant: uuid.UUID, first: int, size: int) -> None:
        if not rows:  # all of them, before the warm-up call
            rows.extend(_row(tenant, n) for n in range(count + 200))
        chunk = [rows.pop() for _ in range(size)]
        with held_connection() as held:  # the connection enqueue writes on
            if held is not None:
                run_driver(held, sm.insert_pending_plan(chunk))
                return
        with autocommit() as conn:
            sm.insert_pending(conn, chunk)

    return _rate(srv, count, batch, work, insert_alone_side(batch))


def _row(tenant: uuid.UUID, n: int) -> sm.NewJob:
    return sm.NewJob(
        tenant_id=tenant,
        type=noop.name,
        payload_json=f'{{"n":{n}}}',
        message_id=str(uuid.uuid4()),
        max_attempts=noop.max_attempts,
        priority=noop.priority,
        run_at=None,
        delay_seconds=None,
        idempotency_key=None,
    )


def latency(
    srv: Servers, shape: WorkerShape, rate: float, seconds: float, log_dir: Path
) -> LatencyResult:
    """Open-loop ``enqueue`` at ``rate``; latency = the ``started`` event's ``created_at``
    minus the job's ``created_at`` (both the database's clock)."""
    with scratch(srv) as env, env.pg() as conn:
        tenant = _tenant()
        group = _workers(env, shape, log_dir)
        try:
            group.start()
            fill(tenant, 20)
            done = "SELECT count(*) FROM content_jobs WHERE status = 'succeeded'"
            if not wait_until(lambda: conn.execute(done).fetchone() == (20,), 60):
                raise RuntimeError("workers did not start:\n" + group.tail())
            time.sleep(0.5)

            def send(i: int) -> None:
                enqueue(noop, {"n": i}, tenant_id=tenant)

            loop = open_loop(send, rate, seconds)
            total = loop.sent + 20
            if not wait_until(lambda: conn.execute(done).fetchone() == (total,), 120, 0.1):
                raise RuntimeError("latency jobs did not all run:\n" + group.tail())
        finally:
            group.stop()
        rows = conn.execute(
            """
            SELECT extract(epoch FROM e.created_at - j.created_at) * 1000
            FROM content_jobs j JOIN job_events e ON e.job_id = j.id
            WHERE e.event_type = 'started' AND j.id > (SELECT min(id) + 19 FROM content_jobs)
            """
        ).fetchall()
    values = [float(r[0]) for r in rows]  # type: ignore[arg-type]
    p50, p99 = p50_p99(values)
    return LatencyResult(
        "ours", rate, loop.achieved_rate, len(values), p50, p99, max(values), loop.lag_p99_ms
    )
