"""`jobctl`: the operator's command line. Each command group lives in its own module."""

from __future__ import annotations

import importlib

import click

from pgjobs.cli.common import JobsGroup
from pgjobs.logs import configure_logging

# (module, attribute) of every top-level command; each module owns one group.
COMMANDS: list[tuple[str, str]] = [
    ("pgjobs.cli.db_commands", "db"),
    ("pgjobs.cli.dev_commands", "dev"),
    ("pgjobs.cli.dev_commands", "health"),
    ("pgjobs.cli.dev_commands", "settings"),
    ("pgjobs.cli.tenant_commands", "tenants"),
    ("pgjobs.cli.credential_commands", "credentials"),
    ("pgjobs.cli.key_commands", "keys"),
    ("pgjobs.cli.mcp_commands", "mcp"),
    ("pgjobs.cli.job_commands", "enqueue"),
    ("pgjobs.cli.job_commands", "jobs"),
    ("pgjobs.cli.schedule_commands", "schedules"),
    ("pgjobs.cli.worker_commands", "worker"),
    ("pgjobs.cli.worker_commands", "maintenance"),
    ("pgjobs.cli.demo", "demo"),
]


@click.group(cls=JobsGroup)
@click.version_option(package_name="pgjobs")
def cli() -> None:
    """Operate the job system: database, dev services, jobs, credentials, workers."""
    configure_logging()


for _module, _attr in COMMANDS:
    cli.add_command(getattr(importlib.import_module(_module), _attr))


def main() -> None:
    cli(prog_name="jobctl")


if __name__ == "__main__":
    main()
