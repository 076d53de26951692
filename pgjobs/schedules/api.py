"""The schedules API: create, read, change, pause, resume, archive, run now, upcoming slots.

Every call is scoped to one tenant (another tenant's schedule is ``ScheduleNotFound``, like a
missing one), checks all its input before the first statement, and changes a schedule under
its row lock. Times come from the database's clock: a new or resumed schedule, or one whose
timing changed, next fires at its first slot after that clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Unpack

from pgjobs.db.engine import session_scope, transaction
from pgjobs.db.errors import UniqueViolation, UnknownTenant, wrap_db_errors
from pgjobs.db.models.job_schedule import MisfirePolicy, ScheduleStatus
from pgjobs.db.schemas.schedule import ScheduleRead
from pgjobs.db.statements import execute
from pgjobs.db.timestamps import LATEST
from pgjobs.db.validation import as_int, as_uuid
from pgjobs.logs import get_logger
from pgjobs.producer.enqueue import EnqueuedJob, JobRequest, enqueue_many
from pgjobs.producer.errors import InvalidOption
from pgjobs.producer.status import Page
from pgjobs.schedules import statements as st
from pgjobs.schedules.definition import Definition, Options, define, schedule_name
from pgjobs.schedules.errors import ScheduleExists, ScheduleNotActive, ScheduleNotFound
from pgjobs.schedules.firing import run_now_key
from pgjobs.schedules.timing import Timing
from pgjobs.settings import get_settings

log = get_logger(__name__)

UPCOMING_MAX = 1000
VISIBLE = (ScheduleStatus.ACTIVE, ScheduleStatus.PAUSED)
"""What :func:`list_schedules` shows unless asked for statuses: archived ones are hidden."""


class _Unset:
    """A keyword argument :func:`update` was not given."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def create(
    tenant_id: uuid.UUID,
    name: str,
    job_type: Any,
    *,
    paused: bool = False,
    **options: Unpack[Options],
) -> ScheduleRead:
    """A new schedule: ``job_type`` (a name or a ``JobType``) with ``payload`` (validated
    against the type's model) at every slot of ``cron`` in time zone ``tz``, or ``every`` N
    seconds; ``misfire`` is ``skip``, ``run_once`` or ``catch_up`` (with ``catch_up_limit``);
    ``jitter`` delays each job by up to that many seconds (``definition.Options``). Active
    unless ``paused``.

    Raises (writing nothing): InvalidSchedule, UnknownJobType, InvalidPayload, PayloadTooLarge,
    ScheduleExists, UnknownTenant.
    """
    tenant_id = _tenant(tenant_id)
    definition = define(name, job_type, **options)
    if not isinstance(paused, bool):
        raise InvalidOption.for_field("paused", "must be a bool")
    with transaction() as conn:
        row = insert_schedule(conn, tenant_id, definition, paused=paused, declared=False)
    log.info("schedule.created", tenant_id=str(tenant_id), schedule_id=str(row.id))
    return row


def insert_schedule(
    conn: Any, tenant_id: uuid.UUID, definition: Definition, *, paused: bool, declared: bool
) -> ScheduleRead:
    """Insert a checked definition (its first slot after the database's clock)."""
    next_run = None if paused else first_slot(definition.timing, st.clock(conn))
    status = ScheduleStatus.PAUSED if paused else ScheduleStatus.ACTIVE
    try:
        with wrap_db_errors():
            row = st.insert(
                conn, tenant_id, definition, status=status, next_run_at=next_run, declared=declared
            )
    except UniqueViolation:
        raise ScheduleExists(f"a schedule named {definition.name!r} exists") from None
    if row is None:
        raise UnknownTenant("unknown tenant")
    return ScheduleRead.model_validate(row)


def first_slot(timing: Timing, now: datetime) -> datetime:
    """The first slot after ``now`` (LATEST when the expression has no more)."""
    return timing.first_after(now) or LATEST


def get(tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleRead:
    """One schedule; ScheduleNotFound for another tenant's id."""
    tenant_id, schedule_id = _ref(tenant_id, schedule_id)
    with transaction() as conn:
        row = execute(conn, st.SELECT_ONE, {"id": schedule_id, "tenant_id": tenant_id}).fetchone()
    return _found(row, schedule_id)


def get_by_name(tenant_id: uuid.UUID, name: str) -> ScheduleRead:
    """The tenant's schedule called ``name``."""
    tenant_id = _tenant(tenant_id)
    name = schedule_name(name)
    with transaction() as conn:
        row = execute(conn, st.SELECT_BY_NAME, {"tenant_id": tenant_id, "name": name}).fetchone()
    if row is None:
        raise ScheduleNotFound(f"schedule {name!r} not found")
    return ScheduleRead.model_validate(row)


def list_schedules(
    tenant_id: uuid.UUID,
    *,
    status: ScheduleStatus | str | Iterable[ScheduleStatus | str] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ScheduleRead]:
    """The tenant's schedules by name, a page of at most ``limit``; active and paused ones
    unless ``status`` names others (``"archived"``)."""
    tenant_id = _tenant(tenant_id)
    statuses = _statuses(status)
    limit = as_int(limit, "limit", 1, get_settings().page_size_max, InvalidOption)
    after = "" if cursor is None else _decode_cursor(cursor)
    params = {"tenant_id": tenant_id, "statuses": statuses, "after": after, "limit": limit + 1}
    with transaction() as conn:
        rows = execute(conn, st.LIST, params).fetchall()
    items = [ScheduleRead.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit and items
    return Page(items, _encode_cursor(items[-1].name) if more else None)


def update(
    tenant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    *,
    name: Any = UNSET,
    job_type: Any = UNSET,
    payload: Any = UNSET,
    cron: Any = UNSET,
    every: Any = UNSET,
    tz: Any = UNSET,
    misfire: Any = UNSET,
    catch_up_limit: Any = UNSET,
    jitter: Any = UNSET,
) -> ScheduleRead:
    """Change what is given; the rest stays. Giving ``cron`` makes an interval schedule a
    cron one (and ``every`` the reverse). A new timing (expression, interval or time zone)
    starts from its first slot after now; the slots the old one had left are not fired.

    The payload is validated again against the (new) job type's model. Raises like
    :func:`create`, and ScheduleNotFound."""
    tenant_id, schedule_id = _ref(tenant_id, schedule_id)
    with transaction() as conn:
        row = _locked(conn, tenant_id, schedule_id)
        given = {
            "name": name,
            "job_type": job_type,
            "payload": payload,
            "cron": cron,
            "every": every,
            "tz": tz,
            "misfire": misfire,
            "catch_up_limit": catch_up_limit,
            "jitter": jitter,
        }
        definition = _merged(row, given)
        status = ScheduleStatus(row.status)
        next_run = row.next_run_at
        if status is ScheduleStatus.ACTIVE and definition.timing != _timing_of(row):
            next_run = first_slot(definition.timing, row.db_now)
        try:
            with wrap_db_errors():
                written = st.write(
                    conn,
                    schedule_id,
                    definition,
                    status=status,
                    next_run_at=next_run,
                    declared=row.declared,
                )
        except UniqueViolation:
            raise ScheduleExists(f"a schedule named {definition.name!r} exists") from None
    log.info("schedule.updated", tenant_id=str(tenant_id), schedule_id=str(schedule_id))
    return ScheduleRead.model_validate(written)


def pause(tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleRead:
    """Stop firing (a paused schedule's slots are skipped, not missed). Pausing a paused
    schedule changes nothing; an archived one is ScheduleNotActive."""
    return _set_status(tenant_id, schedule_id, ScheduleStatus.PAUSED)


def resume(tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleRead:
    """Fire again (a paused or archived schedule), from the first slot after now."""
    return _set_status(tenant_id, schedule_id, ScheduleStatus.ACTIVE)


def archive(tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleRead:
    """Retire a schedule: it fires nothing and is hidden from lists; its row stays, so the
    jobs it fired still name it. ``resume`` brings it back."""
    return _set_status(tenant_id, schedule_id, ScheduleStatus.ARCHIVED)


def _set_status(
    tenant_id: uuid.UUID, schedule_id: uuid.UUID, target: ScheduleStatus
) -> ScheduleRead:
    tenant_id, schedule_id = _ref(tenant_id, schedule_id)
    with transaction() as conn:
        row = _locked(conn, tenant_id, schedule_id)
        current = ScheduleStatus(row.status)
        if current is target:
            return ScheduleRead.model_validate(row)
        if target is ScheduleStatus.PAUSED and current is ScheduleStatus.ARCHIVED:
            raise ScheduleNotActive("an archived schedule cannot be paused (resume it first)")
        definition = definition_of(row)
        active = target is ScheduleStatus.ACTIVE
        next_run = first_slot(definition.timing, row.db_now) if active else None
        written = st.write(
            conn,
            schedule_id,
            definition,
            status=target,
            next_run_at=next_run,
            declared=row.declared,
        )
    log.info(
        "schedule.status_changed",
        tenant_id=str(tenant_id),
        schedule_id=str(schedule_id),
        status=target.value,
    )
    return ScheduleRead.model_validate(written)


def run_now(
    tenant_id: uuid.UUID, schedule_id: uuid.UUID, *, actor: str | None = None
) -> EnqueuedJob:
    """One job for the schedule now, beside its slots (they go on as before), through the
    ordinary enqueue path; its key is ``schedule:<id>:manual:<hex>``; ``actor`` is named in
    its ``enqueued`` event, as for ``enqueue``. The schedule must be active: a paused or
    archived one is ScheduleNotActive, and nothing is written."""
    tenant_id, schedule_id = _ref(tenant_id, schedule_id)
    with session_scope() as session:
        conn = session.connection()
        row = _locked(conn, tenant_id, schedule_id)
        if row.status != ScheduleStatus.ACTIVE:
            raise ScheduleNotActive(f"schedule {row.name!r} is {row.status}: resume it first")
        request = JobRequest(
            row.job_type, row.payload, tenant_id, idempotency_key=run_now_key(schedule_id)
        )
        (job,) = enqueue_many([request], session=session, actor=actor)
        execute(conn, st.RECORD_RUN_NOW, {"id": schedule_id, "job_id": job.id})
    log.info(
        "schedule.run_now", tenant_id=str(tenant_id), schedule_id=str(schedule_id), job_id=job.id
    )
    return job


def upcoming(tenant_id: uuid.UUID, schedule_id: uuid.UUID, count: int = 10) -> list[datetime]:
    """The schedule's next ``count`` slots (UTC): from its next run when active, else those
    a resume now would fire."""
    count = as_int(count, "count", 1, UPCOMING_MAX, InvalidOption)
    schedule = get(tenant_id, schedule_id)
    timing = _timing_of(schedule)
    if schedule.next_run_at is not None:
        return timing.upcoming(schedule.next_run_at, count)
    with transaction() as conn:
        now = st.clock(conn)
    return timing.upcoming(first_slot(timing, now), count)


def definition_of(row: Any) -> Definition:
    """A stored schedule's definition, as it was checked when written (not checked again:
    its job type need not be known to this process)."""
    return Definition(
        name=row.name,
        job_type=row.job_type,
        payload_json=json.dumps(row.payload),
        timing=_timing_of(row),
        misfire_policy=MisfirePolicy(row.misfire_policy),
        catch_up_limit=row.catch_up_limit,
        jitter_seconds=row.jitter_seconds,
    )


def _timing_of(row: Any) -> Timing:
    return Timing(row.cron, row.interval_seconds, row.timezone)


def _merged(row: Any, given: dict[str, Any]) -> Definition:
    """The row's definition with the arguments :func:`update` was given, checked whole."""
    cron, every = given["cron"], given["every"]
    if cron is UNSET and every is UNSET:
        cron, every = row.cron, row.interval_seconds
    elif cron is UNSET:
        cron = None
    elif every is UNSET:
        every = None
    misfire = row.misfire_policy if given["misfire"] is UNSET else given["misfire"]
    limit = given["catch_up_limit"]
    if limit is UNSET:
        limit = row.catch_up_limit if misfire == "catch_up" else None

    def pick(field: str, current: object) -> Any:
        return current if given[field] is UNSET else given[field]

    return define(
        pick("name", row.name),
        pick("job_type", row.job_type),
        cron=cron,
        every=every,
        tz=pick("tz", row.timezone),
        payload=pick("payload", row.payload),
        misfire=misfire,
        catch_up_limit=limit,
        jitter=pick("jitter", row.jitter_seconds),
    )


def _locked(conn: Any, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> Any:
    row = st.lock_one(conn, tenant_id, schedule_id)
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} not found")
    return row


def _found(row: Any, schedule_id: uuid.UUID) -> ScheduleRead:
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} not found")
    return ScheduleRead.model_validate(row)


def _tenant(tenant_id: object) -> uuid.UUID:
    return as_uuid(tenant_id, "tenant_id", InvalidOption)


def _ref(tenant_id: object, schedule_id: object) -> tuple[uuid.UUID, uuid.UUID]:
    return _tenant(tenant_id), as_uuid(schedule_id, "schedule_id", InvalidOption)


def _statuses(
    status: ScheduleStatus | str | Iterable[ScheduleStatus | str] | None,
) -> list[str]:
    try:
        if status is None:
            return [s.value for s in VISIBLE]
        if isinstance(status, str):
            return [ScheduleStatus(status).value]
        return [ScheduleStatus(s).value for s in status]
    except (TypeError, ValueError):
        allowed = ", ".join(ScheduleStatus)
        raise InvalidOption.for_field("status", f"must be one of: {allowed}") from None


_CURSOR_CHARS = 200


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(f"n1:{name}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: object) -> str:
    """The name a cursor of :func:`_encode_cursor` holds; InvalidOption for anything else."""
    try:
        if not isinstance(cursor, str) or len(cursor) > _CURSOR_CHARS:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not raw.startswith("n1:"):
            raise ValueError(raw)
        return schedule_name(raw[3:])
    except (binascii.Error, UnicodeError, ValueError, InvalidOption):
        raise InvalidOption("invalid cursor", ("cursor",)) from None
