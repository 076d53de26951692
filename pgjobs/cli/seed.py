"""Initial data: sample tenants for development, and provider keys imported from the environment.

Both are idempotent: rows are looked up by their natural keys (tenant slug, credential
provider/name, server label) and only missing ones are created.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pgjobs.db.errors import UniqueViolation
from pgjobs.db.models import AuthType, Provider
from pgjobs.db.schemas.tenant import TenantRead
from pgjobs.db.tenants import TenantExists, create_tenant, get_tenant
from pgjobs.logs import get_logger
from pgjobs.mcp.registry import McpServerExists, create_mcp_server, list_mcp_servers
from pgjobs.vault.credentials import (
    CredentialExists,
    create_credential,
    find_credential,
    list_credentials,
    update_secret,
)

log = get_logger(__name__)

# --- Environment import ("seed 000") ----------------------------------------------------------

ENV_CREDENTIALS: dict[str, Provider] = {
    "OPENAI_API_KEY": Provider.OPENAI,
    "ESPN_API_KEY": Provider.ESPN,
    "CFBD_API_KEY": Provider.CFBD,
}
"""Variables holding one provider's key; imported under the name :data:`ENV_NAME`."""
ENV_NAME = "default"
CUSTOM_ENV = re.compile(r"CUSTOM_API_KEY_([A-Z0-9][A-Z0-9_]{0,60})")
"""``CUSTOM_API_KEY_<NAME>``: a ``custom`` credential named ``<name>`` (lowercase, '_' -> '-')."""


@dataclass
class EnvImport:
    """What :func:`import_env_credentials` did, by credential (``provider/name``)."""

    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def env_credentials(environ: Mapping[str, str]) -> list[tuple[str, Provider, str]]:
    """(variable, provider, name) for every non-empty provider key in ``environ``."""
    found: list[tuple[str, Provider, str]] = []
    for variable in sorted(environ):
        if not environ[variable].strip():
            continue
        if variable in ENV_CREDENTIALS:
            found.append((variable, ENV_CREDENTIALS[variable], ENV_NAME))
        elif match := CUSTOM_ENV.fullmatch(variable):
            found.append((variable, Provider.CUSTOM, match[1].lower().replace("_", "-")))
    return found


def import_env_credentials(
    tenant_id: uuid.UUID, environ: Mapping[str, str] | None = None, *, replace: bool = False
) -> EnvImport:
    """Record provider keys held in environment variables as the tenant's credentials.

    New ones get status ``unknown`` (an operator re-validates them). Existing ones are kept,
    unless ``replace``: then their secret is overwritten (and their status reset). Running it
    twice changes nothing the second time.
    """
    environ = os.environ if environ is None else environ
    outcome = EnvImport()
    for variable, provider, name in env_credentials(environ):
        label = f"{provider.value}/{name}"
        try:
            create_credential(tenant_id, provider=provider, name=name, secret=environ[variable])
            outcome.created.append(label)
        except CredentialExists:
            if replace:
                existing = find_credential(tenant_id, provider, name)
                update_secret(tenant_id, existing.id, environ[variable])
                outcome.replaced.append(label)
            else:
                outcome.kept.append(label)
    log.info(
        "credentials.env_imported",
        tenant_id=str(tenant_id),
        created=len(outcome.created),
        replaced=len(outcome.replaced),
        kept=len(outcome.kept),
    )
    return outcome


# --- Sample data ------------------------------------------------------------------------------

_SAMPLE_TENANTS = {"acme": "Acme Corp", "globex": "Globex Corporation"}
_SAMPLE_CREDENTIALS = [
    (Provider.OPENAI, "default", "sk-FAKE-{slug}-not-a-real-key-0000"),
    (Provider.CFBD, "default", "FAKE-cfbd-{slug}-not-a-real-key"),
    (Provider.CUSTOM, "mcp-token", "FAKE-mcp-token-{slug}-0000"),
]


def _created(make: Callable[[], Any], exists: type[UniqueViolation]) -> int:
    """1 if ``make`` created its row, 0 if the row was already there."""
    try:
        make()
    except exists:
        return 0
    return 1


def _seed_mcp_server(tenant: TenantRead) -> int:
    """acme: token auth through its ``custom/mcp-token`` credential; globex: no auth, headers."""
    if tenant.slug == "acme":
        token = find_credential(tenant.id, Provider.CUSTOM, "mcp-token")
        settings: dict[str, Any] = {"auth_type": AuthType.TOKEN, "auth_ref": token.id}
    else:
        settings = {"metadata": {"headers": {"X-Org": tenant.slug}, "notes": "sample server"}}
    make = partial(
        create_mcp_server,
        tenant.id,
        label="local-mcp",
        base_url="http://127.0.0.1:8765/mcp",
        **settings,
    )
    return _created(make, McpServerExists)


def _seed_jobs(tenants: list[TenantRead]) -> int:
    """Per tenant: a credential_check per checkable credential, an mcp_ping per server, and a
    scheduled_preview due tomorrow (it waits, pending, in PostgreSQL). Idempotency keys make a
    second seed enqueue nothing."""
    from pgjobs.producer import JobRequest, enqueue_many

    requests: list[JobRequest] = []
    for tenant in tenants:
        cfbd = None
        for credential in list_credentials(tenant.id):
            if credential.provider is Provider.CUSTOM:  # no validation endpoint to call
                continue
            key = f"seed:credential_check:{credential.id}"
            check = {"credential_id": str(credential.id)}
            requests.append(JobRequest("credential_check", check, tenant.id, key))
            if credential.provider is Provider.CFBD:
                cfbd = credential
        for server in list_mcp_servers(tenant.id):
            key = f"seed:mcp_ping:{server.id}"
            requests.append(JobRequest("mcp_ping", {"server_id": str(server.id)}, tenant.id, key))
        if cfbd is not None:
            preview = {"credential_id": str(cfbd.id), "season": 2026, "team": "Navy"}
            requests.append(
                JobRequest("scheduled_preview", preview, tenant.id, "seed:preview", delay=86400)
            )
    return sum(job.created for job in enqueue_many(requests))


def seed_sample_data() -> dict[str, int]:
    """Sample tenants, fake credentials and MCP servers; returns the rows created per table
    (all 0 when run again)."""
    counts = {"tenants": 0, "credentials": 0, "mcp_servers": 0}
    tenants: list[TenantRead] = []
    for slug, name in _SAMPLE_TENANTS.items():
        counts["tenants"] += _created(partial(create_tenant, name=name, slug=slug), TenantExists)
        tenant = get_tenant(slug)
        tenants.append(tenant)
        for provider, cred_name, secret in _SAMPLE_CREDENTIALS:
            make = partial(
                create_credential,
                tenant.id,
                provider=provider,
                name=cred_name,
                secret=secret.format(slug=slug),
            )
            counts["credentials"] += _created(make, CredentialExists)
        counts["mcp_servers"] += _seed_mcp_server(tenant)
    counts["jobs"] = _seed_jobs(tenants)
    log.info("seed.done", **counts)
    return counts
