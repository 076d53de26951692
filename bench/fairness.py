"""Fair shares between tenants on one queue (docs/limits.md, "Fair shares"), measured the way
the issue states its goals: 2 worker processes x 4 threads (``jobctl worker``), a handler that
sleeps 5 ms, the queue made fair with ``JOBS_FAIR_QUEUES`` in the producer (this process).

* noisy neighbour: with the workers running, tenant A enqueues ``jobs`` at once
  (``enqueue_many``, batches of 1,000), then tenant B one job every 100 ms for ``b_seconds``.
  B's wait is its row's creation to its claim (``started_at``; both the database clock); A's
  throughput is its jobs over the time from its first start to its last completion. Four runs:
  A alone and A with B, each on a fair queue and on a queue that is not fair (today's FIFO).
* weights: A (weight 3) and B (weight 1) each enqueue ``jobs // 10`` at once, then the workers
  start: A's starts per B's start while both still have jobs held.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ours
from bench.noop_jobs import nap
from bench.procs import WorkerShape
from bench.services import QUEUE, Servers, scratch, wait_until
from bench.stats import p50_p99
from pgjobs.producer import JobRequest, enqueue, enqueue_many
from pgjobs.producer.shares import set_share_weight

BATCH = 1_000
SHARE = 64
"""``JOBS_FAIR_SHARE_IN_FLIGHT`` of the runs: the default."""

GOALS = {"b_wait_p99_s": 1.0, "a_rate_ratio": 0.9, "weight_ratio": (2.7, 3.3)}


@dataclass
class NeighbourRun:
    fair: bool
    with_b: bool
    a_jobs: int
    a_rate: float
    """A's jobs per second, from its first start to its last completion."""
    b_jobs: int = 0
    b_wait_p50_s: float = float("nan")
    b_wait_p99_s: float = float("nan")
    b_wait_max_s: float = float("nan")


@dataclass
class WeightRun:
    jobs_each: int
    ratio: float
    """A's starts per B's start while both had jobs held (weights 3 and 1)."""


@dataclass
class FairSuite:
    meta: dict[str, Any]
    neighbours: list[NeighbourRun] = field(default_factory=list)
    weights: list[WeightRun] = field(default_factory=list)


def _fill(tenant: uuid.UUID, jobs: int) -> None:
    for offset in range(0, jobs, BATCH):
        size = min(BATCH, jobs - offset)
        enqueue_many([JobRequest(nap, {}, tenant)] * size)


def _done(conn: Any, tenants: list[uuid.UUID]) -> int:
    query = "SELECT count(*) FROM content_jobs WHERE status = 'succeeded' AND tenant_id = ANY(%s)"
    return int(conn.execute(query, (tenants,)).fetchone()[0])


def _first_starts(conn: Any, tenants: list[uuid.UUID]) -> list[tuple[uuid.UUID, float, float]]:
    """(tenant, created, started) per started job, epoch seconds by the database clock, in the
    order the jobs started (``started_at``, stamped by the claim: each job runs once here)."""
    rows = conn.execute(
        """
        SELECT tenant_id, extract(epoch FROM created_at), extract(epoch FROM started_at)
        FROM content_jobs
        WHERE tenant_id = ANY(%s) AND started_at IS NOT NULL
        ORDER BY started_at
        """,
        (tenants,),
    ).fetchall()
    return [(t, float(c), float(s)) for t, c, s in rows]


def _rate(conn: Any, tenant: uuid.UUID) -> float:
    row = conn.execute(
        "SELECT count(*), extract(epoch FROM max(completed_at) - min(started_at))"
        " FROM content_jobs WHERE tenant_id = %s AND status = 'succeeded'",
        (tenant,),
    ).fetchone()
    return float(row[0]) / float(row[1])


def neighbour(
    srv: Servers,
    shape: WorkerShape,
    log_dir: Path,
    jobs: int,
    b_seconds: float,
    *,
    fair: bool,
    with_b: bool,
) -> NeighbourRun:
    settings = {"fair_queues": QUEUE if fair else "", "fair_share_in_flight": str(SHARE)}
    with scratch(srv, **settings) as env, env.pg() as conn:
        a, b, probe = ours._tenant(), ours._tenant(), ours._tenant()
        group = ours._workers(env, shape, log_dir)
        group.start()
        try:
            enqueue(nap, {}, tenant_id=probe)  # the workers are up and warm before A's burst
            if not wait_until(lambda: _done(conn, [probe]) == 1, 120):
                raise RuntimeError(f"the workers did not start:\n{group.tail()}")
            _fill(a, jobs)
            b_jobs = int(b_seconds * 10) if with_b else 0
            started = time.monotonic()
            for i in range(b_jobs):
                enqueue(nap, {}, tenant_id=b)
                time.sleep(max(0.0, started + (i + 1) * 0.1 - time.monotonic()))
            total = jobs + b_jobs
            if not wait_until(lambda: _done(conn, [a, b]) == total, 120 + jobs / 200, 0.5):
                raise RuntimeError(f"{_done(conn, [a, b])} of {total} done:\n{group.tail()}")
        finally:
            group.stop()
        run = NeighbourRun(fair=fair, with_b=with_b, a_jobs=jobs, a_rate=_rate(conn, a))
        if with_b:
            waits = sorted(s - c for _, c, s in _first_starts(conn, [b]))
            run.b_jobs = len(waits)
            run.b_wait_p50_s, run.b_wait_p99_s = p50_p99(waits)
            run.b_wait_max_s = waits[-1]
        return run


def weights(srv: Servers, shape: WorkerShape, log_dir: Path, jobs_each: int) -> WeightRun:
    with scratch(srv, fair_queues=QUEUE, fair_share_in_flight=str(SHARE)) as env, env.pg() as conn:
        a, b = ours._tenant(), ours._tenant()
        set_share_weight(a, 3)
        _fill(a, jobs_each)
        _fill(b, jobs_each)
        group = ours._workers(env, shape, log_dir)
        group.start()
        try:
            done = lambda: _done(conn, [a, b]) == 2 * jobs_each  # noqa: E731
            if not wait_until(done, 120 + jobs_each / 100, 0.5):
                raise RuntimeError(f"the weights run did not finish:\n{group.tail()}")
        finally:
            group.stop()
        order = [t for t, _, _ in _first_starts(conn, [a, b])]
        # while both have jobs held: until A (three times faster) has started 90% of its jobs
        until = [i for i, t in enumerate(order) if t == a][int(jobs_each * 0.9)]
        window = order[: until + 1]
        return WeightRun(jobs_each=jobs_each, ratio=window.count(a) / window.count(b))


def run_all(
    srv: Servers, shape: WorkerShape, args: Any, log_dir: Path, progress: Callable[[str], None]
) -> FairSuite:
    suite = FairSuite({"load": " ".join(f"{x:.2f}" for x in os.getloadavg())})
    for fair in (True, False):
        for with_b in (False, True):
            run = neighbour(
                srv, shape, log_dir, args.fair_jobs, args.fair_b_seconds, fair=fair, with_b=with_b
            )
            suite.neighbours.append(run)
            progress(
                f"fairness: {'fair' if fair else 'FIFO'} queue, A {'with' if with_b else 'alone'}"
                f": A {run.a_rate:,.0f} jobs/s, B's wait p99 {run.b_wait_p99_s:.3f} s"
            )
    suite.weights.append(weights(srv, shape, log_dir, args.fair_jobs // 10))
    progress(f"fairness: weights 3:1 started {suite.weights[-1].ratio:.2f}:1")
    suite.meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return suite


def _run(suite: FairSuite, fair: bool, with_b: bool) -> NeighbourRun:
    return next(r for r in suite.neighbours if r.fair == fair and r.with_b == with_b)


def render(suite: FairSuite) -> str:
    """The fair shares section of docs/benchmarks.md."""
    fair_b, fifo_b = _run(suite, True, True), _run(suite, False, True)
    fair_alone, fifo_alone = _run(suite, True, False), _run(suite, False, False)
    ratio = fair_b.a_rate / fair_alone.a_rate
    weight = suite.weights[-1].ratio
    low, high = GOALS["weight_ratio"]  # type: ignore[misc]
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    lines = [
        "## Fair shares between tenants",
        "",
        f"Generated by `{suite.meta.get('command', 'python -m bench --only fairness')}` — "
        f"{suite.meta.get('date', '')}. Load average at start {suite.meta.get('load', '?')}, "
        f"at end {suite.meta.get('load_end', '?')}. One run each.",
        "",
        f"`jobctl worker -p 2 -t 4` on the queue, a handler that sleeps 5 ms, "
        f"`JOBS_FAIR_SHARE_IN_FLIGHT={SHARE}`. Noisy neighbour: with the workers running, "
        f"tenant A enqueues {fair_b.a_jobs:,} jobs at once, then tenant B one job every 100 ms "
        f"({fair_b.b_jobs} jobs). B's wait: its row's creation to its claim (`started_at`). "
        "A's throughput: its jobs over its first start to its last completion. Weights: A "
        "(weight 3) and B (weight 1) each enqueue "
        f"{suite.weights[-1].jobs_each:,} jobs before the workers start; A's starts per B's "
        "start until A has started 90% of its jobs.",
        "",
        "| measure | queue not fair (FIFO) | fair queue | goal | met? |",
        "|---|---|---|---|---|",
        f"| B's enqueue-to-start p50 | {fifo_b.b_wait_p50_s:.3f} s | {fair_b.b_wait_p50_s:.3f} s "
        "| | |",
        f"| B's enqueue-to-start p99 | {fifo_b.b_wait_p99_s:.3f} s | {fair_b.b_wait_p99_s:.3f} s "
        f"| ≤ 1 s | {yes(fair_b.b_wait_p99_s <= GOALS['b_wait_p99_s'])} |",
        f"| A's throughput alone | {fifo_alone.a_rate:,.0f} jobs/s | "
        f"{fair_alone.a_rate:,.0f} jobs/s | | |",
        f"| A's throughput with B | {fifo_b.a_rate:,.0f} jobs/s | {fair_b.a_rate:,.0f} jobs/s "
        f"| | |",
        f"| A's throughput with B / alone | {fifo_b.a_rate / fifo_alone.a_rate:.2f}x | "
        f"{ratio:.2f}x | ≥ 0.9x | {yes(ratio >= GOALS['a_rate_ratio'])} |",
        f"| A alone, fair / FIFO queue | | {fair_alone.a_rate / fifo_alone.a_rate:.2f}x | "
        "(the share's own cost) | |",
        f"| starts, weights 3:1 | | {weight:.2f} : 1 | 3 : 1 ± 10% | "
        f"{yes(low <= weight <= high)} |",
    ]
    return "\n".join(lines) + "\n"
