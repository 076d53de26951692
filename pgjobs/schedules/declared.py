"""Schedules declared in the application's code, and ``sync``, which writes them to a tenant.

The documented path for schedules the application owns (docs/schedules.md)::

    report = pgjobs.job_type("nightly_report", ReportPayload)
    pgjobs.schedule("nightly-report", report, cron="0 3 * * *", tz="Europe/Berlin",
                    payload={"kind": "daily"})

and at deploy, after migrating: ``jobctl schedules sync --tenant acme`` (or ``--all-tenants``),
which imports ``JOBS_IMPORTS`` and reports what it added, changed and archived. A declaration
is checked when it is made (a bad one fails the import, like a bad job type); ``sync`` owns the
schedules it wrote (``declared`` is true) and archives those whose declaration is gone. It
never touches schedules made through the API or the CLI, and it does not resume a declared
schedule an operator paused (it still updates its definition).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Unpack

from pgjobs.db.engine import transaction
from pgjobs.db.models.job_schedule import ScheduleStatus
from pgjobs.db.statements import execute
from pgjobs.db.validation import as_uuid
from pgjobs.logs import get_logger
from pgjobs.producer.errors import InvalidOption
from pgjobs.schedules import statements as st
from pgjobs.schedules.api import definition_of, first_slot, insert_schedule
from pgjobs.schedules.definition import Definition, Options, define
from pgjobs.schedules.errors import InvalidSchedule

log = get_logger(__name__)

_declared: dict[str, Definition] = {}


def schedule(name: str, job_type: Any, **options: Unpack[Options]) -> Definition:
    """Declare a schedule the application owns (the options of ``pgjobs.schedules.create``).
    Nothing is written until ``sync``. Declaring a name twice differently is an error."""
    definition = define(name, job_type, **options)
    existing = _declared.get(definition.name)
    if existing is not None and existing != definition:
        raise InvalidSchedule(f"schedule {definition.name!r} is already declared differently")
    _declared[definition.name] = definition
    return definition


def declared() -> list[Definition]:
    """Every schedule declared in this process, by name."""
    return [_declared[name] for name in sorted(_declared)]


def forget(name: str) -> None:
    """Drop a declaration (tests declaring throwaway schedules)."""
    _declared.pop(name, None)


@dataclass
class SyncReport:
    """What :func:`sync` did to one tenant's schedules (or would do, on a dry run)."""

    tenant_id: uuid.UUID
    added: list[str] = field(default_factory=list)
    """New, or archived before and declared again (active again)."""
    changed: list[str] = field(default_factory=list)
    """Definition changed, or a schedule made through the API taken over by a declaration."""
    archived: list[str] = field(default_factory=list)
    """Declared before, no longer declared."""
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False


def sync(
    tenant_id: uuid.UUID,
    definitions: list[Definition] | None = None,
    *,
    dry_run: bool = False,
    allow_empty: bool = False,
) -> SyncReport:
    """Make the tenant's declared schedules match ``definitions`` (default: every
    declaration of this process), in one transaction. With no declarations at all (is
    ``JOBS_IMPORTS`` set?) it refuses to archive every declared schedule unless
    ``allow_empty``."""
    tenant_id = as_uuid(tenant_id, "tenant_id", InvalidOption)
    wanted = {d.name: d for d in (declared() if definitions is None else definitions)}
    if not all(isinstance(d, Definition) for d in wanted.values()):
        raise InvalidOption.for_field("definitions", "must hold declared schedules")
    report = SyncReport(tenant_id, dry_run=dry_run)
    with transaction() as conn:
        rows = execute(conn, st.LOCK_TENANT, {"tenant_id": tenant_id}).fetchall()
        owned = [r for r in rows if r.declared and r.status != ScheduleStatus.ARCHIVED]
        if not wanted and owned and not allow_empty:
            raise InvalidSchedule(
                "no schedule is declared (is JOBS_IMPORTS set?): refusing to archive "
                f"{len(owned)} declared schedule(s) without allow_empty",
                ("definitions",),
            )
        now = st.clock(conn)
        by_name = {r.name: r for r in rows}
        for name, definition in sorted(wanted.items()):
            row = by_name.get(name)
            if row is None:
                report.added.append(name)
                if not dry_run:
                    insert_schedule(conn, tenant_id, definition, paused=False, declared=True)
                continue
            status = ScheduleStatus(row.status)
            if _same(row, definition) and row.declared and status is not ScheduleStatus.ARCHIVED:
                report.unchanged.append(name)
                continue
            restored = status is ScheduleStatus.ARCHIVED
            (report.added if restored else report.changed).append(name)
            if dry_run:
                continue
            target = ScheduleStatus.ACTIVE if restored else status
            next_run = row.next_run_at
            retimed = definition.timing != definition_of(row).timing
            if target is ScheduleStatus.ACTIVE and (restored or retimed):
                next_run = first_slot(definition.timing, now)
            st.write(conn, row.id, definition, status=target, next_run_at=next_run, declared=True)
        for row in owned:
            if row.name in wanted:
                continue
            report.archived.append(row.name)
            if not dry_run:
                archived = ScheduleStatus.ARCHIVED
                gone = definition_of(row)
                st.write(conn, row.id, gone, status=archived, next_run_at=None, declared=True)
    if not dry_run and (report.added or report.changed or report.archived):
        log.info(
            "schedules.synced",
            tenant_id=str(tenant_id),
            added=len(report.added),
            changed=len(report.changed),
            archived=len(report.archived),
        )
    return report


def _same(row: Any, definition: Definition) -> bool:
    """The row holds this definition (payloads compared as JSON values, not as text)."""
    stored = definition_of(row)
    return stored.payload == definition.payload and stored == replace(
        definition, payload_json=stored.payload_json
    )
