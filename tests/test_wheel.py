"""The wheel, installed into a fresh virtualenv, serves an application that has its own
``db.py``, ``worker.py`` and ``migrations/``: migrate, enqueue, a worker and status queries run
from the application's folder, with nothing of this repository on ``sys.path``.

Slow (about a minute): the wheel is built from a copy of the sources and installed with its
dependencies from the package index (pip's cache makes a second run faster).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import APP_JOBS_MODULE
from jobwait import wait_for

from pgjobs.db.models import JobStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
_DROP_PREFIXES = ("JOBS_", "DATABASE_URL", "REDIS_URL", "PYTEST_", "PYTHONPATH", "VIRTUAL_ENV")

APP_FILES = {
    "db.py": 'WHO = "the application\'s db"\n',
    "worker.py": 'WHO = "the application\'s worker"\n',
    "migrations/__init__.py": 'WHO = "the application\'s migrations"\n',
    "migrations/0001_orders.sql": "CREATE TABLE orders (id serial PRIMARY KEY);\n",
    "myapp/__init__.py": "",
    "myapp/jobs.py": APP_JOBS_MODULE,
    "enqueue.py": """
import sys
from pathlib import Path

import db
import migrations
import worker

import pgjobs
from myapp.jobs import thumbnail

repo, venv = Path(sys.argv[1]), Path(sys.prefix).resolve()
assert "application" in db.WHO and "application" in worker.WHO and "application" in migrations.WHO
assert not [p for p in sys.path if p and Path(p).resolve().is_relative_to(repo)], sys.path
assert Path(pgjobs.__file__).resolve().is_relative_to(venv), pgjobs.__file__
tenant = pgjobs.create_tenant(name="Acme", slug="acme")
job = pgjobs.enqueue(thumbnail, {"image_id": 5}, tenant_id=tenant.id)
print(job.id, tenant.id)
""",
}


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert run.returncode == 0, f"{argv}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout's sources installed."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "pgjobs", src / "pgjobs", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(root)])
    [wheel] = root.glob("pgjobs-*.whl")
    _run([sys.executable, "-m", "venv", str(root / "venv")])
    _run([str(root / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], timeout=600)
    return root / "venv"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    for name, text in APP_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def env(
    venv: Path,
    empty_db_url: str,
    server_urls: tuple[str, str],
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """The application's environment: the venv's bin first, a new database, nothing of this
    repository. This test process reads the same database to wait for the job."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    clean.update(
        PATH=os.pathsep.join([str(venv / "bin"), clean.get("PATH", "")]),
        DATABASE_URL=empty_db_url,
        REDIS_URL=server_urls[1],
        JOBS_REDIS_NAMESPACE=redis_namespace,
        JOBS_LOG_FORMAT="json",
        PYTHONDONTWRITEBYTECODE="1",
    )
    from pgjobs.db.engine import reset_engine
    from pgjobs.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    get_settings.cache_clear()
    reset_engine()
    yield clean
    reset_engine()
    get_settings.cache_clear()


def test_the_wheel_serves_an_application_with_its_own_db_worker_and_migrations(
    venv: Path, app: Path, env: dict[str, str]
) -> None:
    jobctl, python = str(venv / "bin" / "jobctl"), str(venv / "bin" / "python")
    _run([jobctl, "db", "upgrade"], cwd=app, env=env)
    enqueued = _run([python, "enqueue.py", str(REPO)], cwd=app, env=env)
    job_id, tenant = enqueued.stdout.splitlines()[-1].split()  # after any log lines
    worker_log = app / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [jobctl, "worker", "-p", "1", "-t", "2"],
            cwd=app,
            env={**env, "JOBS_IMPORTS": "myapp.jobs"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        job = wait_for(uuid.UUID(tenant), int(job_id), timeout=90)
        assert job.status is JobStatus.SUCCEEDED, worker_log.read_text()[-3000:]
        shown = _run(
            [jobctl, "jobs", "show", job_id, "--tenant", "acme", "--json"],
            cwd=app,
            env={**env, "JOBS_IMPORTS": "myapp.jobs"},
        )
        assert json.loads(shown.stdout)["status"] == "succeeded"
        assert json.loads(shown.stdout)["result"] == {"image_id": 5}
        listed = _run([jobctl, "jobs", "list", "--tenant", "acme"], cwd=app, env=env)
        assert "thumbnail" in listed.stdout and "succeeded" in listed.stdout
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
