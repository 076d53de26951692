"""`jobctl`: the operator's command line. Each command group lives in its own module, imported
only when one of its commands runs (pgjobs/cli/groups.py), so `jobctl --help` is instant."""

from __future__ import annotations

import click

from pgjobs.cli.groups import LazyCommand, LazyGroup

COMMANDS: dict[str, LazyCommand] = {
    "db": LazyCommand("pgjobs.cli.db_commands", "db", "Schema migrations and sample data."),
    "dev": LazyCommand(
        "pgjobs.cli.dev_commands",
        "dev",
        "Embedded PostgreSQL and Redis for development (when DATABASE_URL/REDIS_URL are unset).",
    ),
    "health": LazyCommand(
        "pgjobs.cli.dev_commands",
        "health",
        "Check PostgreSQL, Redis and the running workers; exit 1 if a server is down.",
    ),
    "settings": LazyCommand(
        "pgjobs.cli.settings_command",
        "settings",
        "Show the settings in effect and where each comes from (secrets masked).",
    ),
    "tenants": LazyCommand(
        "pgjobs.cli.tenant_commands",
        "tenants",
        "Tenants: the unit of isolation every credential, server and job belongs to.",
    ),
    "credentials": LazyCommand(
        "pgjobs.cli.credential_commands",
        "credentials",
        "Provider credentials, encrypted at rest and shown masked.",
    ),
    "keys": LazyCommand(
        "pgjobs.cli.key_commands",
        "keys",
        "Credential encryption keys: generate, status, rotate, retire.",
    ),
    "mcp": LazyCommand(
        "pgjobs.cli.mcp_commands",
        "mcp",
        "MCP servers: where to call, how to authenticate, last ping.",
    ),
    "enqueue": LazyCommand(
        "pgjobs.cli.job_commands",
        "enqueue",
        "Enqueue one job of TYPE and print its id and status.",
    ),
    "jobs": LazyCommand(
        "pgjobs.cli.job_commands", "jobs", "List, inspect, follow, cancel and retry jobs."
    ),
    "schedules": LazyCommand(
        "pgjobs.cli.schedule_commands",
        "schedules",
        "Periodic jobs: schedules that fire one job per slot (docs/schedules.md).",
    ),
    "worker": LazyCommand(
        "pgjobs.cli.worker_commands",
        "worker",
        "Run worker processes (`dramatiq pgjobs.worker.app ...`, run in this process).",
    ),
    "maintenance": LazyCommand(
        "pgjobs.cli.worker_commands",
        "maintenance",
        "Run the relay, the rescuer, the pruner and the scheduler until SIGTERM/SIGINT.",
    ),
    "demo": LazyCommand("pgjobs.cli.demo", "demo", "Run the five-minute tour in under one."),
    "api": LazyCommand(
        "pgjobs.cli.api_commands",
        "api",
        "Serve the HTTP API (/v1, /docs, /healthz, /readyz) until SIGTERM/SIGINT.",
    ),
    "tokens": LazyCommand(
        "pgjobs.cli.token_commands",
        "tokens",
        "API tokens: programmatic access to one tenant over HTTP.",
    ),
}

SERVICES = frozenset({"worker", "maintenance", "api"})
"""Long-running commands: they log at JOBS_LOG_LEVEL; every other command is quiet."""


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more: -v info lines (servers, migrations, the library), -vv debug.",
)
@click.version_option(package_name="pgjobs")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Operate the job system: database, dev services, jobs, credentials, workers.

    Commands print their result only; warnings and errors go to stderr.
    """
    import os

    from pgjobs.logs import cli_log_level, configure_logging
    from pgjobs.settings import get_settings

    if verbose:
        # Worker processes `jobctl worker` starts read the level from the environment.
        os.environ["JOBS_LOG_LEVEL"] = "DEBUG" if verbose > 1 else "INFO"
        get_settings.cache_clear()
    settings = get_settings()
    level = cli_log_level(verbose, settings, service=ctx.invoked_subcommand in SERVICES)
    configure_logging(settings, force=True, level=level)


def main() -> None:
    cli(prog_name="jobctl")


if __name__ == "__main__":
    main()
