"""The floor under ``GET /v1/jobs/{id}``: the same server (uvicorn with uvloop and httptools,
no access log) with no framework, no token check and no model.

* ``/static`` answers a fixed JSON body: what uvicorn and the event loop alone cost a request;
* ``/row/{tenant}/{id}`` reads one job by primary key on an async psycopg pool and answers its
  columns as JSON: the status read's own work, nothing else.

bench/api.py measures both with the same load generator as the API, in the same run, so the
report can say how much of a request's cost is ours and whether the goal is reachable at all on
the machine.
"""

from __future__ import annotations

import json
import os
from typing import Any

from psycopg_pool import AsyncConnectionPool

_JSON = [(b"content-type", b"application/json")]
_STATIC = json.dumps({"id": 1, "status": "succeeded", "attempts": 1}).encode()
_KEYS = (
    "id", "status", "type", "attempts", "max_attempts", "progress", "progress_message",
    "error_message", "result", "run_at", "created_at", "updated_at",
)  # fmt: skip
_ROW = (
    "SELECT id, status::text, type, attempts, max_attempts, progress, progress_message, "
    "error_message, result, run_at::text, created_at::text, updated_at::text "
    "FROM content_jobs WHERE tenant_id = %s AND id = %s"
)
_pool: AsyncConnectionPool | None = None


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _pool = AsyncConnectionPool(os.environ["DATABASE_URL"], min_size=4, max_size=8)
                await _pool.open(wait=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    if path == "/readyz" or path == "/static":
        await _respond(send, 200, _STATIC)
        return
    if path.startswith("/row/"):
        _, _, tenant, job_id = path.split("/")
        assert _pool is not None
        async with _pool.connection() as conn:
            cur = await conn.execute(_ROW, (tenant, int(job_id)))
            row = await cur.fetchone()
        if row is None:
            await _respond(send, 404, b'{"title":"not found"}')
            return
        await _respond(send, 200, json.dumps(dict(zip(_KEYS, row, strict=True))).encode())
        return
    await _respond(send, 404, b'{"title":"not found"}')
