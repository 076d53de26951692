"""Table health under churn: many jobs through the system with the pruner on.

A feeder keeps a bounded backlog on Redis (``enqueue_many``), our workers run the jobs, and
the pruner deletes finished jobs as soon as they pass a tiny retention (their events by
cascade). Every few seconds the tables' live and dead tuples and sizes are sampled, so the
report shows whether they stay bounded and what autovacuum did.

The pruner runs as the maintenance loop would, with one difference said in the report: a pass
repeats ``prune_once`` while it deletes full batches, instead of one batch per 60 s, which
could never keep up with hundreds of jobs per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import ours
from bench.procs import WorkerShape
from bench.results import ChurnResult, ChurnSample
from bench.services import QUEUE, Servers, scratch
from pgjobs.settings import get_settings
from pgjobs.worker.maintenance import prune_once

BACKLOG = 5_000
SAMPLE_S = 5.0

# Per-table autovacuum settings the report recommends (applied for the run with --autovacuum
# tuned). Absolute thresholds: with pruning on, the live set is small and steady while dead rows
# arrive at ~4 per job in content_jobs (3 non-HOT updates, since status is indexed, and the
# delete) and ~3 per job in job_events (deleted by cascade). No fillfactor: updates that change
# an indexed column are never HOT.
TUNED = {
    "content_jobs": (
        "autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000, "
        "autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 10000, "
        "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 2000"
    ),
    "job_events": (
        "autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 20000, "
        "autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 50000, "
        "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 2000"
    ),
}

STATS = """
SELECT relname, n_live_tup, n_dead_tup, pg_total_relation_size(relid), autovacuum_count
FROM pg_stat_user_tables WHERE relname IN ('content_jobs', 'job_events')
"""


def run(
    srv: Servers,
    shape: WorkerShape,
    jobs: int,
    log_dir: Path,
    autovacuum: str,
    max_seconds: float | None = None,
    settle_seconds: float = 65.0,
    progress: Callable[[str], None] = print,
) -> ChurnResult:
    """Push up to ``jobs`` jobs through (stopping early after ``max_seconds``), let the pruner
    catch up, wait ``settle_seconds`` (one autovacuum naptime), sample the tables."""
    with scratch(srv, retention_days="0.00001") as env, env.pg() as conn:
        if autovacuum == "tuned":
            for table, options in TUNED.items():
                conn.execute(f"ALTER TABLE {table} SET ({options})")
        row = conn.execute("SHOW autovacuum").fetchone()
        server = f"server autovacuum={row[0] if row else '?'}"
        label = f"{autovacuum} ({server}; {env.database_url.split('@')[-1].split('/')[0]})"
        tenant = ours._tenant()
        client = env.redis()
        msgs = f"{env.namespace}:{QUEUE}.msgs"
        group = ours._workers(env, shape, log_dir)
        stop = threading.Event()
        pruned = [0]
        batch = get_settings().prune_batch_size

        def pruner() -> None:
            while not stop.is_set():
                deleted = prune_once()
                pruned[0] += deleted
                if deleted < batch:
                    stop.wait(1.0)

        samples: list[ChurnSample] = []
        started = time.perf_counter()

        def sample(sent: int) -> None:
            tables = {
                r[0]: {
                    "n_live_tup": float(r[1]),
                    "n_dead_tup": float(r[2]),
                    "total_bytes": float(r[3]),
                    "autovacuum_count": float(r[4]),
                }
                for r in conn.execute(STATS).fetchall()
            }
            samples.append(ChurnSample(time.perf_counter() - started, sent, tables))

        thread = threading.Thread(target=pruner, daemon=True)
        group.start()
        thread.start()
        sent, next_sample, next_print, now = 0, 0.0, 0.0, 0.0
        try:
            while sent < jobs and (max_seconds is None or now < max_seconds):
                if client.hlen(msgs) > BACKLOG:
                    time.sleep(0.05)
                else:
                    size = min(1000, jobs - sent)
                    ours.fill(tenant, size, start=sent)
                    sent += size
                now = time.perf_counter() - started
                if now >= next_sample:
                    sample(sent)
                    next_sample = now + SAMPLE_S
                if now >= next_print:
                    progress(f"  churn: {sent:,}/{jobs:,} sent, {pruned[0]:,} pruned ({now:.0f}s)")
                    next_print = now + 30
            while client.hlen(msgs) > 0:
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            # let the pruner catch up with the last jobs, then one more autovacuum window
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                left = conn.execute("SELECT count(*) FROM content_jobs").fetchone()
                if left is not None and left[0] == 0:
                    break
                time.sleep(1)
            sample(sent)
            time.sleep(settle_seconds)  # autovacuum_naptime is 1 min by default
            sample(sent)
        finally:
            stop.set()
            group.stop()
            thread.join(30)
            client.close()
        return ChurnResult(sent, seconds, pruned[0], samples, label)
