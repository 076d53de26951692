"""`jobctl schedules list|show|create|update|pause|resume|archive|run-now|upcoming|sync`.

Thin shells over ``pgjobs.schedules``. A schedule is named by its name or its id (a UUID).
Commands that check a payload against its job type's model (create, update, run-now) and
``sync`` first import the modules of ``JOBS_IMPORTS``, like the worker and the maintenance
process do, so the application's job types and declared schedules are known.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from typing import IO, Any
from zoneinfo import ZoneInfo

import click

from pgjobs import schedules as api
from pgjobs.cli.common import (
    connect,
    echo_rows,
    json_option,
    tenant_id,
    tenant_option,
)
from pgjobs.cli.groups import JobsGroup
from pgjobs.cli.job_commands import read_payload
from pgjobs.db.models.job_schedule import MisfirePolicy, ScheduleStatus
from pgjobs.db.schemas.schedule import ScheduleRead
from pgjobs.db.tenants import list_tenants
from pgjobs.producer.user_modules import import_user_modules

ref_argument = click.argument("ref", metavar="NAME|ID")
payload_options = [
    click.option("--payload", help="The payload as a JSON object."),
    click.option(
        "--payload-file", type=click.File("rb"), help="Read the payload from a JSON file."
    ),
]
timing_options = [
    click.option("--cron", help="Five cron fields, or a name: @hourly, @daily, @weekly..."),
    click.option("--every", type=int, help="A fixed interval, in seconds."),
    click.option("--tz", help="IANA time zone of the cron expression (default UTC)."),
    click.option(
        "--misfire",
        type=click.Choice([p.value for p in MisfirePolicy]),
        help="What to do with slots missed while maintenance was down (default skip).",
    ),
    click.option("--catch-up-limit", type=int, help="Missed slots catch_up fires at most."),
    click.option("--jitter", type=int, help="Delay each job by up to this many seconds."),
]


def _with(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def _user_modules() -> None:
    """The application's job types and declared schedules (``JOBS_IMPORTS``)."""
    import_user_modules()


def _resolve(tenant: uuid.UUID, ref: str) -> ScheduleRead:
    try:
        return api.get(tenant, uuid.UUID(ref))
    except ValueError:
        return api.get_by_name(tenant, ref)


def _timing(s: ScheduleRead) -> str:
    if s.cron is None:
        return f"every {s.interval_seconds}s"
    return s.cron if s.timezone == "UTC" else f"{s.cron} ({s.timezone})"


COLUMNS: dict[str, Callable[[Any], object]] = {
    "NAME": lambda s: s.name,
    "STATUS": lambda s: s.status.value,
    "WHEN": _timing,
    "TYPE": lambda s: s.job_type,
    "MISFIRE": lambda s: s.misfire_policy.value,
    "NEXT RUN": lambda s: s.next_run_at,
    "LAST RUN": lambda s: s.last_run_at,
    "LAST JOB": lambda s: s.last_job_id,
}


@click.group(cls=JobsGroup)
def schedules() -> None:
    """Periodic jobs: schedules that fire one job per slot (docs/schedules.md)."""


@schedules.command("list")
@tenant_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in ScheduleStatus]),
    help="Only these (default: active and paused).",
)
@json_option
def list_command(tenant: str, statuses: tuple[str, ...], as_json: bool) -> None:
    """List the tenant's schedules by name."""
    owner = tenant_id(tenant)
    found: list[ScheduleRead] = []
    cursor = None
    while True:
        page = api.list(owner, status=statuses or None, cursor=cursor, limit=500)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    echo_rows(found, COLUMNS, as_json)


@schedules.command("show")
@ref_argument
@tenant_option
@json_option
def show(ref: str, tenant: str, as_json: bool) -> None:
    """One schedule, its payload included."""
    found = _resolve(tenant_id(tenant), ref)
    if as_json:
        click.echo(found.model_dump_json(indent=2))
        return
    for key, value in found.model_dump(mode="json").items():
        shown = json.dumps(value) if isinstance(value, dict) else value
        click.echo(f"{key:16} {'-' if shown is None else shown}")


@schedules.command("create")
@click.argument("name")
@click.argument("job_type", metavar="TYPE")
@tenant_option
@_with(timing_options)
@_with(payload_options)
@click.option("--paused", is_flag=True, help="Create it paused.")
@json_option
def create(
    name: str,
    job_type: str,
    tenant: str,
    payload: str | None,
    payload_file: IO[bytes] | None,
    paused: bool,
    as_json: bool,
    **timing: Any,
) -> None:
    """Create the schedule NAME, firing jobs of TYPE (--cron or --every)."""
    owner = tenant_id(tenant)
    _user_modules()
    given = _payload(payload, payload_file) or {}
    made = api.create(
        owner,
        name,
        job_type,
        cron=timing["cron"],
        every=timing["every"],
        tz=timing["tz"] or "UTC",
        payload=given,
        misfire=timing["misfire"] or "skip",
        catch_up_limit=timing["catch_up_limit"],
        jitter=timing["jitter"] or 0,
        paused=paused,
    )
    _done(made, "created", as_json)


@schedules.command("update")
@ref_argument
@tenant_option
@_with(timing_options)
@_with(payload_options)
@click.option("--name", "new_name", help="Rename it.")
@click.option("--type", "new_type", help="Fire jobs of this type instead.")
@json_option
def update(
    ref: str,
    tenant: str,
    payload: str | None,
    payload_file: IO[bytes] | None,
    new_name: str | None,
    new_type: str | None,
    as_json: bool,
    **timing: Any,
) -> None:
    """Change what is given; a new timing starts from its first slot after now."""
    owner = tenant_id(tenant)
    _user_modules()
    current = _resolve(owner, ref)
    given = _payload(payload, payload_file)
    changes = {
        "name": new_name,
        "job_type": new_type,
        "payload": given,
        "cron": timing["cron"],
        "every": timing["every"],
        "tz": timing["tz"],
        "misfire": timing["misfire"],
        "catch_up_limit": timing["catch_up_limit"],
        "jitter": timing["jitter"],
    }
    chosen = {k: v for k, v in changes.items() if v is not None}
    _done(api.update(owner, current.id, **chosen), "updated", as_json)


def _payload(payload: str | None, payload_file: IO[bytes] | None) -> dict[str, Any] | None:
    if payload is None and payload_file is None:
        return None
    return read_payload(payload, payload_file)


def _done(schedule: ScheduleRead, verb: str, as_json: bool) -> None:
    if as_json:
        click.echo(schedule.model_dump_json(indent=2))
        return
    when = "-" if schedule.next_run_at is None else schedule.next_run_at.isoformat()
    state = f"{schedule.status.value}, next run {when}"
    click.echo(f"{verb} schedule {schedule.name} ({schedule.id}): {state}")


def _status_command(name: str, change: Callable[[uuid.UUID, uuid.UUID], ScheduleRead]) -> None:
    @schedules.command(name, help=change.__doc__.split("\n")[0] if change.__doc__ else None)
    @ref_argument
    @tenant_option
    @json_option
    def command(ref: str, tenant: str, as_json: bool) -> None:
        owner = tenant_id(tenant)
        _done(change(owner, _resolve(owner, ref).id), f"{name}d", as_json)


_status_command("pause", api.pause)
_status_command("resume", api.resume)
_status_command("archive", api.archive)


@schedules.command("run-now")
@ref_argument
@tenant_option
@json_option
def run_now(ref: str, tenant: str, as_json: bool) -> None:
    """Enqueue one job for the schedule now (it must be active)."""
    owner = tenant_id(tenant)
    _user_modules()
    job = api.run_now(owner, _resolve(owner, ref).id)
    if as_json:
        click.echo(json.dumps({"id": job.id, "type": job.type, "status": job.status.value}))
    else:
        click.echo(f"job {job.id} {job.status.value} ({job.type})")


@schedules.command("upcoming")
@ref_argument
@tenant_option
@click.option("-n", "count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--local", is_flag=True, help="Show times in the schedule's time zone.")
@json_option
def upcoming(ref: str, tenant: str, count: int, local: bool, as_json: bool) -> None:
    """The schedule's next slots."""
    owner = tenant_id(tenant)
    found = _resolve(owner, ref)
    slots = api.upcoming(owner, found.id, count)
    if local:
        zone = ZoneInfo(found.timezone)
        slots = [slot.astimezone(zone) for slot in slots]
    if as_json:
        click.echo(json.dumps([s.isoformat() for s in slots]))
        return
    for slot in slots:
        click.echo(slot.isoformat())


@schedules.command("sync")
@click.option("--tenant", envvar="JOBS_TENANT", help="Tenant slug or id.")
@click.option("--all-tenants", is_flag=True, help="Every tenant.")
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option(
    "--allow-empty", is_flag=True, help="With no schedule declared, archive every declared one."
)
@json_option
def sync(
    tenant: str | None, all_tenants: bool, dry_run: bool, allow_empty: bool, as_json: bool
) -> None:
    """Write the schedules declared in code (JOBS_IMPORTS) to a tenant, or every tenant, and
    report what was added, changed and archived."""
    if (tenant is None) == (not all_tenants):
        raise click.UsageError("give --tenant or --all-tenants")
    connect()
    _user_modules()
    owners = [t.id for t in list_tenants()] if all_tenants else [tenant_id(str(tenant))]
    reports = [api.sync(t, dry_run=dry_run, allow_empty=allow_empty) for t in owners]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in reports], indent=2, default=str))
        return
    prefix = "would be " if dry_run else ""
    for report in reports:
        click.echo(f"tenant {report.tenant_id}:")
        for label, names in (
            ("added", report.added),
            ("changed", report.changed),
            ("archived", report.archived),
        ):
            shown = ", ".join(names) if names else "-"
            click.echo(f"  {prefix}{label} ({len(names)}): {shown}")
        click.echo(f"  unchanged ({len(report.unchanged)})")
