"""The HTTP part of `jobctl demo`: an API process beside the worker, a token, and one job
enqueued and followed over HTTP with ``pgjobs.client`` (its events streamed as they happen)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console

from pgjobs.auth.store import create_token
from pgjobs.client import Client
from pgjobs.db.models import TokenScope

STARTUP_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(
    spawn: Callable[[str, list[str], dict[str, str], Path], subprocess.Popen[bytes]],
    env: dict[str, str],
    log_dir: Path,
) -> tuple[subprocess.Popen[bytes], str]:
    """``jobctl api`` on a free local port, started with the demo's ``spawn``; waits for
    /healthz. (process, base URL)."""
    port = _free_port()
    argv = [sys.executable, "-m", "pgjobs.cli.main", "api", "--port", str(port)]
    proc = spawn("api", argv, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url  # the demo's supervisor reports a process that died


def http_tour(console: Console, tenant_id: uuid.UUID, url: str) -> None:
    """Create a token, enqueue a job over HTTP and print its events as they stream in."""
    scopes = [TokenScope.JOBS_READ, TokenScope.JOBS_WRITE]
    made = create_token(tenant_id, name=f"demo-{uuid.uuid4().hex[:6]}", scopes=scopes)
    console.rule("[bold]over HTTP")
    console.print(f"API at {url} (docs at {url}/docs); token {made.record.prefix}… created")
    with Client(url, made.token) as jobs:
        job = jobs.enqueue("demo_render", {"title": "over HTTP", "steps": 6})
        console.print(f"POST /v1/jobs -> job {job.id} ({job.status}); streaming its events:")
        for event in jobs.stream_events(job.id):
            console.print(f"  {event.created_at:%H:%M:%S.%f}"[:-3] + f"  {event.event_type}")
        final = jobs.get_job(job.id)
    console.print(f"GET /v1/jobs/{job.id} -> {final.status}, result {final.result}")
