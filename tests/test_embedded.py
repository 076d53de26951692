"""Embedded PostgreSQL/Redis lifecycle against real processes (no mocks).

Why: `jobctl dev up` and the test suite rely on these servers being reused, restarted after a
crash with their data intact, and never left behind after `stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pgjobs.services import embedded

pytestmark = [
    pytest.mark.skipif(not embedded.available(), reason="embedded extra not installed"),
    pytest.mark.timeout(120),
]

psutil = pytest.importorskip("psutil")
psycopg = pytest.importorskip("psycopg")
redis = pytest.importorskip("redis")


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    # Short path: the postgres unix socket lives under it.
    path = Path(tempfile.mkdtemp(prefix="emb", dir="/tmp"))
    try:
        yield path
    finally:
        embedded.stop(path)
        shutil.rmtree(path, ignore_errors=True)


def _state(dev_dir: Path) -> dict[str, dict[str, object]]:
    return json.loads((dev_dir / "services.json").read_text())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def _procs_mentioning(dev_dir: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(dev_dir) in cmdline and proc.info["pid"] != os.getpid() and _alive(proc.pid):
            found.append(proc.info["pid"])
    return found


def _pg_family(pid: int) -> list[int]:
    """The postmaster and its children (checkpointer, walwriter, ...)."""
    proc = psutil.Process(pid)
    return [pid, *(c.pid for c in proc.children(recursive=True))]


def _check_services(services: embedded.EmbeddedServices) -> None:
    assert services.database_url is not None
    assert services.redis_url is not None
    with psycopg.connect(services.database_url, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_database()").fetchone() == ("jobs",)
    client = redis.Redis.from_url(services.redis_url, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_start_reuse_status_stop_and_restart_keeps_data(dev_dir: Path) -> None:
    first = embedded.start(dev_dir, fast=True)
    _check_services(first)
    assert first.database_url is not None
    assert first.database_url.startswith("postgresql://postgres@127.0.0.1:")
    assert first.database_url.endswith("/jobs")
    assert first.redis_url is not None
    assert first.redis_url.startswith("redis://127.0.0.1:")
    state = _state(dev_dir)
    pg_pid, redis_pid = int(state["postgres"]["pid"]), int(state["redis"]["pid"])

    # A second start reuses the running servers.
    second = embedded.start(dev_dir, fast=True)
    assert second == first
    assert int(_state(dev_dir)["postgres"]["pid"]) == pg_pid
    assert int(_state(dev_dir)["redis"]["pid"]) == redis_pid
    assert embedded.status(dev_dir) == first

    with psycopg.connect(first.database_url, autocommit=True) as conn:
        conn.execute("create table survives_restart (id int primary key)")
        conn.execute("insert into survives_restart values (42)")

    family = [*_pg_family(pg_pid), redis_pid]
    embedded.stop(dev_dir)
    _wait_gone(family)
    assert _procs_mentioning(dev_dir) == []
    assert set(_state(dev_dir)) == {"postgres", "redis"}  # the ports only, for the next start
    assert all(set(entry) == {"port"} for entry in _state(dev_dir).values())
    assert embedded.status(dev_dir) == embedded.EmbeddedServices(None, None)
    embedded.stop(dev_dir)  # idempotent

    # Restart reuses the data dir, and the ports: the URLs running processes hold stay valid.
    third = embedded.start(dev_dir, fast=True)
    _check_services(third)
    assert int(_state(dev_dir)["postgres"]["pid"]) != pg_pid
    assert third == first
    assert third.database_url is not None
    with psycopg.connect(third.database_url) as conn:
        assert conn.execute("select id from survives_restart").fetchall() == [(42,)]


def _listen(port: int) -> socket.socket:
    """Another process's server on ``port`` (as far as a new server can tell)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_recorded_port_taken_gives_a_new_port_and_a_warning(dev_dir: Path) -> None:
    first = embedded.start(dev_dir, fast=True)
    recorded = {name: int(entry["port"]) for name, entry in _state(dev_dir).items()}
    embedded.stop(dev_dir)
    squatters = [_listen(port) for port in recorded.values()]
    try:
        with capture_logs() as logs:
            second = embedded.start(dev_dir, fast=True)
    finally:
        for sock in squatters:
            sock.close()
    _check_services(second)
    assert second.database_url != first.database_url and second.redis_url != first.redis_url
    moved = {e["event"]: e for e in logs if e["event"].endswith(".port_changed")}
    assert set(moved) == {"embedded.postgres.port_changed", "embedded.redis.port_changed"}
    for name, port in recorded.items():
        event = moved[f"embedded.{name}.port_changed"]
        assert event["log_level"] == "warning"
        assert event["recorded_port"] == port
        assert event["port"] == int(_state(dev_dir)[name]["port"]) != port


def test_crashed_servers_leave_stale_state_and_restart_cleanly(dev_dir: Path) -> None:
    first = embedded.start(dev_dir, fast=True)
    assert first.database_url is not None
    with psycopg.connect(first.database_url, autocommit=True) as conn:
        conn.execute("create table survives_crash (id int)")
    state = _state(dev_dir)
    pg_pid, redis_pid = int(state["postgres"]["pid"]), int(state["redis"]["pid"])

    # Crash both: the state file and postmaster.pid now name dead processes.
    family = _pg_family(pg_pid)
    os.kill(pg_pid, signal.SIGKILL)
    os.kill(redis_pid, signal.SIGKILL)
    _wait_gone([*family, redis_pid])
    assert (dev_dir / "postgres" / "data" / "postmaster.pid").exists()
    assert embedded.status(dev_dir) == embedded.EmbeddedServices(None, None)

    second = embedded.start(dev_dir, fast=True)
    _check_services(second)
    new_state = _state(dev_dir)
    assert int(new_state["postgres"]["pid"]) != pg_pid
    assert int(new_state["redis"]["pid"]) != redis_pid
    assert second.database_url is not None
    with psycopg.connect(second.database_url) as conn:
        assert conn.execute("select count(*) from survives_crash").fetchone() == (0,)
    assert embedded.status(dev_dir) == second


def test_state_file_with_dead_pids_is_replaced(dev_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (dev_dir / "services.json").write_text(
        json.dumps(
            {
                "postgres": {"pid": dead.pid, "port": 1, "url": "postgresql://x@127.0.0.1:1/jobs"},
                "redis": {"pid": dead.pid, "port": 1, "url": "redis://127.0.0.1:1/0"},
            }
        )
    )
    assert embedded.status(dev_dir) == embedded.EmbeddedServices(None, None)

    services = embedded.start(dev_dir, fast=True)
    _check_services(services)
    state = _state(dev_dir)
    assert int(state["postgres"]["pid"]) != dead.pid
    assert int(state["redis"]["pid"]) != dead.pid
    assert "127.0.0.1:1/" not in (services.database_url or "")


def test_concurrent_starts_share_one_set_of_servers(dev_dir: Path) -> None:
    code = (
        "import sys, json; from pathlib import Path; from pgjobs.services import embedded; "
        "s = embedded.start(Path(sys.argv[1]), fast=True); "
        "print('RESULT', json.dumps([s.database_url, s.redis_url]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(dev_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    assert results[0] == results[1]
    postmasters = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(dev_dir / "postgres" / "data") in " ".join(p.info["cmdline"] or []) and _alive(p.pid)
    ]
    assert len(postmasters) == 1


def test_only_redis_and_missing_dir() -> None:
    missing = Path("/tmp") / f"emb-missing-{os.getpid()}"
    assert embedded.status(missing) == embedded.EmbeddedServices(None, None)
    embedded.stop(missing)  # no-op, does not create the dir
    assert not missing.exists()

    path = Path(tempfile.mkdtemp(prefix="emb", dir="/tmp"))
    try:
        services = embedded.start(path, postgres=False)
        assert services.database_url is None
        assert services.redis_url is not None
        assert not (path / "postgres").exists()
        assert embedded.status(path).redis_url == services.redis_url
    finally:
        embedded.stop(path)
        shutil.rmtree(path, ignore_errors=True)


def test_relative_dev_dir_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(tempfile.mkdtemp(prefix="emb", dir="/tmp"))
    monkeypatch.chdir(base)
    try:
        services = embedded.start(Path("d"), postgres=False)
        assert services.redis_url is not None
        assert (base / "d" / "services.json").exists()
        assert embedded.status(base / "d") == services
    finally:
        embedded.stop(base / "d")
        shutil.rmtree(base, ignore_errors=True)


def _jobctl(dev_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`jobctl` with nothing configured: the embedded servers under ``dev_dir``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "DATABASE_", "REDIS_"))
    }
    env["JOBS_DEV_DIR"] = str(dev_dir)
    return subprocess.run(
        [sys.executable, "-c", "from pgjobs.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=dev_dir,
        timeout=120,
    )


def test_dev_up_down_up_keeps_the_urls_and_prints_only_them(dev_dir: Path) -> None:
    first = _jobctl(dev_dir, "dev", "up")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # no server, migration or library info lines without -v
    lines = first.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["DATABASE_URL", "REDIS_URL"]

    shown = dict(line.split("=", 1) for line in _jobctl(dev_dir, "settings").stdout.splitlines())
    assert shown["DATABASE_URL"].split() == [lines[0].split("=", 1)[1], "#", "embedded", "server"]

    assert _jobctl(dev_dir, "dev", "down").stdout == "embedded servers stopped\n"
    again = _jobctl(dev_dir, "dev", "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and again.stderr == ""

    verbose = _jobctl(dev_dir, "-v", "dev", "up")
    assert verbose.stdout == first.stdout
    assert "embedded.postgres.reused" in verbose.stderr
