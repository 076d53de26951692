"""pgjobs/db/tenants.py, `jobctl tenants`, and the idempotent sample data of pgjobs/db/seed.py."""

from __future__ import annotations

import uuid

import pytest
from helpers import KEY_A, invoke, set_keys

from pgjobs.cli.seed import seed_sample_data
from pgjobs.cli.tenant_commands import tenants as tenants_cli
from pgjobs.db.errors import InvalidInput, NotFound, UniqueViolation, UnknownTenant
from pgjobs.db.models import AuthType, JobStatus
from pgjobs.db.tenants import TenantExists, create_tenant, get_tenant, list_tenants
from pgjobs.mcp.registry import list_mcp_servers
from pgjobs.producer import list_jobs
from pgjobs.vault.credentials import find_credential, list_credentials


def test_create_and_get_by_id_or_slug(use_session_db: str, tenant_slug: str) -> None:
    created = create_tenant(name="Example Inc", slug=tenant_slug)
    assert (created.name, created.slug) == ("Example Inc", tenant_slug)
    assert get_tenant(created.id) == created
    assert get_tenant(tenant_slug) == created
    assert get_tenant(str(created.id)) == created
    assert created in list_tenants()


def test_duplicate_slug(use_session_db: str, tenant_slug: str) -> None:
    create_tenant(name="one", slug=tenant_slug)
    with pytest.raises(TenantExists, match="already exists") as info:
        create_tenant(name="two", slug=tenant_slug)
    assert isinstance(info.value, UniqueViolation)


def test_invalid_input(use_session_db: str) -> None:
    with pytest.raises(InvalidInput) as info:
        create_tenant(name="", slug="Not A Slug")
    assert set(info.value.fields) == {"name", "slug"}


def test_unknown_tenant(use_session_db: str) -> None:
    for ref in ("no-such-tenant", str(uuid.uuid4())):
        with pytest.raises(UnknownTenant) as info:
            get_tenant(ref)
        assert isinstance(info.value, NotFound)
    with pytest.raises(UnknownTenant):
        get_tenant(uuid.uuid4())
    with pytest.raises(UnknownTenant):
        get_tenant("Not A Slug")  # neither an id nor a slug: no query


@pytest.mark.parametrize("bad", [42, None, b"acme", 1.5])
def test_get_tenant_takes_a_uuid_or_a_string(use_session_db: str, bad: object) -> None:
    with pytest.raises(InvalidInput, match="tenant: must be a UUID or a slug"):
        get_tenant(bad)  # type: ignore[arg-type]


def test_cli(use_session_db: str, tenant_slug: str) -> None:
    created = invoke(tenants_cli, "create", tenant_slug, "--name", "Example")
    assert created.exit_code == 0 and f"created tenant {tenant_slug}" in created.output
    assert tenant_slug in invoke(tenants_cli, "list").output
    assert f'"slug": "{tenant_slug}"' in invoke(tenants_cli, "list", "--json").output
    again = invoke(tenants_cli, "create", tenant_slug)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = invoke(tenants_cli, "create", "Bad Slug")
    assert bad.exit_code == 1 and "invalid input: slug" in bad.output


# Per tenant: 2 credential checks (openai, cfbd), 1 MCP ping, 1 scheduled preview.
SEEDED_JOBS = 8


def test_seed_is_idempotent(
    use_fresh_db: str, monkeypatch: pytest.MonkeyPatch, redis_namespace: str, redis_client: object
) -> None:
    from pgjobs.producer import broker

    monkeypatch.setenv("JOBS_REDIS_NAMESPACE", redis_namespace)
    set_keys(monkeypatch, f"ka:{KEY_A}")
    broker.set_broker(None)
    first = seed_sample_data()
    assert first == {"tenants": 2, "credentials": 6, "mcp_servers": 2, "jobs": SEEDED_JOBS}
    assert seed_sample_data() == {"tenants": 0, "credentials": 0, "mcp_servers": 0, "jobs": 0}
    acme, globex = get_tenant("acme"), get_tenant("globex")
    assert len(list_credentials(acme.id)) == len(list_credentials(globex.id)) == 3
    (acme_server,) = list_mcp_servers(acme.id)
    assert acme_server.auth_type is AuthType.TOKEN
    assert acme_server.auth_ref == find_credential(acme.id, "custom", "mcp-token").id
    (globex_server,) = list_mcp_servers(globex.id)
    assert globex_server.auth_type is AuthType.NONE
    assert globex_server.metadata.headers == {"X-Org": "globex"}
    scheduled = list_jobs(acme.id, type="scheduled_preview").items
    assert [j.status for j in scheduled] == [JobStatus.PENDING]  # due tomorrow: waits in PG
    broker.set_broker(None)
