"""``mcp_ping``: GET an MCP server's base_url with its auth; record status and last_ping_at.

The server's custom headers (``metadata.headers``) go with every ping, plus ``Authorization``
from its credential: ``token`` sends ``Bearer <secret>``, ``basic`` sends the secret, stored as
``user:password``, Basic-encoded.

=================================================  ===========
answer                                             status
=================================================  ===========
below 500, other than 401/403 (a 404 or 405 too)   ``online``
401 or 403                                         ``error``    (the server refused our auth)
5xx, timeout, refused or dropped connection        ``offline``
=================================================  ===========

Each outcome is a successful job: finding a server offline is what a ping is for. Only failing
to *record* the outcome, or to find the server, ends the job otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from pgjobs.db.models import McpServerStatus
from pgjobs.db.schemas.mcp_server import McpServerRead
from pgjobs.mcp import registry as mcp_servers
from pgjobs.producer.builtin_types import McpPingPayload, mcp_ping
from pgjobs.worker.context import JobContext
from pgjobs.worker.credentials import mcp_headers
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers import http
from pgjobs.worker.handlers.credential_check import credential_secret
from pgjobs.worker.handlers.registry import handles


def classify(status_code: int | None) -> McpServerStatus:
    """The server's status from the ping's HTTP status (None: no answer at all)."""
    if status_code is None or status_code >= 500:
        return McpServerStatus.OFFLINE
    if status_code in http.AUTH_FAILURE_STATUSES:
        return McpServerStatus.ERROR
    return McpServerStatus.ONLINE


@dataclass(frozen=True)
class _Answer:
    http_status: int | None  # None: no answer at all
    outcome: str
    latency_ms: int


def _get(client: httpx.Client, url: str, headers: dict[str, str]) -> _Answer:
    """One timed GET; a transport failure is an answer too (the server is offline)."""
    started = time.monotonic()
    try:
        response = http.send(client, "GET", url, provider="mcp", action="ping", headers=headers)
    except http.ProviderUnavailable as exc:
        http_status, outcome = None, str(exc)
    else:
        http_status, outcome = response.status_code, f"HTTP {response.status_code}"
    return _Answer(http_status, outcome, round((time.monotonic() - started) * 1000))


def _ping(ctx: JobContext[Any], server: McpServerRead) -> _Answer:
    """GET the server with its headers and auth; the credential opens through the job's
    context, so its use is a checkpoint and its value is redacted from this attempt's errors."""
    with (
        http.client() as client,
        mcp_headers(server, partial(credential_secret, ctx)) as headers,
    ):
        return _get(client, server.base_url, headers)


@handles(mcp_ping)
def run(ctx: JobContext[McpPingPayload]) -> dict[str, Any]:
    server_id = ctx.payload.server_id
    try:
        server = mcp_servers.get_mcp_server(ctx.tenant_id, server_id)
    except mcp_servers.McpServerNotFound:
        raise PermanentError(f"MCP server {server_id} not found") from None
    ctx.progress(10, f"pinging MCP server {server.label!r} (auth: {server.auth_type.value})")

    answer = _ping(ctx, server)
    status = classify(answer.http_status)
    ctx.progress(80, f"{answer.outcome}: {status.value}")

    try:
        mcp_servers.record_ping(ctx.tenant_id, server_id, status)
    except mcp_servers.McpServerNotFound:
        raise PermanentError(f"MCP server {server_id} was deleted during the ping") from None
    ctx.progress(100, f"MCP server is {status.value}")
    result: dict[str, Any] = {
        "status": status.value,
        "http_status": answer.http_status,
        "latency_ms": answer.latency_ms,
    }
    if answer.http_status is None:
        result["error"] = answer.outcome
    return result
