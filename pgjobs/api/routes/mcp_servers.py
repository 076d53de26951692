"""``/v1/mcp-servers``: the tenant's MCP servers, for tokens with the admin scope. ``ping``
enqueues the built-in ``mcp_ping`` job, whose outcome lands on the server's row."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from pgjobs import aio
from pgjobs.api.audit import audit
from pgjobs.api.auth import Admin
from pgjobs.api.routes.jobs import json_response
from pgjobs.api.schemas import EnqueuedOut, McpServerIn, McpServerPatchIn
from pgjobs.db.schemas.mcp_server import McpServerRead
from pgjobs.mcp import registry

router = APIRouter(prefix="/v1/mcp-servers", tags=["MCP servers"])


@router.post("", status_code=201, response_model=McpServerRead)
def create_server(body: McpServerIn, principal: Admin) -> McpServerRead:
    given: dict[str, Any] = body.model_dump(exclude_none=True)
    made = registry.create_mcp_server(principal.tenant_id, **given)
    audit(principal, "mcp_server.create", server_id=made.id)
    return made


@router.get("", response_model=list[McpServerRead])
def list_servers(principal: Admin) -> list[McpServerRead]:
    return registry.list_mcp_servers(principal.tenant_id)


@router.get("/{server_id}", response_model=McpServerRead)
def get_server(server_id: uuid.UUID, principal: Admin) -> McpServerRead:
    return registry.get_mcp_server(principal.tenant_id, server_id)


@router.patch("/{server_id}", response_model=McpServerRead)
def update_server(server_id: uuid.UUID, body: McpServerPatchIn, principal: Admin) -> McpServerRead:
    """Change some settings; ``metadata`` replaces the whole object."""
    changes = body.model_dump(exclude_unset=True)
    updated = registry.update_mcp_server(principal.tenant_id, server_id, **changes)
    audit(principal, "mcp_server.update", server_id=server_id)
    return updated


@router.delete("/{server_id}", status_code=204, response_class=Response)
def delete_server(server_id: uuid.UUID, principal: Admin) -> Response:
    registry.delete_mcp_server(principal.tenant_id, server_id)
    audit(principal, "mcp_server.delete", server_id=server_id)
    return Response(status_code=204)


@router.post("/{server_id}/ping", status_code=202, response_model=EnqueuedOut)
async def ping_server(server_id: uuid.UUID, principal: Admin) -> Response:
    """Enqueue an ``mcp_ping`` job for the server (follow it at /v1/jobs/{id})."""
    await run_in_threadpool(registry.get_mcp_server, principal.tenant_id, server_id)  # 404
    job = await aio.enqueue(
        "mcp_ping",
        {"server_id": str(server_id)},
        tenant_id=principal.tenant_id,
        actor=principal.actor,
    )
    audit(principal, "mcp_server.ping", server_id=server_id, job_id=job.id)
    out = EnqueuedOut(
        id=job.id, type=job.type, status=job.status, run_at=job.run_at, created=job.created
    )
    return json_response(out, 202, Location=f"/v1/jobs/{job.id}")
