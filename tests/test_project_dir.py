"""The project directory, found from the current directory (pgjobs/settings.py): where `.dev`
(the embedded servers, the development key) is, and which `.env` files are read, so a script
run from any folder of a project finds the project's servers, and says where it looked when
there are none (pgjobs/services/locate.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgjobs.services import embedded
from pgjobs.settings import Settings, env_files, find_dev_dir, project_dir

_DROP_PREFIXES = ("JOBS_", "DATABASE_URL", "REDIS_URL", "PYTEST_")


@pytest.fixture
def project() -> Iterator[Path]:
    """An empty folder to build a project in (short path: a PostgreSQL socket may live in
    it), with a deep subfolder ``src/app/deep``."""
    root = Path(tempfile.mkdtemp(prefix="proj", dir="/tmp")).resolve()
    (root / "src" / "app" / "deep").mkdir(parents=True)
    try:
        yield root
    finally:
        embedded.stop(root / ".dev")
        shutil.rmtree(root, ignore_errors=True)


def test_the_nearest_dev_folder_of_ours_wins(project: Path) -> None:
    deep = project / "src" / "app" / "deep"
    assert find_dev_dir(deep) is None
    assert project_dir(deep) == deep  # nothing above: the current directory

    (project / "pyproject.toml").write_text("")
    assert project_dir(deep) == project  # the nearest pyproject.toml

    (project / "src" / ".dev").mkdir()  # another tool's .dev: holds nothing of ours
    assert project_dir(deep) == project
    (project / ".dev").mkdir()
    (project / ".dev" / "keys.txt").write_text("")
    assert find_dev_dir(deep) == project / ".dev"
    (project / "src" / "app" / "pyproject.toml").write_text("")
    assert project_dir(deep) == project  # a .dev of ours, however far up, before pyproject

    (project / "src" / ".dev" / "services.json").write_text("{}")
    assert project_dir(deep) == project / "src"  # the nearest .dev of ours


def test_settings_use_the_projects_dev_folder_and_env_files(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = project / "src" / "app" / "deep"
    (project / ".dev" / "postgres").mkdir(parents=True)
    (project / ".env").write_text("JOBS_LOG_LEVEL=WARNING\nJOBS_RETENTION_DAYS=7\n")
    (deep / ".env").write_text("JOBS_RETENTION_DAYS=3\n")
    for name in ("JOBS_DEV_DIR", "JOBS_LOG_LEVEL", "JOBS_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(deep)
    assert env_files() == (project / ".env", deep / ".env")
    settings = Settings(_env_file=env_files())
    assert settings.dev_dir == project / ".dev"
    assert (settings.log_level, settings.retention_days) == ("WARNING", 3.0)  # cwd's wins
    monkeypatch.setenv("JOBS_DEV_DIR", "elsewhere")
    assert Settings().dev_dir == Path("elsewhere")  # set: taken as it is


def _locate(cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    """A script of the project, run from ``cwd`` with no server configured, asking where
    ``what`` (database_url or redis_url) is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    code = f"from pgjobs.services.locate import {what}; print({what}())"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not embedded.available(), reason="embedded extra not installed")
def test_a_script_finds_the_projects_servers_from_any_folder(project: Path) -> None:
    deep = project / "src" / "app" / "deep"
    missing = _locate(deep, "redis_url")
    assert missing.returncode == 1
    assert (
        "ConfigurationError: no Redis configured: REDIS_URL is not set, and no embedded servers "
        f"were found (no .dev folder of pgjobs in {deep} or above it): run `jobctl dev up` in "
        "the project (any directory of it), or set REDIS_URL"
    ) in missing.stderr

    started = embedded.start(project / ".dev", postgres=False, redis=True)  # as `jobctl dev up`
    found = _locate(deep, "redis_url")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == started.redis_url
    not_running = _locate(deep, "database_url")
    assert (
        f"no PostgreSQL configured: DATABASE_URL is not set, and the embedded servers of "
        f"{project / '.dev'} are not running"
    ) in not_running.stderr
