"""What every `jobctl` command shares: the ``--tenant`` option, finding the servers, reading
input, table and JSON output."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, TypeVar

import click
from pydantic import BaseModel

from pgjobs.db.tenants import get_tenant
from pgjobs.services.local import ensure_local_services

F = TypeVar("F", bound=Callable[..., Any])


def read_text(stream: IO[bytes], source: str, limit: int) -> str:
    """What ``stream`` holds, as UTF-8 text of at most ``limit`` bytes. Every file and standard
    input a command reads comes through here, so a binary file, a device that never ends or an
    unreadable path is a one-line error (exit 1), never a traceback."""
    try:
        data = stream.read(limit + 1)
    except OSError as err:
        raise click.ClickException(f"cannot read {source}: {err.strerror or 'I/O error'}") from None
    if len(data) > limit:
        raise click.ClickException(f"{source} is larger than {limit} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError as err:
        raise click.ClickException(f"{source} is not UTF-8 text (byte {err.start})") from None


def connect() -> None:
    """Find the database like `jobctl db` does: DATABASE_URL, else the embedded server."""
    ensure_local_services(schema=True)


def tenant_option(func: F) -> F:
    """``--tenant SLUG_OR_ID`` (or JOBS_TENANT), passed to the command as ``tenant``."""
    return click.option("--tenant", required=True, envvar="JOBS_TENANT", help="Tenant slug or id.")(
        func
    )


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def echo_result(as_json: bool, data: Mapping[str, Any], text: str) -> None:
    """A command's result: ``data`` as a JSON object with ``--json``, else ``text``."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def tenant_id(ref: str) -> uuid.UUID:
    """The id of the tenant named by ``--tenant``."""
    connect()
    return get_tenant(ref).id


def echo_rows(
    items: Sequence[BaseModel], columns: dict[str, Callable[[Any], object]], as_json: bool
) -> None:
    """Print ``items`` as JSON, or as a table of ``columns`` (header -> value of an item)."""
    if as_json:
        click.echo(json.dumps([item.model_dump(mode="json") for item in items], indent=2))
        return
    table = [list(columns)] + [[_cell(get(item)) for get in columns.values()] for item in items]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return str(value)
