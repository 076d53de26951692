"""`jobctl db ...`: migrations, the models/migrations check, seed data, reset."""

from __future__ import annotations

import sys

import click

from pgjobs.cli.safety import require_local
from pgjobs.db import migrate
from pgjobs.db.scratch import scratch_database
from pgjobs.services.local import ensure_local_services

yes_really = click.option(
    "--yes-really", is_flag=True, help="Allow this on a database that is not on this machine."
)


def _url() -> str:
    """The database to work on: DATABASE_URL, else the embedded server (started if needed)."""
    return ensure_local_services()[0]


@click.group()
def db() -> None:
    """Schema migrations and sample data."""


@db.command()
@click.argument("revision", default="head")
@yes_really
def upgrade(revision: str, yes_really: bool) -> None:
    """Migrate the database up to REVISION (default: head)."""
    url = _url()
    require_local(url, yes_really, "migrate")
    migrate.upgrade(revision, url)
    click.echo(f"database at {migrate.current(url) or 'base'}")


@db.command()
@click.argument("revision", default="-1")
@yes_really
def downgrade(revision: str, yes_really: bool) -> None:
    """Migrate the database down to REVISION (default: one step; 'base' empties it)."""
    url = _url()
    require_local(url, yes_really, "downgrade")
    migrate.downgrade(revision, url)
    click.echo(f"database at {migrate.current(url) or 'base'}")


@db.command()
def current() -> None:
    """Print the database's current revision."""
    click.echo(migrate.current(_url()) or "base")


@db.command()
@click.option(
    "--scratch",
    is_flag=True,
    help="Check on a new empty database on the same server (dropped after), not this one.",
)
def check(scratch: bool) -> None:
    """Fail when the models and the migrations disagree (migrates to head first)."""
    url = _url()
    try:
        if scratch:
            with scratch_database(url) as scratch_url:
                migrate.check(scratch_url)
        else:
            migrate.check(url)
    except migrate.MigrationMismatch as exc:
        click.echo(f"models and migrations disagree:\n{exc}", err=True)
        sys.exit(1)
    click.echo("models and migrations agree")


@db.command()
@click.argument("message")
def revision(message: str) -> None:
    """Autogenerate a revision from the models into pgjobs/migrations/versions (review it!)."""
    migrate.revision(message, _url())


@db.command()
@yes_really
def reset(yes_really: bool) -> None:
    """Drop everything (downgrade to base) and migrate to head again."""
    url = _url()
    require_local(url, yes_really, "reset")
    migrate.downgrade("base", url)
    migrate.upgrade("head", url)
    click.echo("database reset to an empty schema at head")


@db.command()
@yes_really
def seed(yes_really: bool) -> None:
    """Insert sample tenants, credentials, MCP servers and jobs (idempotent)."""
    url = _url()
    require_local(url, yes_really, "seed")
    from pgjobs.cli.seed import seed_sample_data

    migrate.upgrade("head", url)
    summary = seed_sample_data()
    for name, count in summary.items():
        click.echo(f"{name}: {count}")
