"""``enqueue`` from many threads in several processes (issue 18: a web server's shape, 16
threads in 2 processes): the calls per second of all of them together, and the producers'
CPU per call. Each caller waits for its own commit; the calls a process makes while another
of its calls is writing are written together (pgjobs/producer/combine.py), and PostgreSQL
flushes the WAL of the two processes' commits that arrive together once.

Run as ``python -m bench.threaded_enqueue TENANT THREADS CALLS`` it is one producer process:
its threads warm up, it says ``ready`` and waits for a ``go`` line on its stdin, its threads
make ``CALLS`` calls each, and it prints its clock readings and CPU time as JSON. The parent
says ``go`` to every process at once, when all are ready: a web server's processes are up
before its traffic comes, so no process's imports or warm-up overlap another's calls, and
the wall time runs from the first process's start to the last one's end.
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
            subprocess.Popen(argv, cwd=REPO, env=environ, text=True, stdout=out, stdin=out)
            for _ in range(processes)
        ]
        for child in children:  # every process warmed up before any starts its calls
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("threaded enqueue producer failed before its calls")
        ticks0 = machine_ticks()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        reports = []
        for child in children:
            said, _ = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"threaded enqueue producer failed ({child.returncode})")
            reports.append(json.loads(said.strip().splitlines()[-1]))
        busy = busy_share(ticks0, machine_ticks())
    done = sum(r["calls"] for r in reports)
    cpu = sum(r["cpu"] for r in reports)
    # one clock for every process (CLOCK_MONOTONIC): from the first start to the last end
    wall = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    return ThreadedResult(done, wall, cpu * 1e6 / done, busy)


def _produce(tenant: uuid.UUID, threads: int, calls: int) -> None:
    from bench.noop_jobs import noop
    from pgjobs.producer import enqueue, flush

    warmed, go = threading.Barrier(threads + 1), threading.Barrier(threads + 1)

    def loop() -> None:
        for n in range(WARM_CALLS):
            enqueue(noop, {"n": n}, tenant_id=tenant)
        warmed.wait()
        go.wait()
        for n in range(calls):
            enqueue(noop, {"n": n}, tenant_id=tenant)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    warmed.wait()
    flush()  # the warm-up's marks are not the calls' cost
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's go: every process is warm
    cpu0, started = time.process_time(), time.monotonic()
    go.wait()
    for worker in workers:
        worker.join()
    flush()  # every row marked: the whole cost of the calls
    ended, cpu = time.monotonic(), time.process_time() - cpu0
    print(json.dumps({"calls": threads * calls, "started": started, "ended": ended, "cpu": cpu}))


if __name__ == "__main__":
    _produce(uuid.UUID(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
