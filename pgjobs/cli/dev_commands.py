"""`jobctl dev up|down|status` (embedded servers) and `jobctl health`."""

from __future__ import annotations

import sys

import click
from pydantic import SecretStr

from pgjobs.services import embedded
from pgjobs.services.health import check_all
from pgjobs.services.local import ensure_local_services
from pgjobs.settings import env_name, get_settings, settings_reference
from pgjobs.vault.redaction import redact_text


@click.group()
def dev() -> None:
    """Embedded PostgreSQL and Redis for development (when DATABASE_URL/REDIS_URL are unset)."""


@dev.command("up")
def dev_up() -> None:
    """Start (or reuse) the embedded servers and print their URLs."""
    database_url, redis_url = ensure_local_services(schema=True)
    click.echo(f"DATABASE_URL={database_url}")
    click.echo(f"REDIS_URL={redis_url}")


@dev.command("down")
def dev_down() -> None:
    """Stop the embedded servers (their data stays under the dev folder)."""
    embedded.stop(get_settings().dev_dir)
    click.echo("embedded servers stopped")


@dev.command("status")
def dev_status() -> None:
    """Print which embedded servers are running."""
    found = embedded.status(get_settings().dev_dir)
    click.echo(f"postgres: {found.database_url or 'not running'}")
    click.echo(f"redis:    {found.redis_url or 'not running'}")


@click.command()
def health() -> None:
    """Check PostgreSQL and Redis (exit 1 if either is unreachable); list the running workers
    and warn about due jobs that none of them serves."""
    results = check_all()
    for r in results:
        state = f"ok ({r.latency_ms} ms)" if r.ok else f"DOWN: {r.error}"
        click.echo(f"{r.name:<9} {state}" + (f": {r.detail}" if r.ok and r.detail else ""))
        for warning in r.warnings:
            click.echo(f"{'':<9} WARNING: {warning}")
    if not all(r.ok for r in results):
        sys.exit(1)


@click.command()
@click.option("--markdown", is_flag=True, help="Print the reference table of every setting.")
def settings(markdown: bool) -> None:
    """Show the effective settings (secrets masked), or the reference table."""
    if markdown:
        click.echo(settings_reference())
        return
    current = get_settings()
    for name in type(current).model_fields:
        value = getattr(current, name)
        if isinstance(value, SecretStr):
            value = "********"
        elif isinstance(value, str) and "://" in value:
            value = redact_text(value)
        click.echo(f"{env_name(name)}={'' if value is None else value}")
