"""The HTTP API as a real process for tests: ``jobctl api`` on a free port, waited for on
/healthz, with a worker process beside it, both logging to files a test can read."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis as redis_lib
from conftest import RUN_ID
from helpers import KEY_A
from processes import Proc, Processes, free_port, worker_env

from pgjobs.auth.store import create_token
from pgjobs.db.models import TokenScope


def api_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from pgjobs.cli.main import main; main()",
        "api",
        "--port",
        str(port),
    ]


def start_api(procs: Processes, env: dict[str, str], timeout: float = 30.0) -> tuple[Proc, str]:
    """Start ``jobctl api`` and wait until it answers /healthz: (process, base URL)."""
    port = free_port()
    proc = procs.start("api", api_argv(port), env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start\n{proc.tail()}")
        time.sleep(0.1)


@dataclass
class Stack:
    """An API process and a worker process on one database and Redis namespace."""

    url: str
    procs: Processes
    env: dict[str, str]
    namespace: str
    api: Proc

    def client(self, token: str | None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def logs(self) -> str:
        return "".join(Path(p).read_text(errors="replace") for p in self.procs.log_files())


def token_for(tenant_id: object, *scopes: TokenScope, name: str = "test") -> str:
    """A raw token of the tenant (library call, in the test process)."""
    chosen = list(scopes) or [TokenScope.JOBS_READ, TokenScope.JOBS_WRITE]
    return create_token(tenant_id, name=name, scopes=chosen).token  # type: ignore[arg-type]


def sse_events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The events of an SSE response, as dicts of their fields (``id``, ``event``, ``data``)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@contextmanager
def api_stack(server_urls: tuple[str, str], database_url: str, log_dir: Path) -> Iterator[Stack]:
    """An API process and a worker process (4 threads) serving tests/api_jobs.py and
    tests/fault_jobs.py, in a Redis namespace of their own, deleted afterwards."""
    namespace = f"pgjobs-test-{RUN_ID}-api-{secrets.token_hex(3)}"
    procs = Processes(log_dir)
    env = worker_env(
        database_url=database_url,
        redis_url=server_urls[1],
        namespace=namespace,
        imports="api_jobs,fault_jobs",
        encryption_keys=f"ka:{KEY_A}",
        progress_interval_seconds=0,
        heartbeat_seconds=0.2,
        api_token_cache_seconds=1,
        api_event_poll_ms=20,
        api_stream_heartbeat_seconds=1,
    )
    try:
        api, url = start_api(procs, env)
        procs.worker(env, threads=4)
        yield Stack(url, procs, env, namespace, api)
    finally:
        procs.stop_all()
        client = redis_lib.Redis.from_url(server_urls[1])
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
