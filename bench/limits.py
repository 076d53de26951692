"""``python -m bench --only limits``: issue 17's goals for concurrency and rate limits
(docs/limits.md), in a section of docs/benchmarks.md of its own.

Every run is a scratch database, a tenant, its jobs queued before the launch, then 2 worker
processes x 4 threads and a maintenance process started, until every job has succeeded. The
handler sleeps 5 ms (bench/sleep_jobs.py). The figures come from the database: the jobs'
``started`` and terminal events (the claim's and the completion's clock), not the handlers.

* concurrency: N jobs over 20 keys (each job's key drawn at random) with ``Limit(3)`` per key,
  against the same jobs without a limit (workers declaring none): the most running at once
  per key, and throughput;
* rate: 20 per second per key (5 keys), a producer enqueuing 25 per second per key for S
  seconds while the workers run, and the same number of jobs all queued before the launch (a
  backlog): the most starts in any second of a key, and the rate achieved
  (starts / (last start - first start + 1 s));
* cost when unused: the unlimited drain by workers declaring no limit, against workers that
  declare a limited and a rated type but drain jobs of neither.

The concurrency pair and the unused pair run ``--runs`` times each (medians reported; single
runs of 2,000 jobs vary by 0.1 x on a shared machine), the rate runs once; ``--rate-seconds 0``
leaves the rate runs out (a probe of the concurrency figures).
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.limit_jobs import CONCURRENCY, limited
from bench.procs import ServerCpu, WorkerGroup, WorkerShape, ours_argv, poll_env
from bench.rate_jobs import RATE, rated
from bench.services import QUEUE, Servers, scratch, wait_until
from bench.sleep_jobs import plain
from bench.stats import median
from pgjobs.db.tenants import create_tenant
from pgjobs.producer import JobRequest, enqueue_many, flush

KEYS = 20
RATE_KEYS = 5
OFFERED = 25
"""Jobs per second per key the rate run's producer enqueues: more than the rate admits."""
TICK_S = 0.2
TERMINAL_EVENTS = "'completed', 'failed', 'retry', 'cancelled', 'rescued'"

# Per key, the most jobs running at once: +1 at `started`, -1 at the attempt's end, an end
# before a start at the same instant.
MAX_CONCURRENT = f"""
WITH steps AS (
    SELECT j.payload->>'key' AS key, e.created_at AS at,
           CASE WHEN e.event_type = 'started' THEN 1 ELSE -1 END AS step
    FROM job_events e JOIN content_jobs j ON j.id = e.job_id
    WHERE e.event_type IN ('started', {TERMINAL_EVENTS})
)
SELECT coalesce(max(n), 0) FROM (
    SELECT sum(step) OVER (PARTITION BY key ORDER BY at, step ROWS UNBOUNDED PRECEDING) AS n
    FROM steps
) running
"""

# Per key, the most starts in a window [t, t + 1 s), and the lowest rate achieved of the keys.
RATE_WINDOWS = """
WITH s AS (
    SELECT j.payload->>'key' AS key, e.created_at AS at
    FROM job_events e JOIN content_jobs j ON j.id = e.job_id
    WHERE e.event_type = 'started'
), per_key AS (
    SELECT key, count(*) AS starts, extract(epoch FROM max(at) - min(at)) AS span
    FROM s GROUP BY key
)
SELECT (SELECT max(n) FROM (
            SELECT count(*) OVER (PARTITION BY key ORDER BY at RANGE BETWEEN CURRENT ROW
                                  AND interval '999999 microseconds' FOLLOWING) AS n
            FROM s) w),
       (SELECT min(starts / (span + 1.0)) FROM per_key),
       (SELECT avg(starts / (span + 1.0)) FROM per_key)
"""

SUMMARY = """
SELECT count(*), extract(epoch FROM max(completed_at) - min(started_at)), max(attempts),
       (SELECT count(*) FROM job_events WHERE event_type = 'waiting')
FROM content_jobs WHERE status = 'succeeded'
"""


@dataclass
class LimitsRun:
    label: str
    jobs: int
    seconds: float
    """First start to last completion (database clock)."""
    worker_cpu_ms_per_job: float
    pg_cpu_ms_per_job: float
    max_attempts: int
    waiting_events: int
    max_concurrent: int
    max_per_window: int
    min_rate: float
    mean_rate: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


@dataclass
class LimitsSuite:
    meta: dict[str, Any] = field(default_factory=dict)
    runs: list[LimitsRun] = field(default_factory=list)

    def of(self, label: str) -> list[LimitsRun]:
        return [r for r in self.runs if r.label == label]


NO_LIMIT = "no limit declared"
UNUSED = "limits declared, unused"
LIMITED = "concurrency 3 per key"
UNLIMITED = "same jobs, no limit"
RATED = "rate 20/s per key, producer at 25/s per key"
BACKLOG = "rate 20/s per key, all queued first"
Produce = Callable[[uuid.UUID], int]


def _maintenance_argv() -> list[str]:
    return [sys.executable, "-c", "from pgjobs.cli.main import main; main()", "maintenance"]


def measure(
    srv: Servers,
    shape: WorkerShape,
    log_dir: Path,
    label: str,
    imports: str,
    requests: Callable[[uuid.UUID], list[JobRequest]],
    timeout: float,
    produce: Produce | None = None,
) -> LimitsRun:
    """One run: the jobs queued, the workers (importing ``imports``) and a maintenance process
    started, ``produce`` run (it enqueues more, returns how many), until every job succeeded;
    the figures read from the database."""
    with scratch(srv) as env, env.pg() as conn:
        tenant = create_tenant(name="bench", slug=f"bench-{uuid.uuid4().hex[:8]}").id
        wanted = requests(tenant)
        for offset in range(0, len(wanted), 1000):
            enqueue_many(wanted[offset : offset + 1000])
        flush()
        worker_env = env.worker_env() | poll_env(shape) | {"JOBS_IMPORTS": imports}
        workers = WorkerGroup(
            f"limits-{env.namespace}", ours_argv(shape, QUEUE), worker_env, log_dir
        )
        keeper = WorkerGroup(
            f"limits-maint-{env.namespace}", _maintenance_argv(), worker_env, log_dir
        )
        cpu = ServerCpu(srv.redis_url, env.database_url)
        done = "SELECT count(*) FROM content_jobs WHERE status = 'succeeded'"
        cpu.mark()
        keeper.start()
        workers.start()
        try:
            total = len(wanted) + (produce(tenant) if produce else 0)
            if not wait_until(lambda: conn.execute(done).fetchone() == (total,), timeout, 0.2):
                raise RuntimeError(f"{label}: jobs left after {timeout:.0f} s\n" + workers.tail())
            worker_cpu = workers.cpu_seconds()
            pg_cpu, _ = cpu.since()
        finally:
            workers.stop()
            keeper.stop()
        jobs, seconds, attempts, waits = conn.execute(SUMMARY).fetchone()  # type: ignore[misc]
        concurrent = conn.execute(MAX_CONCURRENT).fetchone()[0]  # type: ignore[index]
        window, low, mean = conn.execute(RATE_WINDOWS).fetchone()  # type: ignore[misc]
        return LimitsRun(
            label=label,
            jobs=int(jobs),
            seconds=float(seconds),
            worker_cpu_ms_per_job=worker_cpu * 1000 / total,
            pg_cpu_ms_per_job=pg_cpu * 1000 / total,
            max_attempts=int(attempts),
            waiting_events=int(waits),
            max_concurrent=int(concurrent),
            max_per_window=int(window),
            min_rate=float(low),
            mean_rate=float(mean),
        )


def _keyed(kind: Any, jobs: int, keys: int) -> Callable[[uuid.UUID], list[JobRequest]]:
    """``jobs`` requests, each of a key drawn at random (seeded: every run draws the same)."""
    draw = random.Random(jobs).randrange
    return lambda tenant: [JobRequest(kind, {"key": f"k{draw(keys)}"}, tenant) for _ in range(jobs)]


def _producer(seconds: int) -> Produce:
    """Enqueue ``OFFERED`` jobs per second per rate key, every ``TICK_S``, for ``seconds``."""

    def produce(tenant: uuid.UUID) -> int:
        per_tick = round(OFFERED * TICK_S)
        made, start = 0, time.monotonic()
        for tick in range(round(seconds / TICK_S)):
            time.sleep(max(0.0, start + tick * TICK_S - time.monotonic()))
            keys = [f"k{k}" for k in range(RATE_KEYS) for _ in range(per_tick)]
            enqueue_many([JobRequest(rated, {"key": key}, tenant) for key in keys])
            made += len(keys)
        flush()
        return made

    return produce


def run_all(srv: Servers, shape: WorkerShape, args: Any, log_dir: Path, say: Any) -> LimitsSuite:
    suite = LimitsSuite(meta={"load": " ".join(f"{x:.2f}" for x in os.getloadavg())})
    started = time.monotonic()
    jobs, seconds = args.limit_jobs, args.rate_seconds
    both = "bench.limit_jobs,bench.rate_jobs"
    plan: list[tuple[str, str, Callable[[uuid.UUID], list[JobRequest]], Produce | None]] = []
    for _ in range(args.runs):
        plan += [
            (NO_LIMIT, "bench.sleep_jobs", _keyed(plain, jobs, KEYS), None),
            (UNUSED, both, _keyed(plain, jobs, KEYS), None),
            (UNLIMITED, "bench.sleep_jobs", _keyed(plain, jobs, KEYS), None),
            (LIMITED, "bench.limit_jobs", _keyed(limited, jobs, KEYS), None),
        ]
    if seconds > 0:  # 0: the concurrency runs only (probes)
        backlog = _keyed(rated, OFFERED * seconds * RATE_KEYS, RATE_KEYS)
        plan += [
            (RATED, "bench.rate_jobs", lambda _: [], _producer(seconds)),
            (BACKLOG, "bench.rate_jobs", backlog, None),
        ]
    for label, imports, requests, produce in plan:
        timeout = seconds * 4 + 180 if label in (RATED, BACKLOG) else 600
        run = measure(srv, shape, log_dir, label, imports, requests, timeout, produce)
        suite.runs.append(run)
        say(
            f"limits, {label}: {run.jobs:,} jobs in {run.seconds:.1f} s ({run.rate:,.0f}/s), "
            f"most at once per key {run.max_concurrent}, most starts in a second per key "
            f"{run.max_per_window}, lowest key rate {run.min_rate:.2f}/s"
        )
    suite.meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    suite.meta["minutes"] = f"{(time.monotonic() - started) / 60:.1f}"
    suite.meta["sizes"] = (
        f"{jobs:,} jobs over {KEYS} keys; rate {RATE}/s per key, {RATE_KEYS} keys, "
        f"{OFFERED}/s per key offered for {seconds} s"
    )
    return suite


def _mid(suite: LimitsSuite, label: str, name: str) -> float:
    return median([float(getattr(r, name)) for r in suite.of(label)])


def render(suite: LimitsSuite) -> str:
    """The limits section of docs/benchmarks.md."""
    m = suite.meta
    rate = {label: _mid(suite, label, "rate") for label in (NO_LIMIT, UNUSED, UNLIMITED, LIMITED)}
    limited_run = max(suite.of(LIMITED), key=lambda r: r.max_concurrent)
    ratio = rate[LIMITED] / rate[UNLIMITED]
    unused = rate[UNUSED] / rate[NO_LIMIT]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "## Limits (issue 17)",
        "",
        f"Generated by `{m.get('command', 'python -m bench --only limits')}` — {m.get('date', '')}"
        f". Load average at start {m.get('load', '?')}, at end {m.get('load_end', '?')} "
        f"({m.get('minutes', '?')} min). {m.get('sizes', '')}; handler 5 ms; 2 worker processes x "
        "4 threads and a maintenance process; figures from the jobs' `started` and terminal "
        "events (database clock). How measured: bench/limits.py.",
        "",
        "| goal | measured | met? |",
        "|---|---|---|",
        f"| concurrency 3 per key: most running at once per key ≤ 3 | "
        f"{limited_run.max_concurrent} | {met(limited_run.max_concurrent <= CONCURRENCY)} |",
        f"| concurrency 3 per key: throughput ≥ 0.9 x the same jobs without a limit | "
        f"{rate[LIMITED]:,.0f} vs {rate[UNLIMITED]:,.0f} jobs/s = {ratio:.2f} x | "
        f"{met(ratio >= 0.9)} |",
    ]
    for rated_run, backlog in zip(suite.of(RATED), suite.of(BACKLOG), strict=True):
        lines += [
            f"| rate 20/s per key: no second with more than 20 starts of a key | "
            f"most {rated_run.max_per_window} | {met(rated_run.max_per_window <= RATE)} |",
            f"| rate 20/s per key: achieved ≥ 0.95 x 20/s | lowest key "
            f"{rated_run.min_rate:.2f}/s, mean {rated_run.mean_rate:.2f}/s | "
            f"{met(rated_run.min_rate >= 0.95 * RATE)} |",
            f"| (a backlog queued first: most in 1 s; achieved) | most {backlog.max_per_window}; "
            f"lowest key {backlog.min_rate:.2f}/s, mean {backlog.mean_rate:.2f}/s | "
            f"{met(backlog.max_per_window <= RATE)}; {met(backlog.min_rate >= 0.95 * RATE)} |",
        ]
    lines += [
        "| limits declared, none used: drain ≥ 0.95 x with none declared (stricter than the "
        f"issue's goal, see docs/limits.md) | {rate[UNUSED]:,.0f} vs "
        f"{rate[NO_LIMIT]:,.0f} jobs/s = {unused:.2f} x | {met(unused >= 0.95)} |",
        "",
        "| run | jobs | first start to last end | jobs/s | worker CPU / job | PostgreSQL CPU / job "
        "| waiting events | most attempts | most at once per key | most starts in 1 s per key |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in suite.runs:
        lines.append(
            f"| {r.label} | {r.jobs:,} | {r.seconds:.1f} s | {r.rate:,.0f} | "
            f"{r.worker_cpu_ms_per_job:.2f} ms | {r.pg_cpu_ms_per_job:.2f} ms | "
            f"{r.waiting_events:,} | {r.max_attempts} | {r.max_concurrent} | {r.max_per_window} |"
        )
    return "\n".join(lines) + "\n"
