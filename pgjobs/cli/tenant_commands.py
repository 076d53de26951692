"""`jobctl tenants create|list|show|set-quota|remove-quota|set-weight`."""

from __future__ import annotations

import click

from pgjobs.cli.common import connect, echo_result, echo_rows, json_option
from pgjobs.cli.groups import JobsGroup
from pgjobs.db.tenants import create_tenant, get_tenant, list_tenants
from pgjobs.producer.quotas import quota_usage, remove_quota, set_quota
from pgjobs.producer.shares import set_share_weight, share_weight
from pgjobs.producer.user_modules import import_user_modules


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


@tenants.command("show")
@click.argument("tenant")
@json_option
def tenants_show(tenant: str, as_json: bool) -> None:
    """Show a tenant (slug or id) with its quotas and today's counts, and its weight in fair
    queues."""
    connect()
    found = get_tenant(tenant)
    usage = quota_usage(found.id)
    weight = share_weight(found.id)
    data = {
        **found.model_dump(mode="json"),
        "share_weight": weight,
        "quotas": [u.model_dump(mode="json") for u in usage],
    }
    lines = [f"{found.slug} ({found.id}) {found.name}", f"weight in fair queues: {weight}"]
    lines += [
        f"quota {u.job_type or 'all job types'}: {u.used:,} of {u.per_day:,} today "
        f"(resets {u.resets_at:%Y-%m-%d %H:%M} UTC)"
        for u in usage
    ] or ["no quotas"]
    echo_result(as_json, data, "\n".join(lines))


@tenants.command("set-quota")
@click.argument("tenant")
@click.option("--per-day", type=int, required=True, help="Jobs the tenant may create per UTC day.")
@click.option("--job-type", help="Only this job type's jobs (default: all together).")
@json_option
def tenants_set_quota(tenant: str, per_day: int, job_type: str | None, as_json: bool) -> None:
    """Set how many jobs a tenant may create per UTC day (all types, or one)."""
    connect()
    if job_type is not None:
        import_user_modules()  # the application's job types
    usage = set_quota(get_tenant(tenant).id, per_day, job_type=job_type)
    echo_result(
        as_json,
        usage.model_dump(mode="json"),
        f"quota {usage.job_type or 'all job types'}: {usage.per_day:,} per day "
        f"({usage.used:,} used today)",
    )


@tenants.command("remove-quota")
@click.argument("tenant")
@click.option("--job-type", help="This job type's quota (default: the one over all types).")
@json_option
def tenants_remove_quota(tenant: str, job_type: str | None, as_json: bool) -> None:
    """Remove a tenant's quota (all types, or one type's)."""
    connect()
    removed = remove_quota(get_tenant(tenant).id, job_type=job_type)
    echo_result(
        as_json, {"removed": removed}, "quota removed" if removed else "there was no such quota"
    )


@tenants.command("set-weight")
@click.argument("tenant")
@click.argument("weight", type=int)
@json_option
def tenants_set_weight(tenant: str, weight: int, as_json: bool) -> None:
    """Set a tenant's weight in fair queues (1 to 100, default 1): its share of jobs in flight
    is JOBS_FAIR_SHARE_IN_FLIGHT times WEIGHT (docs/limits.md)."""
    connect()
    found = get_tenant(tenant)
    value = set_share_weight(found.id, weight)
    echo_result(as_json, {"share_weight": value}, f"{found.slug}: weight {value} in fair queues")
