"""Worker processes (the real ``dramatiq`` CLI) and the CPU they, PostgreSQL and Redis spend.

Both sides start the same command shape, ``python -m dramatiq <app> -p P -t T --queues bench``,
with the same ``dramatiq_worker_timeout``, in a process group of their own so that stopping
them leaves nothing behind. CPU is read from /proc (Linux), which is how the report can say
where a gap comes from on a 2-core machine: worker, PostgreSQL or Redis time per job.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from pgjobs.cli.worker_commands import worker_argv
from pgjobs.cli.worker_commands import worker_env as jobs_worker_env

REPO = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WorkerShape:
    """Processes and threads, identical for both sides (recorded in the report)."""

    processes: int
    threads: int
    poll_ms: int


def ours_argv(shape: WorkerShape, queue: str | None) -> list[str]:
    """``jobctl worker``'s command line; every shipped queue when ``queue`` is None."""
    return worker_argv(shape.processes, shape.threads, (queue,) if queue else ())


def raw_argv(shape: WorkerShape, queue: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "bench.raw_app",
        "--processes",
        str(shape.processes),
        "--threads",
        str(shape.threads),
        "--queues",
        queue,
    ]


def poll_env(shape: WorkerShape) -> dict[str, str]:
    """The poll timeout variable exactly as ``jobctl worker`` sets it, with the bench's value."""
    env = jobs_worker_env()
    return {key: str(shape.poll_ms) for key in env}


class WorkerGroup:
    """One ``dramatiq`` CLI (its main process and the worker processes it forks)."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.argv = argv
        self.env = dict(env)
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pgid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """CPU (user + system) of every live process of the group so far."""
        return sum(cpu for _, cpu in _proc_cpu(lambda _, f: int(f[2]) == self.pgid))

    def stop(self, timeout: float = 40.0) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.popen.wait(5)

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _proc_cpu(
    select: Callable[[str, list[str]], bool], pids: set[int] | None = None
) -> list[tuple[int, float]]:
    """(pid, cpu seconds) of processes (all, or ``pids``) for which ``select(comm, fields after
    the name)``."""
    found = []
    paths = (
        [Path(f"/proc/{pid}/stat") for pid in pids]
        if pids is not None
        # not Path.glob, whose scan raises when a process exits meanwhile
        else [Path(f"/proc/{pid}/stat") for pid in os.listdir("/proc") if pid.isdigit()]
    )
    for stat in paths:
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        comm, fields = head.split("(", 1)[1], tail.split()
        if select(comm, fields):
            # fields[11], fields[12]: utime, stime (stat fields 14 and 15)
            found.append((int(stat.parent.name), (int(fields[11]) + int(fields[12])) / _TICK))
    return found


class ServerCpu:
    """CPU spent by Redis, and by the PostgreSQL backends serving one database, between
    :meth:`mark` and :meth:`since`. Only backends of ``database_url`` count (other users of a
    shared server are left out); backends that exit in between are missed, so read before
    stopping the workers. Remote servers: PostgreSQL reads NaN."""

    def __init__(self, redis_url: str, database_url: str | None = None) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.database_url = database_url
        self._pg: dict[int, float] = {}
        self._redis = 0.0

    def _pg_now(self) -> dict[int, float]:
        if self.database_url is None:
            return {}
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        pids = {int(r[0]) for r in rows}
        return dict(_proc_cpu(lambda comm, _: comm == "postgres", pids))

    def _redis_now(self) -> float:
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def mark(self) -> None:
        self._pg = self._pg_now()
        self._redis = self._redis_now()

    def since(self) -> tuple[float, float]:
        """(PostgreSQL, Redis) CPU seconds since :meth:`mark`."""
        now = self._pg_now()
        pg = sum(cpu - self._pg.get(pid, 0.0) for pid, cpu in now.items()) if now else math.nan
        return pg, self._redis_now() - self._redis


def self_cpu() -> float:
    """CPU of this (the producer's) process so far."""
    t = os.times()
    return t.user + t.system


def machine_ticks() -> tuple[int, int]:
    """The machine's CPU time so far in clock ticks, all cores: (busy, all). Busy is every
    state but idle and I/O wait."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Percent of the machine's cores busy between two ``machine_ticks()`` readings."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return 100.0 * busy / total if total else float("nan")


def wait_ready(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``check()`` until it is true; raise if the workers never came up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError("workers did not become ready")
