"""`jobctl enqueue` and `jobctl jobs list|show|events|counts|cancel|retry|watch`.

Thin shells over the producer API (pgjobs/producer/): every command resolves ``--tenant`` once,
calls the same functions a Python producer would, and turns the API's typed errors into one-line CLI
errors. Payloads are printed only where asked for (``show``), never in an error.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import click
from rich import box
from rich.console import Console
from rich.json import JSON
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from pgjobs.cli.common import json_option, read_text, tenant_id, tenant_option
from pgjobs.cli.groups import JobsGroup
from pgjobs.db.models import TERMINAL_STATUSES, JobStatus
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.producer import (
    cancel_job,
    count_jobs_by_status,
    get_job,
    get_job_events,
    list_jobs,
    retry_job,
)
from pgjobs.producer import enqueue as enqueue_job
from pgjobs.producer import flush as flush_marks
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.status import event_cursor
from pgjobs.producer.user_modules import import_user_modules, user_module_names
from pgjobs.settings import get_settings

LIVE_STATUSES = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.ACTIVE)
PAYLOAD_FILE_FACTOR = 16
"""``--payload-file`` reads at most this many times JOBS_MAX_PAYLOAD_BYTES (room for indented
JSON; the compact payload must still fit the limit)."""
WATCH_PAGE = 200
PIPE_WIDTH = 200
"""How many live jobs ``watch`` follows at most when no ``--job`` is given (newest first)."""

_STATUS_STYLE = {
    JobStatus.PENDING: "dim",
    JobStatus.QUEUED: "cyan",
    JobStatus.HELD: "blue",
    JobStatus.WAITING: "blue",
    JobStatus.ACTIVE: "yellow",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}
_SHORT_TIME = "%m-%d %H:%M:%S"
_FINAL_MARK = {
    JobStatus.SUCCEEDED: "✓",
    JobStatus.FAILED: "✗",
    JobStatus.CANCELLED: "⊘",
}

# --- shared pieces --------------------------------------------------------------------------------

job_id_argument = click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between polls.",
)


def make_console() -> Console:
    """Output for people. Markup and emoji codes are off, so job data prints as it is; a pipe
    gets long lines instead of table cells cut to rich's default 80 columns."""
    out = Console(markup=False, emoji=False, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def tenant_command(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command ``--tenant SLUG|UUID``, passed on as ``tenant_id`` once the application's
    job types are imported (``JOBS_IMPORTS``), the servers found and the tenant resolved."""

    @tenant_option
    @functools.wraps(func)
    def run(tenant: str, **options: Any) -> None:
        import_user_modules()
        func(tenant_id=tenant_id(tenant), **options)

    return run


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _when(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time: what an operator compares with their clock (UTC at the very ends of the
    range, where local time would fall outside it: pgjobs/db/timestamps.py)."""
    if moment is None:
        return "-"
    try:
        return moment.astimezone().strftime(fmt)
    except OverflowError:
        return moment.astimezone(UTC).strftime(fmt + " UTC")


def _clip(text: str | None, width: int) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _status(status: JobStatus) -> Text:
    return Text(status.value, style=_STATUS_STYLE[status])


# --- enqueue --------------------------------------------------------------------------------------


def read_payload(payload: str | None, payload_file: IO[bytes] | None) -> dict[str, Any]:
    """The payload object from exactly one source. A JSON error names the position, not the
    text around it: the payload may hold secrets."""
    if payload is not None and payload_file is not None:
        raise click.UsageError("give --payload or --payload-file, not both")
    if payload is not None:
        source, raw = "--payload", payload
    elif payload_file is not None:
        source = "--payload-file"
        raw = read_text(
            payload_file, source, PAYLOAD_FILE_FACTOR * get_settings().max_payload_bytes
        )
    else:
        raise click.UsageError("give --payload or --payload-file")
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise click.ClickException(f"{source} is not valid JSON: {err.msg} ({where})") from None
    except RecursionError:
        raise click.ClickException(f"{source} is nested too deeply") from None
    except ValueError as err:  # NaN or Infinity, or an integer of thousands of digits
        raise click.ClickException(f"{source} is not usable JSON: {err}") from None
    if not isinstance(value, dict):
        raise click.ClickException(f"{source} must be a JSON object")
    return value


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON number")


@click.command()
@click.argument("job_type", metavar="TYPE")
@tenant_command
@click.option("--payload", help="The payload as a JSON object.")
@click.option(
    "--payload-file", type=click.File("rb"), help="Read the payload from a JSON file ('-': stdin)."
)
@click.option("--idempotency-key", help="Enqueue at most once per tenant under this key.")
@click.option("--delay", type=float, help="Seconds to wait before the job may run.")
@click.option("--priority", type=int, help="Overrides the job type's priority.")
@click.option("--max-attempts", type=int, help="Overrides the job type's attempt budget.")
@json_option
def enqueue(
    *,
    tenant_id: uuid.UUID,
    job_type: str,
    payload: str | None,
    payload_file: IO[bytes] | None,
    idempotency_key: str | None,
    delay: float | None,
    priority: int | None,
    max_attempts: int | None,
    as_json: bool,
) -> None:
    """Enqueue one job of TYPE and print its id and status."""
    try:
        job = enqueue_job(
            job_type,
            read_payload(payload, payload_file),
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            delay=delay,
            priority=priority,
            max_attempts=max_attempts,
        )
    except UnknownJobType as exc:
        imported = ", ".join(user_module_names()) or "none"
        raise click.ClickException(
            f"{exc} (modules imported from JOBS_IMPORTS: {imported}; name the module that "
            "declares it there)"
        ) from None
    # The returned status predates the send; once the row is marked, report where it is now.
    flush_marks(timeout=5)
    status = get_job(tenant_id, job.id).status
    if as_json:
        _echo_json(
            {
                "id": job.id,
                "type": job.type,
                "status": status.value,
                "created": job.created,
                "run_at": job.run_at.isoformat(),
            }
        )
    elif job.created:
        click.echo(f"job {job.id} {status.value} ({job.type}, runs at {_when(job.run_at)})")
    else:
        click.echo(f"job {job.id} already exists for this idempotency key ({status.value})")


# --- jobs: queries --------------------------------------------------------------------------------


@click.group(cls=JobsGroup)
def jobs() -> None:
    """List, inspect, follow, cancel and retry jobs."""


@jobs.command("list")
@tenant_command
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in JobStatus]),
    help="Only jobs in this status (repeatable).",
)
@click.option("--type", "job_type", help="Only jobs of this type.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@json_option
def list_command(
    *,
    tenant_id: uuid.UUID,
    statuses: tuple[str, ...],
    job_type: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first, one page at a time."""
    page = list_jobs(
        tenant_id,
        status=[JobStatus(s) for s in statuses] or None,
        type=job_type,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        items = [job.model_dump(mode="json") for job in page.items]
        _echo_json({"items": items, "next_cursor": page.next_cursor})
        return
    out = make_console()
    if not page.items:
        out.print("no jobs")
        return
    out.print(_jobs_table(page.items))
    if page.next_cursor:
        out.print(f"next page: --cursor {page.next_cursor}")


def _jobs_table(items: Iterable[JobRead], title: str | None = None) -> Table:
    """One line per job where the width allows; a narrow terminal wraps the text columns
    and keeps id, status and counts whole."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    for name in ("id", "type", "status", "tries", "done", "created", "updated", "last error"):
        whole = name in {"id", "status", "tries", "done"}
        right = name in {"id", "tries", "done"}
        table.add_column(name, justify="right" if right else "left", no_wrap=whole)
    for job in items:
        table.add_row(
            str(job.id),
            job.type,
            _status(job.status),
            f"{job.attempts}/{job.max_attempts}",
            f"{job.progress}%",
            _when(job.created_at, _SHORT_TIME),
            _when(job.updated_at, _SHORT_TIME),
            _clip(job.error_message, 60),
        )
    return table


@jobs.command()
@job_id_argument
@tenant_command
@json_option
def show(*, tenant_id: uuid.UUID, job_id: int, as_json: bool) -> None:
    """Show every field of one job, with its payload and result."""
    job = get_job(tenant_id, job_id)
    if as_json:
        _echo_json(job.model_dump(mode="json"))
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    for name, value in job.model_dump(exclude={"payload", "result"}).items():
        if isinstance(value, JobStatus):
            shown: str | Text = _status(value)
        elif isinstance(value, datetime) or value is None:
            shown = _when(value)
        else:
            shown = str(value)
        fields.add_row(name, shown)
    out = make_console()
    out.print(fields)
    out.print(Text("payload", style="bold"))
    out.print(JSON.from_data(job.payload, sort_keys=True))
    if job.result is not None:
        out.print(Text("result", style="bold"))
        out.print(JSON.from_data(job.result, sort_keys=True))


@jobs.command()
@job_id_argument
@tenant_command
@click.option("--follow", is_flag=True, help="Keep printing new events until the job ends.")
@interval_option
@json_option
def events(
    *, tenant_id: uuid.UUID, job_id: int, follow: bool, interval: float, as_json: bool
) -> None:
    """Print a job's events in order (with --follow, as they happen)."""
    out = make_console()
    cursor: str | None = None
    while True:
        # Read the status before the events: once it is terminal, the events read next
        # include the final one (they are written in the same statement).
        done = not follow or get_job(tenant_id, job_id).status in TERMINAL_STATUSES
        for event in _events_after(tenant_id, job_id, cursor):
            cursor = event_cursor(event)
            if as_json:
                click.echo(json.dumps(event.model_dump(mode="json")))
            else:
                out.print(_event_line(event), soft_wrap=True)
        if done:
            return
        time.sleep(interval)


def _events_after(tenant_id: uuid.UUID, job_id: int, cursor: str | None) -> Iterator[JobEventRead]:
    """Every event after ``cursor``, across pages."""
    while True:
        page = get_job_events(tenant_id, job_id, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _event_line(event: JobEventRead) -> Text:
    data = json.dumps(event.data, sort_keys=True, default=str) if event.data else ""
    line = Text(f"{event.id:>8}  {_when(event.created_at)}  ")
    line.append(f"{event.event_type.value:<9}", style="bold")
    line.append(f"  {data}")
    return line


@jobs.command()
@tenant_command
@click.option("--type", "job_type", help="Only jobs of this type.")
@json_option
def counts(*, tenant_id: uuid.UUID, job_type: str | None, as_json: bool) -> None:
    """How many of the tenant's jobs are in each status."""
    by_status = count_jobs_by_status(tenant_id, type=job_type)
    if as_json:
        _echo_json({status.value: n for status, n in by_status.items()})
        return
    table = Table()
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for status, n in by_status.items():
        table.add_row(_status(status), str(n))
    table.add_section()
    table.add_row("total", str(sum(by_status.values())))
    make_console().print(table)


# --- jobs: commands -------------------------------------------------------------------------------


@jobs.command()
@job_id_argument
@tenant_command
@click.option("--reason", help="Recorded in the job's cancelled event.")
@json_option
def cancel(*, tenant_id: uuid.UUID, job_id: int, reason: str | None, as_json: bool) -> None:
    """Cancel a waiting job now, or ask a running one to stop at its next checkpoint."""
    outcome = cancel_job(tenant_id, job_id, reason=reason)
    if as_json:
        _echo_json(
            {
                "job_id": job_id,
                "status": outcome.status.value,
                "stop_requested": outcome.stop_requested,
            }
        )
    elif outcome.stop_requested:
        click.echo(f"job {job_id} is running: asked to stop at its next checkpoint")
    elif outcome.status is JobStatus.CANCELLED:
        click.echo(f"job {job_id} cancelled")
    else:
        click.echo(f"job {job_id} is already {outcome.status.value}: nothing to cancel")


@jobs.command()
@job_id_argument
@tenant_command
@json_option
def retry(*, tenant_id: uuid.UUID, job_id: int, as_json: bool) -> None:
    """Give a failed or cancelled job one more attempt."""
    outcome = retry_job(tenant_id, job_id)
    flush_marks(timeout=5)
    status = get_job(tenant_id, job_id).status
    if as_json:
        _echo_json(
            {
                "job_id": job_id,
                "status": status.value,
                "attempt": outcome.attempt,
                "max_attempts": outcome.max_attempts,
            }
        )
    else:
        click.echo(
            f"job {job_id} retried: attempt {outcome.attempt} of {outcome.max_attempts}, "
            f"now {status.value}"
        )


# --- jobs watch -----------------------------------------------------------------------------------


@jobs.command()
@tenant_command
@click.option(
    "--job",
    "job_ids",
    multiple=True,
    type=click.IntRange(min=1),
    help="Watch this job (repeatable); default: every pending, queued or active job.",
)
@interval_option
@click.option("--until-done", is_flag=True, help="Exit once every watched job has ended.")
def watch(
    *, tenant_id: uuid.UUID, job_ids: tuple[int, ...], interval: float, until_done: bool
) -> None:
    """Live progress bars of running jobs (Ctrl-C stops watching; the jobs go on)."""
    watch_jobs(tenant_id, list(job_ids) or None, interval, until_done, make_console())


def watch_jobs(
    tenant_id: uuid.UUID,
    job_ids: Sequence[int] | None,
    interval: float = 0.5,
    until_done: bool = False,
    console: Console | None = None,
) -> dict[int, JobStatus]:
    """Show a progress bar per live job until every one has ended (``until_done``) or Ctrl-C,
    then a summary table. Returns the last status seen of every watched job.

    ``job_ids`` None watches the tenant's live jobs, including ones enqueued meanwhile.
    Raises JobNotFound for a given id that is not the tenant's.
    """
    out = console or make_console()
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TextColumn("{task.fields[message]}", markup=False),
        console=out,
    )
    seen: dict[int, JobRead] = {}
    bars: dict[int, TaskID] = {}
    try:
        with progress:
            while True:
                for job in _poll(tenant_id, job_ids, seen):
                    _show(progress, bars, seen.get(job.id), job)
                    seen[job.id] = job
                if until_done and all(j.status in TERMINAL_STATUSES for j in seen.values()):
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    if seen:
        out.print(_jobs_table(seen.values(), title="watched jobs"))
    elif until_done:
        out.print("no pending, queued or active jobs")
    return {job_id: job.status for job_id, job in seen.items()}


def _poll(
    tenant_id: uuid.UUID, job_ids: Sequence[int] | None, seen: dict[int, JobRead]
) -> list[JobRead]:
    """The watched jobs now: the given ids, else the live jobs plus those that were live at
    the last poll (read one by one, to learn how they ended)."""
    if job_ids is not None:
        return [get_job(tenant_id, job_id) for job_id in job_ids]
    live = list_jobs(tenant_id, status=LIVE_STATUSES, limit=WATCH_PAGE).items
    live_ids = {job.id for job in live}
    ended = [
        get_job(tenant_id, job.id)
        for job in seen.values()
        if job.id not in live_ids and job.status not in TERMINAL_STATUSES
    ]
    return live + ended


def _show(
    progress: Progress, bars: dict[int, TaskID], before: JobRead | None, job: JobRead
) -> None:
    """Move the job's bar, or replace it with a final line once the job has ended."""
    changed = before is None or before.status is not job.status
    if job.status in TERMINAL_STATUSES:
        if job.id in bars:
            progress.remove_task(bars.pop(job.id))
        if changed:
            progress.console.print(_final_line(job))
        return
    status, message = job.status.value, job.progress_message or ""
    if job.id in bars:
        progress.update(bars[job.id], completed=job.progress, status=status, message=message)
    else:
        bars[job.id] = progress.add_task(
            f"#{job.id} {job.type}",
            total=100,
            completed=job.progress,
            status=status,
            message=message,
        )
    if changed and not progress.console.is_terminal:
        # No live bars without a terminal (CI logs, pipes): say each step on a line instead.
        progress.console.print(
            f"#{job.id} {job.type} {job.status.value} {job.progress}%", soft_wrap=True
        )


def _final_line(job: JobRead) -> Text:
    line = Text(f"{_FINAL_MARK[job.status]} #{job.id} {job.type} ", style=_STATUS_STYLE[job.status])
    line.append(job.status.value)
    if job.status is JobStatus.FAILED and job.error_message:
        line.append(f": {_clip(job.error_message, 200)}")
    return line
