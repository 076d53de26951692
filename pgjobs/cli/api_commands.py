"""`jobctl api`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import importlib.util
import os

import click

from pgjobs.services.local import ensure_local_services
from pgjobs.settings import get_settings


def server_options(workers: int) -> dict[str, object]:
    """uvicorn's options: our app factory, our logging, and uvloop/httptools when installed
    (they are what makes the figures of docs/benchmarks.md; plain asyncio and h11 serve too)."""
    fast = all(importlib.util.find_spec(m) is not None for m in ("uvloop", "httptools"))
    return {
        "factory": True,
        "workers": workers,
        "log_config": None,  # pgjobs.logs configures logging in each process
        "access_log": False,
        "loop": "uvloop" if fast else "asyncio",
        "http": "httptools" if fast else "h11",
        "timeout_graceful_shutdown": 5,  # open event streams are cut after this
        "server_header": False,
    }


@click.command()
@click.option("--host", default=None, help="Address to listen on (JOBS_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (JOBS_API_PORT).")
@click.option("--workers", type=int, default=None, help="API processes (JOBS_API_WORKERS).")
def api(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API (/v1, /docs, /healthz, /readyz) until SIGTERM/SIGINT."""
    import uvicorn

    settings = get_settings()
    database_url, redis_url = ensure_local_services(schema=True)
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    get_settings.cache_clear()
    uvicorn.run(
        "pgjobs.api.app:create_server_app",
        host=host or settings.api_host,
        port=port or settings.api_port,
        **server_options(workers or settings.api_workers),  # type: ignore[arg-type]
    )
