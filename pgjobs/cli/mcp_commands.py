"""`jobctl mcp ...`: a tenant's MCP servers. Authentication is a credential (``--auth-ref``),
never a header or a URL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pgjobs.cli.common import echo_result, echo_rows, json_option, tenant_id, tenant_option
from pgjobs.cli.credential_commands import resolve_credential
from pgjobs.cli.groups import JobsGroup
from pgjobs.db.models import AuthType
from pgjobs.db.schemas.mcp_server import McpServerRead
from pgjobs.mcp import registry as api

F = TypeVar("F", bound=Callable[..., Any])

COLUMNS = {
    "ID": lambda s: s.id,
    "LABEL": lambda s: s.label,
    "URL": lambda s: s.base_url,
    "AUTH": lambda s: s.auth_type.value,
    "AUTH_REF": lambda s: s.auth_ref,
    "HEADERS": lambda s: ", ".join(s.metadata.headers) or None,
    "STATUS": lambda s: s.status.value,
    "LAST_PING": lambda s: s.last_ping_at,
}


def _headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str] | None:
    """``--header 'Name: value'`` options as a dict (None when none given)."""
    if not values:
        return None
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep:
            raise click.BadParameter("use 'Name: value'", ctx=ctx, param=param)
        headers[name.strip()] = content.strip()
    return headers


def server_options(*, adding: bool) -> Callable[[F], F]:
    """The settings shared by ``add`` and ``update`` (required ones only when adding)."""

    def decorate(func: F) -> F:
        for option in reversed(
            [
                click.option("--label", required=adding),
                click.option("--url", "base_url", required=adding, help="The server's base URL."),
                click.option(
                    "--auth-type",
                    type=click.Choice([a.value for a in AuthType]),
                    default=AuthType.NONE.value if adding else None,
                ),
                click.option("--auth-ref", help="Credential (id or provider/name) for auth."),
                click.option(
                    "--header",
                    "headers",
                    multiple=True,
                    callback=_headers,
                    help="'Name: value', repeatable; replaces the custom headers.",
                ),
                click.option("--notes", help="Free-form notes."),
            ]
        ):
            func = option(func)
        return func

    return decorate


def resolve_server(tenant: uuid.UUID, ref: str) -> McpServerRead:
    """SERVER as given on the command line: an id, or a label."""
    try:
        return api.get_mcp_server(tenant, uuid.UUID(ref))
    except ValueError:
        return api.find_mcp_server(tenant, ref)


def _auth_ref(owner: uuid.UUID, ref: str | None) -> dict[str, Any]:
    return {} if ref is None else {"auth_ref": resolve_credential(owner, ref).id}


@click.group(cls=JobsGroup)
def mcp() -> None:
    """MCP servers: where to call, how to authenticate, last ping."""


@mcp.command("add")
@tenant_option
@server_options(adding=True)
@json_option
def mcp_add(
    tenant: str,
    label: str,
    base_url: str,
    auth_type: str,
    auth_ref: str | None,
    headers: dict[str, str] | None,
    notes: str | None,
    as_json: bool,
) -> None:
    """Register an MCP server."""
    owner = tenant_id(tenant)
    server = api.create_mcp_server(
        owner,
        label=label,
        base_url=base_url,
        auth_type=auth_type,
        metadata={"headers": headers or {}, "notes": notes},
        **_auth_ref(owner, auth_ref),
    )
    echo_result(
        as_json, server.model_dump(mode="json"), f"created MCP server {server.label} ({server.id})"
    )


@mcp.command("list")
@tenant_option
@json_option
def mcp_list(tenant: str, as_json: bool) -> None:
    """List the tenant's MCP servers."""
    echo_rows(api.list_mcp_servers(tenant_id(tenant)), COLUMNS, as_json)


@mcp.command("update")
@tenant_option
@click.argument("server")
@server_options(adding=False)
@click.option("--clear-headers", is_flag=True, help="Remove every custom header.")
@json_option
def mcp_update(
    tenant: str,
    server: str,
    headers: dict[str, str] | None,
    notes: str | None,
    clear_headers: bool,
    auth_ref: str | None,
    as_json: bool,
    **settings: str | None,
) -> None:
    """Change an MCP server's settings (SERVER: id or label)."""
    owner = tenant_id(tenant)
    current = resolve_server(owner, server)
    changes: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
    changes.update(_auth_ref(owner, auth_ref))
    if headers is not None or notes is not None or clear_headers:
        metadata = current.metadata.model_dump()
        metadata["headers"] = {} if clear_headers else (headers or metadata["headers"])
        metadata["notes"] = notes if notes is not None else metadata["notes"]
        changes["metadata"] = metadata
    updated = api.update_mcp_server(owner, current.id, **changes)
    echo_result(
        as_json,
        updated.model_dump(mode="json"),
        f"updated MCP server {updated.label} ({updated.id})",
    )


@mcp.command("delete")
@tenant_option
@click.argument("server")
@click.confirmation_option(prompt="Delete this MCP server?")
@json_option
def mcp_delete(tenant: str, server: str, as_json: bool) -> None:
    """Delete an MCP server (SERVER: id or label)."""
    owner = tenant_id(tenant)
    found = resolve_server(owner, server)
    api.delete_mcp_server(owner, found.id)
    echo_result(
        as_json, {"deleted": str(found.id)}, f"deleted MCP server {found.label} ({found.id})"
    )
