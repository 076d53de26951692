"""`jobctl demo` (what `make demo` runs) completes the tour and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest


@pytest.mark.slow
def test_demo_runs_the_tour(
    fresh_db_url: str, server_urls: tuple[str, str], redis_namespace: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=fresh_db_url,
        REDIS_URL=server_urls[1],
        JOBS_REDIS_NAMESPACE=redis_namespace,
        JOBS_DEV_DIR=str(tmp_path),
        COLUMNS="120",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pgjobs.cli.main", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "demo finished" in out
    for expected in ("succeeded", "failed", "cancelled", "retry", "completed"):
        assert expected in out, expected
    assert _processes_with(redis_namespace) == []


def _processes_with(namespace: str) -> list[int]:
    """Processes started with this test's Redis namespace in their environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("JOBS_REDIS_NAMESPACE") == namespace:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found
