"""`jobctl db ...`: migrations, the models/migrations check, waiting for the server, seed data,
reset."""

from __future__ import annotations

import sys

import click

from pgjobs.cli.common import echo_result, json_option
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


def _at(as_json: bool, url: str) -> None:
    revision = migrate.current(url) or "base"
    echo_result(as_json, {"revision": revision}, f"database at {revision}")


@click.group()
def db() -> None:
    """Schema migrations and sample data."""


@db.command()
@click.argument("revision", default="head")
@yes_really
@json_option
def upgrade(revision: str, yes_really: bool, as_json: bool) -> None:
    """Migrate the database up to REVISION (default: head)."""
    url = _url()
    require_local(url, yes_really, "migrate")
    migrate.upgrade(revision, url)
    _at(as_json, url)


@db.command()
@click.argument("revision", default="-1")
@yes_really
@json_option
def downgrade(revision: str, yes_really: bool, as_json: bool) -> None:
    """Migrate the database down to REVISION (default: one step; 'base' empties it)."""
    url = _url()
    require_local(url, yes_really, "downgrade")
    migrate.downgrade(revision, url)
    _at(as_json, url)


@db.command()
@json_option
def current(as_json: bool) -> None:
    """Print the database's current revision."""
    revision = migrate.current(_url()) or "base"
    echo_result(as_json, {"revision": revision}, revision)


@db.command()
@click.option(
    "--scratch",
    is_flag=True,
    help="Check on a new empty database on the same server (dropped after), not this one.",
)
@json_option
def check(scratch: bool, as_json: bool) -> None:
    """Fail when the models and the migrations disagree (migrates to head first)."""
    url = _url()
    try:
        if scratch:
            with scratch_database(url) as scratch_url:
                migrate.check(scratch_url)
        else:
            migrate.check(url)
    except migrate.MigrationMismatch as exc:
        if as_json:
            echo_result(True, {"agree": False, "differences": str(exc)}, "")
        else:
            click.echo(f"models and migrations disagree:\n{exc}", err=True)
        sys.exit(1)
    echo_result(as_json, {"agree": True}, "models and migrations agree")


@db.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Give up after this many seconds.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between two tries.",
)
@json_option
def wait(timeout: float, interval: float, as_json: bool) -> None:
    """Wait until PostgreSQL accepts connections (exit 1 after --timeout).

    For deploy steps that start with the database: a container's first start, a failover.
    Uses DATABASE_URL (or a running embedded server); starts nothing.
    """
    from pgjobs.services.health import wait_for_postgres
    from pgjobs.services.locate import database_url

    result = wait_for_postgres(database_url(), timeout, interval)
    if not result.ok:
        raise click.ClickException(
            f"PostgreSQL did not accept connections within {timeout:g} s: {result.error}"
        )
    echo_result(
        as_json,
        {"ok": True, "latency_ms": result.latency_ms},
        f"PostgreSQL accepts connections ({result.latency_ms} ms)",
    )


@db.command()
@click.argument("message")
def revision(message: str) -> None:
    """Autogenerate a revision from the models into pgjobs/migrations/versions (review it!)."""
    migrate.revision(message, _url())


@db.command()
@yes_really
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def reset(yes_really: bool, yes: bool, as_json: bool) -> None:
    """Drop everything (downgrade to base) and migrate to head again: every job, tenant and
    credential is deleted. Asks first, unless --yes."""
    url = _url()
    require_local(url, yes_really, "reset")
    if not yes:
        from pgjobs.vault.redaction import redact_text

        click.confirm(
            f"Reset {redact_text(url)}: every table and row is deleted. Continue?", abort=True
        )
    migrate.downgrade("base", url)
    migrate.upgrade("head", url)
    echo_result(
        as_json,
        {"revision": migrate.current(url) or "base"},
        "database reset to an empty schema at head",
    )


@db.command()
@yes_really
@json_option
def seed(yes_really: bool, as_json: bool) -> None:
    """Insert sample tenants, credentials, MCP servers and jobs (idempotent)."""
    url = _url()
    require_local(url, yes_really, "seed")
    from pgjobs.cli.seed import seed_sample_data

    migrate.upgrade("head", url)
    summary = seed_sample_data()
    echo_result(as_json, summary, "\n".join(f"{name}: {count}" for name, count in summary.items()))
