"""`jobctl worker` as a real process: metrics endpoint, graceful shutdown that releases jobs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobwait import assert_legal_history, events_of, wait_for

from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import enqueue, get_job

pytestmark = [pytest.mark.usefixtures("jobs_env"), pytest.mark.slow]


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            JOBS_IMPORTS="pgjobs.cli.demo_jobs",
            JOBS_DEV_DIR=str(tmp_path),
            JOBS_HEARTBEAT_SECONDS="0.2",
            JOBS_PROGRESS_INTERVAL_SECONDS="0",
            **extra,
        )
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgjobs.cli.main", "worker", "-p", "1", "-t", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_metrics_endpoint_serves_ours_and_dramatiqs(
    tenant_id: uuid.UUID, start_worker: object
) -> None:
    from pgjobs.cli.demo_jobs import demo_render

    port = _free_port()
    start_worker(JOBS_METRICS_PORT=str(port))  # type: ignore[operator]
    jobs = [
        enqueue(demo_render, {"title": "m", "steps": 1, "step_seconds": 0}, tenant_id=tenant_id)
        for _ in range(3)
    ]
    for job in jobs:
        assert wait_for(tenant_id, job.id, timeout=60).status is JobStatus.SUCCEEDED
    deadline = time.monotonic() + 20
    body = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                body = resp.read().decode()
            if 'pgjobs_job_outcomes_total{job_type="demo_render",outcome="succeeded"} 3.0' in body:
                break
        except OSError:
            pass
        time.sleep(0.3)
    assert 'pgjobs_job_outcomes_total{job_type="demo_render",outcome="succeeded"} 3.0' in body
    assert "dramatiq_messages_total" in body


def test_sigterm_releases_running_jobs_after_the_grace_period(
    tenant_id: uuid.UUID, start_worker: object
) -> None:
    from pgjobs.cli.demo_jobs import demo_render

    worker = start_worker(JOBS_SHUTDOWN_GRACE_SECONDS="1")  # type: ignore[operator]
    long = enqueue(
        demo_render, {"title": "long", "steps": 400, "step_seconds": 0.05}, tenant_id=tenant_id
    )
    short = enqueue(
        demo_render, {"title": "short", "steps": 5, "step_seconds": 0.1}, tenant_id=tenant_id
    )
    wait_for(tenant_id, long.id, frozenset({JobStatus.ACTIVE}), timeout=60)
    wait_for(tenant_id, short.id, frozenset({JobStatus.ACTIVE}), timeout=60)
    # To the main process only, as a process manager stops it: it forwards one SIGTERM to its
    # worker processes. Signalling the whole group gives each worker process two, and
    # Dramatiq exits a worker process at once on its second.
    os.kill(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)
    # The short job finished within the grace period; the long one was released at once.
    assert get_job(tenant_id, short.id).status is JobStatus.SUCCEEDED
    released = get_job(tenant_id, long.id)
    assert released.status is JobStatus.QUEUED and released.attempts == 0
    events = events_of(tenant_id, long.id)
    assert events[-1].event_type is EventType.RESCUED
    assert events[-1].data["reason"] == "worker shutdown"
    # Another worker takes it straight away (no lease to wait for).
    start_worker()  # type: ignore[operator]
    started = time.monotonic()
    wait_for(tenant_id, long.id, frozenset({JobStatus.ACTIVE}), timeout=30)
    assert time.monotonic() - started < 10
    assert_legal_history([e.event_type for e in events_of(tenant_id, long.id)])
