"""Hostile input to the tenant, credential and MCP server APIs (pgjobs/db/tenants.py,
pgjobs/vault/credentials.py, pgjobs/mcp/registry.py): non-UUID ids, NUL, lone surrogates, huge
numbers and far-off times answer with their typed errors and write nothing, as the producer's do."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import add
from hostile import (
    PROPERTY,
    REGISTRY_TABLES,
    Arguments,
    call_checked,
    far_datetimes,
    garbage,
    hostile_text,
    non_uuids,
    numbers,
    row_counts,
)
from hypothesis import given
from hypothesis import strategies as st

from pgjobs.db import tenants
from pgjobs.db.errors import InvalidInput, NotFound
from pgjobs.db.schemas.credential import CredentialRead
from pgjobs.db.schemas.mcp_server import McpServerRead
from pgjobs.db.tenants import TenantExists
from pgjobs.mcp import registry as mcp_servers
from pgjobs.mcp.registry import McpServerExists
from pgjobs.vault import credentials
from pgjobs.vault.credentials import CredentialExists, CredentialInUse

DOCUMENTED = (
    InvalidInput,
    NotFound,
    TenantExists,
    CredentialExists,
    McpServerExists,
    CredentialInUse,
)
"""The typed errors these APIs raise on purpose (the "exists" ones are UniqueViolations)."""

HOSTILE_IDS = st.one_of(st.uuids(), non_uuids)
HOSTILE_VALUES = hostile_text | garbage | numbers


@pytest.fixture
def credential(tenant: uuid.UUID) -> CredentialRead:
    return add(tenant)


@pytest.fixture
def server(tenant: uuid.UUID) -> McpServerRead:
    return mcp_servers.create_mcp_server(tenant, label="srv", base_url="https://srv.example")


def checked(call: Any) -> object:
    return call_checked(call, DOCUMENTED, REGISTRY_TABLES)


@PROPERTY
@given(data=st.data())
def test_tenant_api_answers_hostile_input(tenant: uuid.UUID, data: st.DataObject) -> None:
    args = Arguments(data, "ref", "name", "slug")
    ref = args.draw(
        "ref",
        st.sampled_from([tenant, str(tenant), tenants.get_tenant(tenant).slug]),
        HOSTILE_IDS | HOSTILE_VALUES,
    )
    name = args.draw("name", st.text("abc ", min_size=1, max_size=9), HOSTILE_VALUES)
    slug = args.draw("slug", st.uuids().map(lambda u: f"h-{u.hex[:12]}"), HOSTILE_VALUES)
    if data.draw(st.booleans()):
        checked(lambda: tenants.get_tenant(ref))
    else:
        checked(lambda: tenants.create_tenant(name=name, slug=slug))


@PROPERTY
@given(data=st.data())
def test_credential_api_answers_hostile_input(
    tenant: uuid.UUID, credential: CredentialRead, data: st.DataObject
) -> None:
    args = Arguments(data, "tenant", "id", "provider", "name", "secret", "status", "at")
    owner = args.draw("tenant", st.just(tenant), HOSTILE_IDS)
    credential_id = args.draw("id", st.just(credential.id), HOSTILE_IDS)
    provider = args.draw("provider", st.sampled_from(["openai", "custom"]), HOSTILE_VALUES)
    name = args.draw("name", st.text("abc", min_size=1, max_size=8), HOSTILE_VALUES)
    secret = args.draw("secret", st.just("sk-0123456789"), HOSTILE_VALUES)
    status = args.draw("status", st.sampled_from(["valid", "invalid"]), HOSTILE_VALUES)
    at = args.draw("at", st.none(), far_datetimes | garbage)
    calls = {
        "create": lambda: credentials.create_credential(
            owner, provider=provider, name=name, secret=secret
        ),
        "update_secret": lambda: credentials.update_secret(owner, credential_id, secret),
        "rename": lambda: credentials.rename_credential(owner, credential_id, name),
        "mark": lambda: credentials.mark_validated(owner, credential_id, status, at=at),
        "get": lambda: credentials.get_credential(owner, credential_id),
        "find": lambda: credentials.find_credential(owner, provider, name),
        "list": lambda: credentials.list_credentials(owner, provider=provider),
        "load": lambda: credentials.load_encrypted(owner, credential_id),
        "delete": lambda: credentials.delete_credential(owner, credential_id),
    }
    checked(calls[data.draw(st.sampled_from(sorted(calls)))])


@PROPERTY
@given(data=st.data())
def test_mcp_server_api_answers_hostile_input(
    tenant: uuid.UUID, server: McpServerRead, data: st.DataObject
) -> None:
    args = Arguments(data, "tenant", "id", "label", "url", "auth", "ref", "meta", "status", "at")
    owner = args.draw("tenant", st.just(tenant), HOSTILE_IDS)
    server_id = args.draw("id", st.just(server.id), HOSTILE_IDS)
    label = args.draw("label", st.text("abc", min_size=1, max_size=8), HOSTILE_VALUES)
    url = args.draw("url", st.just("https://x.example/mcp"), HOSTILE_VALUES)
    auth_type = args.draw("auth", st.just("none"), HOSTILE_VALUES)
    auth_ref = args.draw("ref", st.none(), HOSTILE_IDS)
    metadata = args.draw(
        "meta",
        st.none() | st.just({"headers": {"X-Org": "acme"}, "notes": "hi"}),
        st.one_of(
            st.builds(lambda v: {"notes": v}, HOSTILE_VALUES),
            st.builds(lambda k, v: {"headers": {k: v}}, hostile_text, HOSTILE_VALUES),
            garbage,
        ),
    )
    status = args.draw("status", st.sampled_from(["online", "offline"]), HOSTILE_VALUES)
    at = args.draw("at", st.none(), far_datetimes | garbage)
    settings = {"label": label, "base_url": url, "auth_type": auth_type, "auth_ref": auth_ref}
    calls = {
        "create": lambda: mcp_servers.create_mcp_server(owner, metadata=metadata, **settings),
        "update": lambda: mcp_servers.update_mcp_server(
            owner, server_id, label=label, base_url=url
        ),
        "update_meta": lambda: mcp_servers.update_mcp_server(owner, server_id, metadata=metadata),
        "ping": lambda: mcp_servers.record_ping(owner, server_id, status, at),
        "get": lambda: mcp_servers.get_mcp_server(owner, server_id),
        "find": lambda: mcp_servers.find_mcp_server(owner, label),
        "list": lambda: mcp_servers.list_mcp_servers(owner),
        "delete": lambda: mcp_servers.delete_mcp_server(owner, server_id),
    }
    checked(calls[data.draw(st.sampled_from(sorted(calls)))])


# --- regressions --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["not-a-uuid", "", 42, None, b"\x00" * 16])
def test_non_uuid_ids_are_invalid_input(
    tenant: uuid.UUID, credential: CredentialRead, server: McpServerRead, bad: object
) -> None:
    before = row_counts(REGISTRY_TABLES)
    calls = [
        lambda: credentials.get_credential(tenant, bad),
        lambda: credentials.get_credential(bad, credential.id),
        lambda: credentials.list_credentials(bad),
        lambda: credentials.delete_credential(tenant, bad),
        lambda: mcp_servers.get_mcp_server(tenant, bad),
        lambda: mcp_servers.list_mcp_servers(bad),
        lambda: mcp_servers.record_ping(tenant, bad, "online"),
    ]
    for call in calls:
        with pytest.raises(InvalidInput, match="must be a UUID"):
            call()
    assert row_counts(REGISTRY_TABLES) == before


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_text_postgresql_cannot_store_is_invalid_input(
    tenant: uuid.UUID, server: McpServerRead, text: str
) -> None:
    before = row_counts(REGISTRY_TABLES)
    with pytest.raises(InvalidInput, match="name"):
        tenants.create_tenant(name=text, slug=f"h-{uuid.uuid4().hex[:8]}")
    with pytest.raises(InvalidInput, match="secret"):
        credentials.create_credential(tenant, provider="openai", name="x", secret=text)
    with pytest.raises(InvalidInput, match="notes"):
        mcp_servers.update_mcp_server(tenant, server.id, metadata={"notes": text})
    with pytest.raises(InvalidInput, match="label"):
        mcp_servers.find_mcp_server(tenant, text)
    with pytest.raises(tenants.UnknownTenant):
        tenants.get_tenant(text)
    assert row_counts(REGISTRY_TABLES) == before


def test_far_future_times_are_refused(
    tenant: uuid.UUID, credential: CredentialRead, server: McpServerRead
) -> None:
    from datetime import datetime, timedelta, timezone

    late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(InvalidInput, match="at"):
        credentials.mark_validated(tenant, credential.id, "valid", at=late)
    with pytest.raises(InvalidInput, match="at"):
        mcp_servers.record_ping(tenant, server.id, "online", late)
    assert credentials.get_credential(tenant, credential.id).last_validated_at is None
    assert mcp_servers.get_mcp_server(tenant, server.id).last_ping_at is None


def test_binary_standard_input_for_a_secret_is_a_one_line_error(tenant: uuid.UUID) -> None:
    from click.testing import CliRunner

    from pgjobs.cli.credential_commands import credentials as credentials_cli

    before = row_counts(REGISTRY_TABLES)
    result = CliRunner().invoke(
        credentials_cli,
        ["add", "--tenant", str(tenant), "--provider", "openai"],
        input=b"sk-\xff\xfe-key",
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        "Error: standard input is not UTF-8 text (byte 3)"
    ]
    assert row_counts(REGISTRY_TABLES) == before
