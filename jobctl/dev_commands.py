"""`jobctl dev up|down|status` (embedded servers) and `jobctl health`."""

from __future__ import annotations

import sys

import click

from db import embedded
from db.health import check_all
from db.services import ensure_local_services
from db.settings import get_settings


@click.group()
def dev() -> None:
    """Embedded PostgreSQL and Redis for development (when DATABASE_URL/REDIS_URL are unset)."""


@dev.command("up")
def dev_up() -> None:
    """Start (or reuse) the embedded servers and print their URLs."""
    database_url, redis_url = ensure_local_services()
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
    """Check PostgreSQL and Redis; exit 1 if either is unreachable."""
    results = check_all()
    for r in results:
        state = f"ok ({r.latency_ms} ms)" if r.ok else f"DOWN: {r.error}"
        click.echo(f"{r.name:<9} {state}")
    if not all(r.ok for r in results):
        sys.exit(1)
