"""`jobctl tenants create|list`."""

from __future__ import annotations

import click

from pgjobs.cli.common import connect, echo_result, echo_rows, json_option
from pgjobs.cli.groups import JobsGroup
from pgjobs.db.tenants import create_tenant, list_tenants


@click.group(cls=JobsGroup)
def tenants() -> None:
    """Tenants: the unit of isolation every credential, server and job belongs to."""


@tenants.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
@json_option
def tenants_create(slug: str, name: str | None, as_json: bool) -> None:
    """Create the tenant SLUG (lowercase letters, digits and dashes)."""
    connect()
    tenant = create_tenant(name=name or slug, slug=slug)
    echo_result(
        as_json, tenant.model_dump(mode="json"), f"created tenant {tenant.slug} ({tenant.id})"
    )


@tenants.command("list")
@json_option
def tenants_list(as_json: bool) -> None:
    """List every tenant."""
    connect()
    columns = {"ID": lambda t: t.id, "SLUG": lambda t: t.slug, "NAME": lambda t: t.name}
    echo_rows(list_tenants(), columns, as_json)
