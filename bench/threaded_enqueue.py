"""``enqueue`` from many threads in several processes (issue 18: a web server's shape, 16
threads in 2 processes): the calls per second of all of them together, and the producers'
CPU per call. Concurrent callers each wait for their own commit, and PostgreSQL flushes the
WAL of commits that arrive together once.

Run as ``python -m bench.threaded_enqueue TENANT THREADS CALLS`` it is one producer process:
its threads warm up, wait for each other, make ``CALLS`` calls each, and it prints its wall
and CPU time as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from bench.procs import REPO, busy_share, machine_ticks
from bench.services import Servers, scratch

WARM_CALLS = 20


@dataclass(frozen=True)
class ThreadedResult:
    calls: int
    seconds: float
    producer_cpu_us_per_call: float
    machine_busy_pct: float
    """Percent of the machine's cores busy while the threads called (every process)."""

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def threaded_rate(srv: Servers, processes: int, threads: int, calls: int) -> ThreadedResult:
    """``calls`` enqueues in all, from ``processes`` x ``threads`` threads, no workers."""
    from bench.ours import _tenant

    per_thread = max(1, calls // (processes * threads))
    with scratch(srv) as env:
        tenant = _tenant()
        environ = {**os.environ, **env.worker_env()}
        argv = [sys.executable, "-m", "bench.threaded_enqueue", str(tenant), str(threads)]
        out = subprocess.PIPE
        argv.append(str(per_thread))
        children = [
            subprocess.Popen(argv, cwd=REPO, env=environ, text=True, stdout=out)
            for _ in range(processes)
        ]
        reports = []
        for child in children:
            said, _ = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"threaded enqueue producer failed ({child.returncode})")
            reports.append(json.loads(said.strip().splitlines()[-1]))
    done = sum(r["calls"] for r in reports)
    cpu = sum(r["cpu"] for r in reports)
    busy = sum(r["busy"] for r in reports) / len(reports)  # the processes' loops overlap
    return ThreadedResult(done, max(r["wall"] for r in reports), cpu * 1e6 / done, busy)


def _produce(tenant: uuid.UUID, threads: int, calls: int) -> None:
    from bench.noop_jobs import noop
    from pgjobs.producer import enqueue, flush

    ready = threading.Barrier(threads + 1)

    def loop() -> None:
        for n in range(WARM_CALLS):
            enqueue(noop, {"n": n}, tenant_id=tenant)
        ready.wait()
        for n in range(calls):
            enqueue(noop, {"n": n}, tenant_id=tenant)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    cpu0, ticks0, started = time.process_time(), machine_ticks(), time.perf_counter()
    for worker in workers:
        worker.join()
    flush()  # every row marked: the whole cost of the calls
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    busy = busy_share(ticks0, machine_ticks())
    print(json.dumps({"calls": threads * calls, "wall": wall, "cpu": cpu, "busy": busy}))


if __name__ == "__main__":
    _produce(uuid.UUID(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
