"""The ASGI application: FastAPI, one router per resource, problem details for every error.

``jobctl api`` serves :func:`create_app` with uvicorn (one or more processes). Each process
has one :class:`~pgjobs.api.auth.Gate` (token cache, rate limiter, last-used marks), one
asyncio database pool and Redis client (shared with ``pgjobs.aio``), and one event feed that
serves every event stream it holds (pgjobs/aio/feed.py). The OpenAPI document is at
``/openapi.json``, interactive docs at ``/docs`` (Swagger UI) and ``/redoc``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from pgjobs import aio
from pgjobs.aio.feed import get_feed
from pgjobs.api import problems
from pgjobs.api.auth import ApiRefusal, Gate, on_refusal
from pgjobs.api.fast_read import JobReadFastPath
from pgjobs.api.routes import (
    credentials,
    health,
    job_types,
    jobs,
    mcp_servers,
    schedules,
    streams,
)
from pgjobs.logs import configure_logging, get_logger
from pgjobs.producer.job_types import all_job_types
from pgjobs.producer.user_modules import import_user_modules
from pgjobs.settings import get_settings

log = get_logger(__name__)

DESCRIPTION = """
Enqueue jobs, follow them and manage a tenant's credentials and MCP servers.

Every call under `/v1` needs `Authorization: Bearer <token>` (`jobctl tokens create`); the
token decides the tenant. Errors are RFC 9457 problem details (`application/problem+json`).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    feed = get_feed()  # started now: streams opened later find it reading
    gc.collect()
    gc.freeze()  # the application's own objects: never scanned again by the collector
    log.info("api.started", job_types=len(all_job_types()))
    yield
    await feed.stop()
    await aio.aclose()


def create_app() -> FastAPI:
    """A new application (uvicorn's factory; tests and embedders may call it too)."""
    configure_logging()
    import_user_modules()
    settings = get_settings()
    app = FastAPI(
        title="pgjobs",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.api_max_body_bytes,
        # FastAPI's OpenTelemetry hooks check their providers on every request; the service
        # logs with structlog and has no tracer: off (a third of the framework's own CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gate = Gate()
    handlers: dict[Any, Any] = {ApiRefusal: on_refusal, **problems.EXCEPTION_HANDLERS}
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
    app.include_router(health.router)
    app.include_router(jobs.batch_router, max_body_size=settings.api_max_batch_body_bytes)
    app.include_router(jobs.router)
    app.include_router(streams.router)
    app.include_router(job_types.router)
    app.include_router(credentials.router)
    app.include_router(mcp_servers.router)
    app.include_router(schedules.router)
    app.mount("/ui", _ui())
    return app


def _ui() -> ASGIApp:
    """The dashboard (pgjobs/ui), imported here only: Jinja2 stays out of other processes."""
    from pgjobs.ui import create_ui_app

    return create_ui_app("/ui")


def create_server_app() -> ASGIApp:
    """What ``jobctl api`` serves: :func:`create_app` behind the fast path of its hottest call
    (pgjobs/api/fast_read.py)."""
    app = create_app()
    return JobReadFastPath(app, app.state.gate)
