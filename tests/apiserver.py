"""The HTTP API as a real process for tests: ``jobctl api`` on a free port, waited for on
/healthz, with a worker process beside it, both logging to files a test can read."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from processes import Proc, Processes, free_port

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
