"""pgjobs/mcp/registry.py and `jobctl mcp`: settings, validation, auth_ref tenancy, pings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from helpers import invoke
from test_credentials import add

import pgjobs.mcp.registry as api
from pgjobs.cli.mcp_commands import mcp as mcp_cli
from pgjobs.db.errors import InvalidInput, UniqueViolation, UnknownTenant
from pgjobs.db.models import AuthType, McpServerStatus
from pgjobs.vault.credentials import CredentialNotFound


def test_create_list_get_find(tenant: uuid.UUID) -> None:
    token = add(tenant)
    plain = api.create_mcp_server(
        tenant,
        label="plain",
        base_url="https://plain.example/mcp",
        metadata={"headers": {"X-Org": "acme"}, "notes": "hello"},
    )
    assert plain.auth_type is AuthType.NONE and plain.auth_ref is None
    assert plain.metadata.headers == {"X-Org": "acme"} and plain.metadata.notes == "hello"
    assert plain.status is McpServerStatus.UNKNOWN and plain.last_ping_at is None
    authed = api.create_mcp_server(
        tenant, label="authed", base_url="https://a.example", auth_type="token", auth_ref=token.id
    )
    assert authed.auth_ref == token.id
    assert [s.label for s in api.list_mcp_servers(tenant)] == ["authed", "plain"]
    assert api.get_mcp_server(tenant, plain.id) == plain
    assert api.find_mcp_server(tenant, "authed") == authed


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"metadata": {"headers": {"Authorization": "Bearer x"}}}, "metadata.headers"),
        ({"metadata": {"headers": {"Bad Name": "x"}}}, "metadata.headers"),
        ({"metadata": {"headers": {"X-Ok": "a\r\nInjected: 1"}}}, "metadata.headers"),
        ({"metadata": {"unknown": 1}}, "metadata.unknown"),
        ({"base_url": "ftp://files.example"}, "base_url"),
        ({"base_url": "https://user:hunter2@mcp.example"}, "base_url"),
        ({"auth_type": "token"}, "value"),
        ({"auth_type": "none", "auth_ref": uuid.uuid4()}, "value"),
        ({"label": ""}, "label"),
    ],
)
def test_invalid_settings(tenant: uuid.UUID, settings: dict[str, object], field: str) -> None:
    given: dict[str, object] = {"label": "s", "base_url": "https://mcp.example"} | settings
    with pytest.raises(InvalidInput) as info:
        api.create_mcp_server(tenant, **given)  # type: ignore[arg-type]
    assert field in info.value.fields or field == "value"
    assert "hunter2" not in str(info.value)


def test_duplicate_label_and_unknown_tenant(tenant: uuid.UUID) -> None:
    api.create_mcp_server(tenant, label="same", base_url="https://mcp.example")
    with pytest.raises(api.McpServerExists) as info:
        api.create_mcp_server(tenant, label="same", base_url="https://other.example")
    assert isinstance(info.value, UniqueViolation)
    with pytest.raises(UnknownTenant):
        api.create_mcp_server(uuid.uuid4(), label="x", base_url="https://mcp.example")


def test_update(tenant: uuid.UUID) -> None:
    token = add(tenant)
    server = api.create_mcp_server(tenant, label="s", base_url="https://mcp.example")
    updated = api.update_mcp_server(
        tenant, server.id, label="renamed", auth_type="token", auth_ref=token.id
    )
    assert (updated.label, updated.auth_type, updated.auth_ref) == (
        "renamed",
        AuthType.TOKEN,
        token.id,
    )
    assert updated.base_url == server.base_url
    headers = api.update_mcp_server(tenant, server.id, metadata={"headers": {"X-A": "1"}})
    assert headers.metadata.headers == {"X-A": "1"} and headers.auth_ref == token.id
    cleared = api.update_mcp_server(tenant, server.id, auth_type="none")
    assert cleared.auth_type is AuthType.NONE and cleared.auth_ref is None
    with pytest.raises(InvalidInput):
        api.update_mcp_server(tenant, server.id, auth_type="basic")
    with pytest.raises(InvalidInput, match="metadata"):
        api.update_mcp_server(tenant, server.id, metadata={"headers": {"Cookie": "a=b"}})
    with pytest.raises(InvalidInput, match="status"):
        api.update_mcp_server(tenant, server.id, status="online")


def test_record_ping(tenant: uuid.UUID) -> None:
    server = api.create_mcp_server(tenant, label="s", base_url="https://mcp.example")
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    pinged = api.record_ping(tenant, server.id, "online", at)
    assert pinged.status is McpServerStatus.ONLINE and pinged.last_ping_at == at
    assert api.record_ping(tenant, server.id, McpServerStatus.OFFLINE).last_ping_at is not None
    with pytest.raises(InvalidInput, match="status"):
        api.record_ping(tenant, server.id, "sleeping")


def test_delete(tenant: uuid.UUID) -> None:
    server = api.create_mcp_server(tenant, label="s", base_url="https://mcp.example")
    api.delete_mcp_server(tenant, server.id)
    with pytest.raises(api.McpServerNotFound):
        api.get_mcp_server(tenant, server.id)
    with pytest.raises(api.McpServerNotFound):
        api.delete_mcp_server(tenant, server.id)


# --- Tenancy ------------------------------------------------------------------------------------


def test_another_tenants_credential_cannot_be_referenced(
    tenant: uuid.UUID, other_tenant: uuid.UUID
) -> None:
    theirs = add(other_tenant)
    for ref in (theirs.id, uuid.uuid4()):
        with pytest.raises(CredentialNotFound):
            api.create_mcp_server(
                tenant, label="s", base_url="https://mcp.example", auth_type="token", auth_ref=ref
            )
    server = api.create_mcp_server(tenant, label="s", base_url="https://mcp.example")
    with pytest.raises(CredentialNotFound):
        api.update_mcp_server(tenant, server.id, auth_type="token", auth_ref=theirs.id)
    assert api.get_mcp_server(tenant, server.id) == server


def test_the_foreign_key_is_the_backstop(
    tenant: uuid.UUID, other_tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the application check, the composite FK refuses, with the same typed error."""
    theirs = add(other_tenant)
    monkeypatch.setattr(api, "_check_auth_ref", lambda *args: None)
    with pytest.raises(CredentialNotFound):
        api.create_mcp_server(
            tenant, label="s", base_url="https://mcp.example", auth_type="token", auth_ref=theirs.id
        )


def test_another_tenants_server_is_missing(tenant: uuid.UUID, other_tenant: uuid.UUID) -> None:
    theirs = api.create_mcp_server(other_tenant, label="theirs", base_url="https://mcp.example")
    attempts = [
        lambda: api.get_mcp_server(tenant, theirs.id),
        lambda: api.find_mcp_server(tenant, "theirs"),
        lambda: api.update_mcp_server(tenant, theirs.id, label="mine"),
        lambda: api.record_ping(tenant, theirs.id, "online"),
        lambda: api.delete_mcp_server(tenant, theirs.id),
    ]
    for attempt in attempts:
        with pytest.raises(api.McpServerNotFound):
            attempt()
    assert api.list_mcp_servers(tenant) == []
    assert api.get_mcp_server(other_tenant, theirs.id) == theirs


# --- CLI ----------------------------------------------------------------------------------------


def test_cli(tenant: uuid.UUID) -> None:
    t = str(tenant)
    add(tenant, "mcp", provider="custom")
    added = invoke(
        mcp_cli,
        *("add", "--tenant", t, "--label", "local", "--url", "http://127.0.0.1:9/mcp"),
        *("--auth-type", "token", "--auth-ref", "custom/mcp", "--header", "X-Org: acme"),
    )
    assert added.exit_code == 0, added.output
    listed = invoke(mcp_cli, "list", "--tenant", t)
    assert "local" in listed.output and "X-Org" in listed.output and "token" in listed.output
    updated = invoke(
        mcp_cli, "update", "--tenant", t, "local", "--label", "remote", "--notes", "moved"
    )
    assert updated.exit_code == 0, updated.output
    (server,) = api.list_mcp_servers(tenant)
    assert (server.label, server.metadata.notes, server.metadata.headers) == (
        "remote",
        "moved",
        {"X-Org": "acme"},
    )
    invoke(mcp_cli, "update", "--tenant", t, "remote", "--clear-headers", "--auth-type", "none")
    assert api.get_mcp_server(tenant, server.id).metadata.headers == {}
    bad = invoke(mcp_cli, "update", "--tenant", t, "remote", "--header", "Authorization: x")
    assert bad.exit_code == 1 and "reserved" in bad.output
    deleted = invoke(mcp_cli, "delete", "--tenant", t, str(server.id), "--yes")
    assert deleted.exit_code == 0 and api.list_mcp_servers(tenant) == []
    missing = invoke(mcp_cli, "delete", "--tenant", t, "remote", "--yes")
    assert missing.exit_code == 1 and "not found" in missing.output
