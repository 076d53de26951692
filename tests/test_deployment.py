"""The deployment files (docker-compose.yml, Dockerfile, Procfile) hold together: services wait
for what they need, and every `jobctl` command line they run is one `jobctl` accepts.

No Docker engine runs here: the files are read, and each command line is parsed by `jobctl`'s
own command tree (options and arguments checked, nothing run).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from pgjobs.cli.main import cli

REPO = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def jobctl_lines(command: list[str] | str) -> list[list[str]]:
    """The `jobctl` command lines a container command runs (``sh -c "a && b"`` included)."""
    argv = shlex.split(command) if isinstance(command, str) else command
    if argv[:2] == ["sh", "-c"]:
        return [line for part in argv[2].split("&&") for line in jobctl_lines(part.strip())]
    return [argv] if argv and argv[0] == "jobctl" else []


def check_jobctl(argv: list[str]) -> click.Command:
    """The command ``argv`` names, its options and arguments parsed as `jobctl` would."""
    assert argv[0] == "jobctl", argv
    command: click.Command = cli
    ctx = click.Context(cli, info_name="jobctl")
    args = argv[1:]
    while isinstance(command, click.Group):
        assert args, f"{argv}: a group without a command"
        name, *args = args
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{argv}: no command {name!r}"
        command = sub
        ctx = click.Context(command, info_name=name, parent=ctx)
    command.make_context(ctx.info_name, list(args), parent=ctx.parent)  # raises on a bad option
    return command


def test_check_jobctl_refuses_what_jobctl_refuses() -> None:
    with pytest.raises(AssertionError, match="no command"):
        check_jobctl(["jobctl", "db", "nosuch"])
    with pytest.raises(click.UsageError):
        check_jobctl(["jobctl", "db", "upgrade", "--no-such-option"])
    assert check_jobctl(["jobctl", "db", "wait", "--timeout", "5"]).name == "wait"


def test_compose_services_wait_for_what_they_need() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "worker", "maintenance", "api"}
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    # Over TCP: the image's first-start initialisation answers on the unix socket only.
    postgres_check = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in postgres_check and "-h" in postgres_check
    for name in ("migrate", "worker", "maintenance", "api"):
        needs = services[name]["depends_on"]
        if name == "migrate":
            assert needs["postgres"]["condition"] == "service_healthy"
            assert needs["redis"]["condition"] == "service_healthy"
        else:
            assert needs["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["stop_grace_period"] == "40s"
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_compose_migration_retries_until_postgres_accepts() -> None:
    lines = jobctl_lines(compose()["services"]["migrate"]["command"])
    assert [line[1:3] for line in lines] == [["db", "wait"], ["db", "upgrade"]]
    assert "--yes-really" in lines[1]


def test_compose_starts_without_the_key_and_says_how_to_get_one() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    # A required variable (${VAR:?...}) would stop every compose command, the one that makes
    # the key included.
    assert "${JOBS_ENCRYPTION_KEYS:-}" in text and ":?" not in text
    assert "docker compose run --rm --no-deps migrate jobctl keys generate" in text


def test_every_command_of_the_deployment_files_is_a_jobctl_command() -> None:
    found: list[list[str]] = []
    for service in compose()["services"].values():
        if "command" in service:
            found += jobctl_lines(service["command"])
    procfile = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        command = shell_defaults(command)
        procfile[name] = shlex.split(command)
        found += jobctl_lines(command.strip())
    assert procfile["release"] == ["jobctl", "db", "upgrade", "--yes-really"]
    assert {"worker", "maintenance", "api"} <= set(procfile)
    commands = {
        line.split()[0]: json.loads(re.sub(r"^.*?CMD ", "", line))
        for line in dockerfile_instructions()
        if line.startswith(("CMD ", "HEALTHCHECK "))
    }
    assert set(commands) == {"CMD", "HEALTHCHECK"}
    found += commands.values()
    assert len(found) >= 8
    for argv in found:
        check_jobctl(argv)


def shell_defaults(command: str) -> str:
    """``command`` with each ``${VAR:-default}`` replaced by its default, as a shell without
    VAR set would run it (the Procfile's ``$PORT``)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", command)


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_dockerfile_has_a_healthcheck_and_a_place_for_user_code() -> None:
    instructions = dockerfile_instructions()
    assert any(
        line.startswith("HEALTHCHECK ") and line.endswith('CMD ["jobctl", "health"]')
        for line in instructions
    )
    assert any(line.startswith("ENV ") and "PYTHONPATH=/app" in line for line in instructions)
    text = (REPO / "Dockerfile").read_text()
    assert "COPY myapp/ /app/myapp/" in text and "ENV JOBS_IMPORTS=myapp.jobs" in text
