"""`jobctl`: the operator's command line. Each command group lives in its own module."""

from __future__ import annotations

import importlib

import click

from db.logs import configure_logging
from jobctl.common import JobsGroup

# (module, attribute) of every top-level command; each module owns one group.
COMMANDS: list[tuple[str, str]] = [
    ("jobctl.db_commands", "db"),
    ("jobctl.dev_commands", "dev"),
    ("jobctl.dev_commands", "health"),
    ("jobctl.dev_commands", "settings"),
    ("jobctl.tenant_commands", "tenants"),
    ("jobctl.credential_commands", "credentials"),
    ("jobctl.key_commands", "keys"),
    ("jobctl.mcp_commands", "mcp"),
    ("jobctl.job_commands", "enqueue"),
    ("jobctl.job_commands", "jobs"),
    ("jobctl.worker_commands", "worker"),
    ("jobctl.worker_commands", "maintenance"),
    ("jobctl.demo", "demo"),
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
