"""``/healthz`` (the process is up) and ``/readyz`` (PostgreSQL and Redis answer). Neither
needs a token, and neither says more than ok or unavailable."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pgjobs.aio.redis_client import get_redis
from pgjobs.api.problems import problem
from pgjobs.db.async_pool import connection

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _postgres() -> None:
    async with connection() as conn:
        await conn.execute("SELECT 1")


async def _redis() -> None:
    await get_redis().ping()


@router.get("/readyz", responses={503: {"description": "PostgreSQL or Redis unavailable"}})
async def readyz() -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (("postgres", _postgres), ("redis", _redis)):
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            checks[name] = "unavailable"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    return problem(503, "NotReady", "a service this API needs is unavailable", checks=checks)
