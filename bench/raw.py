"""The raw Dramatiq side of each measure: stock RedisBroker, noop actors, same worker shape."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

from bench import raw_app
from bench.latency import open_loop
from bench.procs import ServerCpu, WorkerGroup, WorkerShape, poll_env, raw_argv, self_cpu
from bench.results import DrainResult, LatencyResult, RateResult
from bench.services import QUEUE, Servers, delete_namespace, raw_namespace, wait_until
from bench.stats import p50_p99

POLL_S = 0.01


def _workers(srv: Servers, shape: WorkerShape, namespace: str, log_dir: Path) -> WorkerGroup:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update(REDIS_URL=srv.redis_url, BENCH_RAW_NAMESPACE=namespace, PYTHONUNBUFFERED="1")
    env.update(poll_env(shape))
    return WorkerGroup(f"raw-{namespace}", raw_argv(shape, QUEUE), env, log_dir)


def _commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def drain(
    srv: Servers, shape: WorkerShape, jobs: int, log_dir: Path, napping: bool = False
) -> DrainResult:
    """Queue ``jobs`` messages, start the workers, and poll (every 10 ms) until Redis holds
    none: Dramatiq deletes a message from ``<ns>:bench.msgs`` when it is acked, after the
    actor returned. The poll can only make the raw side look up to 10 ms slower.
    ``napping``: the 5 ms actor instead of the noop."""
    namespace = raw_namespace()
    broker, noop, _ = raw_app.build(srv.redis_url, namespace)
    actor = broker.get_actor("bench_nap") if napping else noop
    client = redis.Redis.from_url(srv.redis_url)
    msgs = f"{namespace}:{QUEUE}.msgs"
    try:
        for i in range(jobs):
            actor.send(i)
        assert client.hlen(msgs) == jobs
        cpu = ServerCpu(srv.redis_url)
        group = _workers(srv, shape, namespace, log_dir)
        commands, polls = _commands(client), 0
        cpu.mark()
        started = time.perf_counter()
        group.start()
        first = end = None
        try:
            while end is None:
                left = client.hlen(msgs)
                polls += 1
                now = time.perf_counter()
                if first is None and left < jobs:
                    first = now
                if left == 0:
                    end = now
                elif now - started > 600:
                    raise RuntimeError("raw drain did not finish:\n" + group.tail())
                else:
                    time.sleep(POLL_S)
            worker_cpu = group.cpu_seconds()
            pg_cpu, redis_cpu = cpu.since()
            commands = _commands(client) - commands - polls - 1
        finally:
            group.stop()
        assert first is not None
        return DrainResult(
            side="raw",
            jobs=jobs,
            seconds=end - started,
            steady_seconds=end - first,
            worker_cpu_ms_per_job=worker_cpu * 1000 / jobs,
            pg_cpu_ms_per_job=pg_cpu * 1000 / jobs,
            redis_cpu_ms_per_job=redis_cpu * 1000 / jobs,
            redis_commands_per_job=commands / jobs,
        )
    finally:
        broker.close()
        client.close()
        delete_namespace(srv.redis_url, namespace)


def send_rate(srv: Servers, count: int) -> RateResult:
    """``actor.send`` in a loop from one thread (no workers): the baseline of both enqueues."""
    namespace = raw_namespace()
    broker, noop, _ = raw_app.build(srv.redis_url, namespace)
    client = redis.Redis.from_url(srv.redis_url)
    cpu = ServerCpu(srv.redis_url)
    try:
        for i in range(min(200, count)):
            noop.send(i)
        commands = _commands(client)
        cpu.mark()
        cpu0 = self_cpu()
        started = time.perf_counter()
        for i in range(count):
            noop.send(i)
        seconds = time.perf_counter() - started
        producer = self_cpu() - cpu0
        _, redis_cpu = cpu.since()
        commands = _commands(client) - commands - 1
        return RateResult(
            side="raw",
            jobs=count,
            seconds=seconds,
            producer_cpu_us_per_job=producer * 1e6 / count,
            redis_cpu_us_per_job=redis_cpu * 1e6 / count,
            redis_commands_per_job=commands / count,
        )
    finally:
        broker.close()
        client.close()
        delete_namespace(srv.redis_url, namespace)


def latency(
    srv: Servers, shape: WorkerShape, rate: float, seconds: float, log_dir: Path
) -> LatencyResult:
    """Open-loop ``send`` at ``rate``; each actor pushes its own latency to a Redis list."""
    namespace = raw_namespace()
    broker, _, timed = raw_app.build(srv.redis_url, namespace)
    client = redis.Redis.from_url(srv.redis_url)
    group = _workers(srv, shape, namespace, log_dir)
    warm_key, key = f"{namespace}:bench.warmup", f"{namespace}:bench.latency"
    try:
        group.start()
        for _ in range(20):
            timed.send(warm_key, time.time() * 1000)
        if not wait_until(lambda: client.llen(warm_key) >= 20, 60):
            raise RuntimeError("raw workers did not start:\n" + group.tail())
        time.sleep(0.5)  # idle again, as a real system between bursts

        def send(i: int) -> None:
            timed.send(key, time.time() * 1000)

        loop = open_loop(send, rate, seconds)
        if not wait_until(lambda: client.llen(key) >= loop.sent, 120):
            raise RuntimeError("raw latency jobs did not all run:\n" + group.tail())
        values = [float(v) for v in client.lrange(key, 0, -1)]
    finally:
        group.stop()
        broker.close()
        client.close()
        delete_namespace(srv.redis_url, namespace)
    p50, p99 = p50_p99(values)
    return LatencyResult(
        "raw", rate, loop.achieved_rate, len(values), p50, p99, max(values), loop.lag_p99_ms
    )
