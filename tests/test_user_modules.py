"""``JOBS_IMPORTS``: the application's modules, imported from the current directory by worker
processes and by every `jobctl` command that needs job types (pgjobs/producer/user_modules.py).

The CLI tests run the `jobctl` console script as a real process from a folder holding
``myapp/jobs.py``: a console script's ``sys.path`` does not hold the current directory (``python
-m`` would have put it there and hidden the bug)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from helpers import APP_JOBS_MODULE, job_ids_in_redis
from jobwait import wait_for

from pgjobs.db.errors import ConfigurationError
from pgjobs.db.models import JobStatus
from pgjobs.producer import get_job, list_jobs
from pgjobs.producer.job_types import get_job_type, unregister
from pgjobs.producer.user_modules import import_user_modules
from pgjobs.settings import get_settings
from pgjobs.worker.handlers.registry import unregister as unregister_handler

JOBCTL = str(Path(sys.executable).parent / "jobctl")
_DROP_PREFIXES = ("JOBS_", "DATABASE_URL", "REDIS_URL", "PYTEST_", "PYTHONPATH")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A folder with the application's package ``myapp`` (job type and handler)."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(APP_JOBS_MODULE)
    return tmp_path


# --- in-process -----------------------------------------------------------------------------


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``set(value)``: JOBS_IMPORTS for this test; sys.path and the application's modules
    (``myapp``) forgotten after."""
    saved_path = list(sys.path)

    def set_imports(value: str) -> None:
        monkeypatch.setenv("JOBS_IMPORTS", value)
        get_settings.cache_clear()

    yield set_imports
    sys.path[:] = saved_path
    for name in [m for m in sys.modules if m == "myapp" or m.startswith("myapp.")]:
        del sys.modules[name]
    unregister("thumbnail")
    unregister_handler("thumbnail")
    get_settings.cache_clear()


def test_modules_are_imported_from_the_current_directory(
    app_dir: Path, imports: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(app_dir)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", str(app_dir))]
    imports(" myapp.jobs , ")  # type: ignore[operator]
    assert import_user_modules() == ["myapp.jobs"]
    assert get_job_type("thumbnail").queue == "media"
    assert sys.path[0] == str(app_dir)
    assert import_user_modules() == ["myapp.jobs"]  # again: nothing changes
    assert sys.path.count(str(app_dir)) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nosuch.jobs", "cannot import 'nosuch.jobs' (no module named 'nosuch' in "),
        ("myapp.nosuch", "cannot import 'myapp.nosuch' (no module named 'myapp.nosuch' in "),
        (".jobs", "'.jobs' is not a module name"),
        ("my app", "'my app' is not a module name"),
    ],
)
def test_a_module_that_is_not_there_is_a_configuration_error(
    app_dir: Path, imports: object, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.chdir(app_dir)
    imports(value)  # type: ignore[operator]
    with pytest.raises(ConfigurationError, match="JOBS_IMPORTS") as info:
        import_user_modules()
    assert message in str(info.value)


def test_an_import_error_inside_the_module_is_its_own(
    app_dir: Path, imports: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module was found; what it imports was not: its author needs the real error."""
    (app_dir / "myapp" / "broken.py").write_text("import not_installed_anywhere\n")
    monkeypatch.chdir(app_dir)
    imports("myapp.broken")  # type: ignore[operator]
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        import_user_modules()


def test_the_worker_command_finds_the_modules_without_importing_them(app_dir: Path) -> None:
    """`jobctl worker` checks JOBS_IMPORTS before it starts the worker processes, without
    importing the application or the library's database layer (each worker process does):
    the launch is that much shorter."""
    probe = (
        "import sys; from pgjobs.cli.worker_commands import find_user_modules; "
        "find_user_modules(); "
        "print(sorted(m for m in ('myapp.jobs', 'sqlalchemy', 'pgjobs.producer') "
        "if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    ok = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=app_dir,
        env={**env, "JOBS_IMPORTS": "myapp.jobs"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and ok.stdout.strip() == "[]", ok.stderr
    for missing in ("nosuch", "myapp.nosuch"):
        wrong = subprocess.run(
            [JOBCTL, "worker"],
            cwd=app_dir,
            env={**env, "JOBS_IMPORTS": missing, "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
                 "REDIS_URL": "redis://127.0.0.1:1/0"},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )  # fmt: skip
        assert wrong.returncode == 1, wrong.stderr
        assert f"JOBS_IMPORTS: cannot find '{missing}' in {app_dir}" in wrong.stderr
        assert "Traceback" not in wrong.stderr


# --- jobctl as a real process -----------------------------------------------------------------


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db  # the maintenance process looks at every job


@pytest.fixture
def cli_env(db_env: str, server_urls: tuple[str, str], redis_namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    env.update(
        DATABASE_URL=db_env,
        REDIS_URL=server_urls[1],
        JOBS_REDIS_NAMESPACE=redis_namespace,
        JOBS_LOG_FORMAT="json",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def enqueue_thumbnail(app_dir: Path, env: dict[str, str], tenant: str, image_id: int) -> int:
    """`jobctl enqueue thumbnail` with JOBS_IMPORTS=myapp.jobs; the new job's id."""
    payload = json.dumps({"image_id": image_id})
    args = ("enqueue", "thumbnail", "--tenant", tenant, "--payload", payload, "--json")
    enqueued = jobctl(app_dir, env, *args, JOBS_IMPORTS="myapp.jobs")
    assert enqueued.returncode == 0, enqueued.stderr
    return int(json.loads(enqueued.stdout)["id"])


def jobctl(
    app_dir: Path, env: dict[str, str], *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBCTL, *args],
        cwd=app_dir,
        env={**env, **settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def background(app_dir: Path) -> Iterator[object]:
    """``start(env, *args)``: `jobctl ARGS` in the background, its output in a file; killed
    at teardown."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = app_dir / f"{args[0]}-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [JOBCTL, *args],
                cwd=app_dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append((proc, log))
        return proc, log

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


@pytest.mark.slow
def test_jobctl_commands_load_job_types_from_the_current_directory(
    app_dir: Path,
    cli_env: dict[str, str],
    tenant_id: uuid.UUID,
    redis_client: redis_lib.Redis,
    redis_namespace: str,
    background: object,
) -> None:
    tenant, payload = str(tenant_id), '{"image_id": 7}'
    unknown = jobctl(
        app_dir, cli_env, "enqueue", "thumbnail", "--tenant", tenant, "--payload", payload
    )
    assert unknown.returncode == 1 and "unknown job type 'thumbnail'" in unknown.stderr
    assert "JOBS_IMPORTS: none" in unknown.stderr  # says where job types come from

    job_id = enqueue_thumbnail(app_dir, cli_env, tenant, 7)
    assert job_ids_in_redis(redis_client, redis_namespace, "media") == [job_id]

    listed = jobctl(app_dir, cli_env, "jobs", "list", "--tenant", tenant, JOBS_IMPORTS="myapp.jobs")
    assert listed.returncode == 0 and "thumbnail" in listed.stdout, listed.stderr
    wrong = jobctl(app_dir, cli_env, "jobs", "list", "--tenant", tenant, JOBS_IMPORTS="nosuch")
    assert wrong.returncode == 1 and "JOBS_IMPORTS: cannot import 'nosuch'" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    # The maintenance process re-sends the job's lost message: it knows the type's queue.
    redis_client.delete(f"{redis_namespace}:media", f"{redis_namespace}:media.msgs")
    env = {**cli_env, "JOBS_IMPORTS": "myapp.jobs", "JOBS_RELAY_QUEUED_AFTER_SECONDS": "0"}
    proc, log = background(env, "maintenance", "--interval", "0.2")  # type: ignore[operator]
    wait_for_line(log, "maintenance.started", proc)
    deadline = time.monotonic() + 30
    while job_ids_in_redis(redis_client, redis_namespace, "media") != [job_id]:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_a_worker_without_the_module_says_so_and_health_reports_the_job(
    app_dir: Path,
    cli_env: dict[str, str],
    tenant_id: uuid.UUID,
    background: object,
) -> None:
    """The issue's scenario: a worker started without the application's module does not
    serve its queue; it says so at start, `jobctl health` names the waiting job, and a worker
    with JOBS_IMPORTS runs it."""
    job_id = enqueue_thumbnail(app_dir, cli_env, str(tenant_id), 9)

    proc, log = background(cli_env, "worker", "-p", "1", "-t", "1", "--queues", "media")  # type: ignore[operator]
    wait_for_line(log, "worker.queues_without_types", proc)
    serving = next(
        json.loads(line) for line in log.read_text().splitlines() if "worker.serving" in line
    )
    assert serving["queues"] == [] and serving["job_types"] == []
    health = jobctl(app_dir, cli_env, "health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "WARNING: 1 due job(s) of type thumbnail" in health.stdout, health.stdout
    assert get_job(tenant_id, job_id).status is JobStatus.QUEUED

    env = {**cli_env, "JOBS_IMPORTS": "myapp.jobs"}
    proc, log = background(env, "worker", "-p", "1", "-t", "1")  # type: ignore[operator]
    assert wait_for(tenant_id, job_id, timeout=60).status is JobStatus.SUCCEEDED
    assert get_job(tenant_id, job_id).result == {"image_id": 9}
    assert [j.type for j in list_jobs(tenant_id).items] == ["thumbnail"]
    health = jobctl(app_dir, cli_env, "health")
    assert "WARNING" not in health.stdout, health.stdout


@pytest.mark.slow
def test_the_worker_command_is_dramatiqs_main_process_and_restarts_on_sighup(
    app_dir: Path, cli_env: dict[str, str], tenant_id: uuid.UUID, background: object
) -> None:
    """`jobctl worker` runs Dramatiq's main process itself (its worker processes are forked
    from it and log through Dramatiq's pipe), and Dramatiq's restart on SIGHUP execs a command
    that works: the same one, by the interpreter's full path."""
    import psutil

    env = {**cli_env, "JOBS_IMPORTS": "myapp.jobs"}
    proc, log = background(env, "worker", "-p", "1", "-t", "1")  # type: ignore[operator]
    wait_for_line(log, "worker.serving", proc)
    main = psutil.Process(proc.pid)
    assert [c.cmdline()[-1] for c in main.children()] != []  # the forked worker process
    assert all(c.ppid() == proc.pid for c in main.children())

    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while log.read_text().count("worker.serving") < 2:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    job_id = enqueue_thumbnail(app_dir, cli_env, str(tenant_id), 11)
    assert wait_for(tenant_id, job_id, timeout=60).status is JobStatus.SUCCEEDED
    for line in log.read_text().splitlines():  # every line whole: one JSON event each
        json.loads(line)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
