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

import math
import os
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


def _redis_calls(client: redis.Redis | None) -> float:
    if client is None:
        return math.nan
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def _processes(group: WorkerGroup) -> int:
    return len(_proc_cpu(lambda _, f: int(f[2]) == group.pgid))


def measure(
    side: str,
    group: WorkerGroup,
    done: Any,
    workers: int,
    seconds: float,
    *,
    client: redis.Redis | None = None,
    processes: int | None = None,
) -> IdleResult:
    """Launch ``group`` (one job queued), time until ``done()``, then measure it idle. Redis
    commands are counted when ``client`` is given (the side uses Redis); start-up CPU is per
    ``processes`` (default: every process of the group)."""
    started = time.perf_counter()
    group.start()
    try:
        if not wait_until(done, 120, 0.01):
            raise RuntimeError(f"{side}: the first job did not finish:\n{group.tail()}")
        launch = time.perf_counter() - started
        startup_cpu = group.cpu_seconds()
        processes = processes or _processes(group)
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
            done = lambda: conn.execute(query).fetchone() == (1,)  # noqa: E731
            return measure("ours", group, done, processes, seconds, client=client)
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
        group = WorkerGroup(f"idle-raw-{namespace}", argv, {**os.environ, **env}, log_dir)
        msgs = f"{namespace}:{QUEUE}.msgs"
        done = lambda: client.hlen(msgs) == 0  # noqa: E731
        return measure("raw Dramatiq", group, done, processes, seconds, client=client)
    finally:
        broker.close()
        client.close()
        delete_namespace(srv.redis_url, namespace)


GOALS = {"launch_to_first_s": 1.0, "startup_cpu_s_per_process": 1.0, "idle_cpu_pct_per_worker": 2.0}


@dataclass
class IdleSuite:
    meta: dict[str, Any]
    results: list[IdleResult]


def run_all(srv: Servers, args: Any, log_dir: Path, progress: Any) -> IdleSuite:
    """Both sides ``args.runs`` times, interleaved."""
    suite = IdleSuite({"load": " ".join(f"{x:.2f}" for x in os.getloadavg())}, [])
    for run in range(args.runs):
        for measure in (ours_idle, raw_idle) if run % 2 == 0 else (raw_idle, ours_idle):
            result = measure(srv, args.processes, args.threads, args.idle_seconds, log_dir)
            suite.results.append(result)
            progress(
                f"idle: {result.side}: first job after {result.launch_to_first_s:.2f} s, "
                f"idle {result.idle_cpu_pct_per_worker:.2f}% of a core per process"
            )
    suite.meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return suite


def _median(results: list[IdleResult], side: str, name: str) -> float:
    from bench.stats import median

    return median([getattr(r, name) for r in results if r.side == side])


def render(suite: IdleSuite) -> str:
    """The idle and start-up section of docs/benchmarks.md."""
    lines = [
        "## Idle cost and start-up",
        "",
        f"Generated by `{suite.meta.get('command', 'python -m bench --only idle')}` — "
        f"{suite.meta.get('date', '')}. Load average at start {suite.meta.get('load', '?')}, "
        f"at end {suite.meta.get('load_end', '?')}. Medians of the runs.",
        "",
        "Each side started the way its docs start it: `jobctl worker -p P -t T` (every shipped "
        "queue, no `--queues`) and `dramatiq bench.raw_app -p P -t T` (Dramatiq's defaults). One "
        "job is queued before the launch; *launch to first job* runs until it is done. "
        "*Start-up CPU* is every process of the group's CPU until then, per process (the CLI's "
        "main process and the workers it forked). *Idle* is measured over the following "
        f"seconds, after {QUIET_SECONDS:g} quiet ones: the group's CPU per worker process, and "
        "the Redis server's commands per second.",
        "",
        "| measure | raw Dramatiq | this system | goal | met? |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("launch to first job finished", "launch_to_first_s", "{:.2f} s", "≤ 1.0 s"),
        ("start-up CPU per process", "startup_cpu_s_per_process", "{:.2f} s", "≤ 1.0 s"),
        ("idle CPU per worker process", "idle_cpu_pct_per_worker", "{:.2f}% of a core", "≤ 2%"),
        ("idle Redis commands", "idle_redis_calls_per_s", "{:,.0f}/s", "(none)"),
    ]
    for label, name, shape, goal in rows:
        raw = _median(suite.results, "raw Dramatiq", name)
        mine = _median(suite.results, "ours", name)
        limit = GOALS.get(name)
        met = "n/a" if limit is None else ("yes" if mine <= limit else "**no**")
        lines.append(f"| {label} | {shape.format(raw)} | {shape.format(mine)} | {goal} | {met} |")
    lines += [
        "",
        "| run | side | processes | launch to first job | start-up CPU / process | "
        "idle CPU / worker process | idle Redis commands/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(suite.results):
        lines.append(
            f"| {i // 2 + 1} | {r.side} | {r.processes} | {r.launch_to_first_s:.2f} s | "
            f"{r.startup_cpu_s_per_process:.2f} s | {r.idle_cpu_pct_per_worker:.2f}% | "
            f"{r.idle_redis_calls_per_s:,.0f} |"
        )
    return "\n".join(lines) + "\n"
