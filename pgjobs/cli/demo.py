"""`jobctl demo`: the whole tour on the embedded (or configured) servers, in under a minute.

Migrates, creates a tenant with credentials and an MCP server, starts a worker process, the
maintenance process and the HTTP API, enqueues a mix of jobs (progress, a retry that then
succeeds, a failure, a cancellation while running, and the four shipped job types against a
local stand-in for the providers), shows live progress bars until all are done, prints the final
table and one job's event history, enqueues one more job over HTTP with an API token and
streams its events, and stops every process it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pgjobs.cli.demo_api import http_tour, start_api
from pgjobs.cli.job_commands import _jobs_table, watch_jobs
from pgjobs.cli.stand_in_providers import FakeProviders, Reply
from pgjobs.db import migrate
from pgjobs.db.errors import NotFound
from pgjobs.db.tenants import create_tenant, get_tenant
from pgjobs.logs import configure_logging
from pgjobs.mcp.registry import create_mcp_server, find_mcp_server
from pgjobs.producer import JobRequest, cancel_job, enqueue_many, get_job, get_job_events
from pgjobs.producer.builtin_types import (
    credential_check,
    fine_tune_export,
    mcp_ping,
    scheduled_preview,
)
from pgjobs.services import embedded
from pgjobs.services.local import ensure_local_services
from pgjobs.settings import get_settings
from pgjobs.vault.credentials import create_credential, find_credential

DEMO_SLUG = "demo"
DEMO_TIMEOUT = 120.0


@click.command()
@click.option("--keep-services", is_flag=True, help="Leave the embedded servers running after.")
def demo(keep_services: bool) -> None:
    """Run the five-minute tour in under one."""
    # `timeout`, a closed terminal or `kill` must still stop what the demo started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    console = Console()
    settings = get_settings()
    # The tour shows tables and progress bars; log lines of this process only when they matter
    # (the worker and maintenance processes log fully, to files).
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}), force=True)
    started_embedded = (
        not (settings.database_url and settings.redis_url)
        and embedded.status(settings.dev_dir).database_url is None
    )
    started = time.monotonic()
    database_url, redis_url = ensure_local_services()
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    get_settings.cache_clear()
    console.rule("[bold]pgjobs demo")
    console.print(f"PostgreSQL {_redact(database_url)}\nRedis      {redis_url}")
    migrate.upgrade("head", database_url)
    console.print(f"schema at revision {migrate.current(database_url)}")

    providers = _stand_in_providers().start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        tenant_id, ids = _setup(console, providers)
        env = _process_env(providers, database_url, redis_url)
        log_dir = Path(settings.dev_dir) / "demo-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        processes.append(_spawn("worker", _worker_argv(), env, log_dir))
        processes.append(_spawn("maintenance", _maintenance_argv(), env, log_dir))
        api, api_url = start_api(_spawn, env, log_dir)
        processes.append(api)
        console.print(f"started worker, maintenance and API processes (logs in {log_dir})")
        jobs = _enqueue(tenant_id, ids)
        console.print(f"enqueued {len(jobs)} jobs\n")
        _cancel_when_running(tenant_id, jobs["long render (cancelled)"])
        done = threading.Event()
        problem = _supervise(processes, time.monotonic() + DEMO_TIMEOUT, done)
        watch_jobs(tenant_id, list(jobs.values()), interval=0.2, until_done=True, console=console)
        done.set()
        if problem:
            raise click.ClickException(f"{problem[0]} (logs in {log_dir})")
        _report(console, tenant_id, jobs)
        http_tour(console, tenant_id, api_url)
    finally:
        _stop(processes)
        providers.stop()
        if started_embedded and not keep_services:
            embedded.stop(settings.dev_dir)
            console.print("stopped the embedded servers")
    console.print(f"\n[bold green]demo finished in {time.monotonic() - started:.1f}s")


def _redact(url: str) -> str:
    from pgjobs.vault.redaction import redact_text

    return redact_text(url)


def _stand_in_providers() -> FakeProviders:
    """Local stand-ins for OpenAI, CFBD and an MCP server (the demo reaches no internet)."""
    providers = FakeProviders()
    providers.route("GET", "/openai/v1/models", Reply(200, json={"data": [{"id": "gpt-demo"}]}))
    providers.route("POST", "/openai/v1/files", Reply(200, json={"id": "file-demo123"}))
    games = [
        {
            "home_team": "Navy",
            "away_team": "Army",
            "start_date": "2026-12-12T20:00:00Z",
            "venue": "MetLife Stadium",
        },
        {
            "home_team": "Navy",
            "away_team": "Notre Dame",
            "start_date": "2026-11-28T19:30:00Z",
            "venue": "Navy-Marine Corps Memorial Stadium",
        },
    ]
    providers.route("GET", "/cfbd/games", Reply(200, json=games, delay=0.5))
    providers.route("GET", "/mcp", Reply(200, json={"ok": True}))
    return providers


def _setup(console: Console, providers: FakeProviders) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """The demo tenant, its credentials and MCP server (reused on a second run)."""
    try:
        tenant = get_tenant(DEMO_SLUG)
    except NotFound:
        tenant = create_tenant(name="Demo Co", slug=DEMO_SLUG)
    ids: dict[str, uuid.UUID] = {}
    for provider, name in (("openai", "demo-openai"), ("cfbd", "demo-cfbd")):
        try:
            cred = find_credential(tenant.id, provider, name)
        except NotFound:
            secret = f"sk-demo-{secrets.token_hex(16)}"
            cred = create_credential(tenant.id, provider=provider, name=name, secret=secret)
        ids[provider] = cred.id
    url = providers.url + "/mcp"
    try:
        server = find_mcp_server(tenant.id, "demo-mcp")
    except NotFound:
        server = create_mcp_server(
            tenant.id, label="demo-mcp", base_url=url, auth_type="token", auth_ref=ids["openai"]
        )
    if server.base_url != url:
        from pgjobs.mcp.registry import update_mcp_server

        server = update_mcp_server(tenant.id, server.id, base_url=url)
    ids["mcp"] = server.id
    console.print(f"tenant {tenant.slug} ({tenant.id}) with 2 credentials and 1 MCP server")
    return tenant.id, ids


def _enqueue(tenant_id: uuid.UUID, ids: dict[str, uuid.UUID]) -> dict[str, int]:
    from pgjobs.cli.demo_jobs import demo_render  # registers the demo's job type only when it runs

    plan: list[tuple[str, JobRequest]] = [
        (
            f"render {n}",
            JobRequest(demo_render, {"title": f"scene {n}", "steps": 12 + 4 * n}, tenant_id),
        )
        for n in range(1, 4)
    ]
    plan += [
        (
            "flaky render (retries)",
            JobRequest(demo_render, {"title": "flaky", "steps": 10, "fail_attempts": 1}, tenant_id),
        ),
        (
            "doomed render (fails)",
            JobRequest(
                demo_render,
                {"title": "doomed", "steps": 6, "fail_attempts": 9},
                tenant_id,
                max_attempts=2,
            ),
        ),
        (
            "long render (cancelled)",
            JobRequest(
                demo_render, {"title": "long", "steps": 300, "step_seconds": 0.1}, tenant_id
            ),
        ),
        (
            "fine_tune_export",
            JobRequest(
                fine_tune_export,
                {
                    "credential_id": str(ids["openai"]),
                    "dataset_name": "demo-set",
                    "examples": [{"prompt": f"Q{i}?", "completion": f"A{i}."} for i in range(40)],
                },
                tenant_id,
            ),
        ),
        (
            "scheduled_preview",
            JobRequest(
                scheduled_preview,
                {
                    "credential_id": str(ids["cfbd"]),
                    "provider": "cfbd",
                    "season": 2026,
                    "team": "Navy",
                },
                tenant_id,
            ),
        ),
        (
            "credential_check",
            JobRequest(credential_check, {"credential_id": str(ids["openai"])}, tenant_id),
        ),
        ("mcp_ping", JobRequest(mcp_ping, {"server_id": str(ids["mcp"])}, tenant_id)),
    ]
    jobs = enqueue_many([request for _, request in plan])
    return {label: job.id for (label, _), job in zip(plan, jobs, strict=True)}


def _cancel_when_running(tenant_id: uuid.UUID, job_id: int) -> None:
    """Cancel the long job once it has made some progress (from a background thread)."""

    def cancel_later() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if get_job(tenant_id, job_id).progress >= 8:
                cancel_job(tenant_id, job_id, reason="demo: cancelled while running")
                return
            time.sleep(0.1)

    threading.Thread(target=cancel_later, daemon=True).start()


def _supervise(
    processes: list[subprocess.Popen[bytes]], deadline: float, done: threading.Event
) -> list[str]:
    """Until ``done``, watch the demo's processes from a thread; if one dies or time runs out,
    interrupt the main thread (the progress display ends) and say why in the returned list."""
    problem: list[str] = []

    def watch() -> None:
        while not problem and not done.is_set():
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                problem.append(f"a demo process exited early (code {dead[0].returncode})")
            elif time.monotonic() > deadline:
                problem.append(f"the demo did not finish within {DEMO_TIMEOUT:.0f}s")
            else:
                done.wait(0.2)
                continue
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    return problem


def _report(console: Console, tenant_id: uuid.UUID, jobs: dict[str, int]) -> None:
    console.print()
    console.print(_jobs_table([get_job(tenant_id, i) for i in jobs.values()], "final status"))
    flaky = jobs["flaky render (retries)"]
    table = Table(title=f"events of job {flaky} (flaky render)")
    for column in ("id", "event", "at", "data"):
        table.add_column(column)
    for event in get_job_events(tenant_id, flaky, limit=500).items:
        data = {k: v for k, v in event.data.items() if k != "message_id"}
        table.add_row(
            str(event.id),
            event.event_type.value,
            event.created_at.strftime("%H:%M:%S.%f")[:-3],
            _short(data),
        )
    console.print(table)


def _short(data: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in data.items())
    return text if len(text) <= 70 else text[:69] + "…"


def _process_env(providers: FakeProviders, database_url: str, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        JOBS_IMPORTS="pgjobs.cli.demo_jobs",
        JOBS_OPENAI_BASE_URL=providers.url + "/openai/v1",
        JOBS_CFBD_BASE_URL=providers.url + "/cfbd",
        JOBS_HEARTBEAT_SECONDS="0.5",
        JOBS_PROGRESS_INTERVAL_SECONDS="0.2",
        JOBS_SHUTDOWN_GRACE_SECONDS="3",
        JOBS_LOG_FORMAT="json",
    )
    from pgjobs.cli.worker_commands import worker_env

    env.update(worker_env())
    return env


def _worker_argv() -> list[str]:
    from pgjobs.cli.worker_commands import worker_argv

    return worker_argv(processes=1, threads=8, queues=())


def _maintenance_argv() -> list[str]:
    return [sys.executable, "-m", "pgjobs.cli.main", "maintenance", "--interval", "0.5"]


def _spawn(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path
) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}.log").open("ab")
    return subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, wait, then SIGKILL what is left: nothing stays behind."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
