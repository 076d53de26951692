"""`jobctl dev up|down|status` (embedded servers) and `jobctl health`."""

from __future__ import annotations

import sys
from dataclasses import asdict

import click

from pgjobs.cli.common import echo_result, json_option
from pgjobs.services import embedded
from pgjobs.services.health import check_all
from pgjobs.services.local import ensure_local_services
from pgjobs.settings import get_settings


@click.group()
def dev() -> None:
    """Embedded PostgreSQL and Redis for development (when DATABASE_URL/REDIS_URL are unset)."""


@dev.command("up")
@json_option
def dev_up(as_json: bool) -> None:
    """Start (or reuse) the embedded servers and print their URLs.

    A restarted server takes the port it had before when that port is free, so running
    workers reconnect on their own; a warning says so when the port changed.
    """
    database_url, redis_url = ensure_local_services(schema=True)
    echo_result(
        as_json,
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url},
        f"DATABASE_URL={database_url}\nREDIS_URL={redis_url}",
    )


@dev.command("down")
@json_option
def dev_down(as_json: bool) -> None:
    """Stop the embedded servers (their data and ports stay recorded under the dev folder)."""
    embedded.stop(get_settings().dev_dir)
    echo_result(as_json, {"stopped": True}, "embedded servers stopped")


@dev.command("status")
@json_option
def dev_status(as_json: bool) -> None:
    """Print which embedded servers are running."""
    found = embedded.status(get_settings().dev_dir)
    echo_result(
        as_json,
        {"postgres": found.database_url, "redis": found.redis_url},
        f"postgres: {found.database_url or 'not running'}\n"
        f"redis:    {found.redis_url or 'not running'}",
    )


@click.command()
@json_option
def health(as_json: bool) -> None:
    """Check PostgreSQL, Redis and the running workers; exit 1 if a server is down.

    Lists the running workers and warns about due jobs that none of them serves."""
    results = check_all()
    lines = []
    for r in results:
        state = f"ok ({r.latency_ms} ms)" if r.ok else f"DOWN: {r.error}"
        line = f"{r.name:<9} {state}" + (f": {r.detail}" if r.ok and r.detail else "")
        lines.append(line)
        lines.extend(f"{'':<9} WARNING: {warning}" for warning in r.warnings)
    echo_result(as_json, {r.name: asdict(r) for r in results}, "\n".join(lines))
    if not all(r.ok for r in results):
        sys.exit(1)
