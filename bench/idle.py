"""What a worker costs before and between jobs, each side started the way its docs start it:
``jobctl worker`` (every shipped queue, the default processes and threads) and
``dramatiq bench.raw_app`` (Dramatiq's defaults, the same processes and threads).

* launch to first job finished: one job is queued before the launch; the clock runs from the
  launch to the job done (ours: its row ``succeeded``; raw: its message acked);
* start-up CPU: every process of the group, from launch to that moment, per process;
* idle: after a few quiet seconds, the group's CPU over ``seconds`` per worker process, and the
  Redis commands per second over the same time (``INFO commandstats``: the server is the
  bench's own while this runs).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import ours, raw_app
from bench.procs import WorkerGroup, _proc_cpu
from bench.services import QUEUE, Servers, delete_namespace, raw_namespace, scratch, wait_until

QUIET_SECONDS = 3.0


@dataclass
class IdleResult:
    side: str
    processes: int
    """Processes in the group: the CLI's main process and the worker processes it forked."""
    launch_to_first_s: float
    startup_cpu_s_per_process: float
    idle_cpu_pct_per_worker: float
    """Percent of one core per worker process, the main process's share spread over them."""
    idle_redis_calls_per_s: float


def _redis_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def _processes(group: WorkerGroup) -> int:
    return len(_proc_cpu(lambda _, f: int(f[2]) == group.pgid))


def _measure(
    side: str, group: WorkerGroup, done: Any, client: redis.Redis, workers: int, seconds: float
) -> IdleResult:
    started = time.perf_counter()
    group.start()
    try:
        if not wait_until(done, 120, 0.01):
            raise RuntimeError(f"{side}: the first job did not finish:\n{group.tail()}")
        launch = time.perf_counter() - started
        startup_cpu = group.cpu_seconds()
        processes = _processes(group)
        time.sleep(QUIET_SECONDS)
        cpu0, calls0, t0 = group.cpu_seconds(), _redis_calls(client), time.perf_counter()
        time.sleep(seconds)
        cpu1, calls1, t1 = group.cpu_seconds(), _redis_calls(client), time.perf_counter()
    finally:
        group.stop()
    elapsed = t1 - t0
    return IdleResult(
        side=side,
        processes=processes,
        launch_to_first_s=launch,
        startup_cpu_s_per_process=startup_cpu / max(1, processes),
        idle_cpu_pct_per_worker=(cpu1 - cpu0) * 100 / elapsed / workers,
        idle_redis_calls_per_s=(calls1 - calls0 - 2) / elapsed,
    )


def ours_idle(
    srv: Servers, processes: int, threads: int, seconds: float, log_dir: Path
) -> IdleResult:
    """``jobctl worker -p P -t T`` with no ``--queues``: every shipped queue."""
    with scratch(srv) as env, env.pg() as conn:
        tenant = ours._tenant()
        ours.fill(tenant, 1)
        argv = [sys.executable, "-m", "pgjobs.cli.main", "worker", "-p", str(processes)]
        group = WorkerGroup(f"idle-ours-{env.namespace}", [*argv, "-t", str(threads)],
                            env.worker_env(), log_dir)  # fmt: skip
        query = "SELECT count(*) FROM content_jobs WHERE status = 'succeeded'"
        client = env.redis()
        try:
            return _measure(
                "ours", group, lambda: conn.execute(query).fetchone() == (1,), client,
                processes, seconds,
            )  # fmt: skip
        finally:
            client.close()


def raw_idle(
    srv: Servers, processes: int, threads: int, seconds: float, log_dir: Path
) -> IdleResult:
    """``dramatiq bench.raw_app -p P -t T``, Dramatiq's own defaults (its 1 s worker timeout)."""
    namespace = raw_namespace()
    broker, noop, _ = raw_app.build(srv.redis_url, namespace)
    client = redis.Redis.from_url(srv.redis_url)
    try:
        noop.send(0)
        env = {
            "REDIS_URL": srv.redis_url,
            "BENCH_RAW_NAMESPACE": namespace,
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "-m", "dramatiq", "bench.raw_app", "--processes", str(processes)]
        argv += ["--threads", str(threads), "--queues", QUEUE]
        import os

        group = WorkerGroup(f"idle-raw-{namespace}", argv, {**os.environ, **env}, log_dir)
        msgs = f"{namespace}:{QUEUE}.msgs"
        return _measure(
            "raw Dramatiq", group, lambda: client.hlen(msgs) == 0, client, processes, seconds
        )
    finally:
        broker.close()
        client.close()
        delete_namespace(srv.redis_url, namespace)
