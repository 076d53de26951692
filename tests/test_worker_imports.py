"""What a worker process imports: nothing of the HTTP API, the migrations, the HTTP client or
the CLI's frameworks (each worker process pays every import at start-up; docs/performance.md,
"Idle cost and start-up"). Behaviour, not timing: the modules loaded, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

NOT_IN_A_WORKER = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "alembic",
    "mako",
    "typer",
    "matplotlib",
    "pgjobs.api",
    "pgjobs.cli",
    "pgjobs.mcp",
    "pgjobs.migrations",
)


@pytest.fixture
def servers_env(server_urls: tuple[str, str]) -> dict[str, str]:
    """The run's servers (services or embedded): the worker application builds its broker when
    it is imported."""
    return {**os.environ, "DATABASE_URL": server_urls[0], "REDIS_URL": server_urls[1]}


def test_the_worker_application_loads_none_of_the_modules_a_worker_does_not_use(
    servers_env: dict[str, str],
) -> None:
    code = (
        "import json, sys\n"
        "import pgjobs.worker.app\n"
        "heavy = sys.argv[1:]\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *NOT_IN_A_WORKER],
        capture_output=True,
        text=True,
        timeout=60,
        env=servers_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_the_check_sees_a_module_that_is_loaded(servers_env: dict[str, str]) -> None:
    """The same probe finds what the worker does import (the check is not vacuous)."""
    code = (
        "import json, sys\nimport pgjobs.worker.app\nprint(json.dumps('dramatiq' in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=servers_env
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) is True


def test_the_collector_runs_again_after_the_worker_application_loads(
    servers_env: dict[str, str],
) -> None:
    """Loading pauses the garbage collector and freezes what the import made; the collector
    must be back on after it, in a process where it was on (and stay off where it was off)."""
    code = (
        "import gc, json, sys\n"
        "if sys.argv[1] == 'off': gc.disable()\n"
        "import pgjobs.worker.app\n"
        "print(json.dumps([gc.isenabled(), gc.get_freeze_count() > 10_000]))\n"
    )
    for state, enabled in (("on", True), ("off", False)):
        proc = subprocess.run(
            [sys.executable, "-c", code, state],
            capture_output=True,
            text=True,
            timeout=60,
            env=servers_env,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[-1]) == [enabled, True]
