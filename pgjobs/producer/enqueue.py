"""``enqueue`` and ``enqueue_many``: the transactional outbox (docs/architecture.md).

The row (pending) and its ``enqueued`` event are written first; the message (ids only) is sent
only after that write commits; then the row becomes queued, marked by the process's background
marker shortly after (pgjobs/producer/sender.py). Two modes:

* standalone (no ``session``): one statement in autocommit on the thread's held connection,
  then the send (one script call);
* inside the caller's SQLAlchemy ``Session``: rows are written in the caller's transaction and
  the messages wait in ``session.info`` until it commits; a rollback drops them unsent.

If the send fails (Redis down) the job stays pending and durable; the relay sends it later.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple, SupportsFloat, TypedDict

from pydantic import BaseModel
from sqlalchemy.orm import Session
from typing_extensions import Unpack

from pgjobs.db.engine import autocommit
from pgjobs.db.errors import wrap_db_errors
from pgjobs.db.held import held_connection
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models.job import JobStatus
from pgjobs.db.statements import Plan, run, run_driver
from pgjobs.db.timestamps import LATEST
from pgjobs.db.validation import as_int, as_moment, as_text, as_uuid
from pgjobs.logs import get_logger
from pgjobs.producer import broker, sender
from pgjobs.producer.combine import Combiner, Rules
from pgjobs.producer.errors import (
    InvalidOption,
    InvalidPayload,
    ProducerError,
    QuotaExceeded,
    UnknownTenant,
)
from pgjobs.producer.job_types import JobType, get_job_type
from pgjobs.producer.outbox import defer_until_commit
from pgjobs.producer.payloads import validated_payload
from pgjobs.producer.quotas import quota_refusals
from pgjobs.producer.shares import share_key
from pgjobs.settings import Settings, get_settings

log = get_logger(__name__)

_SMALLINT = 32767


class JobRequest(NamedTuple):
    """One job for :func:`enqueue_many` (same options as :func:`enqueue`).

    A named tuple, like :class:`EnqueuedJob`: immutable, and built in a third of a frozen
    dataclass's time (0.44 against 1.19 µs), which a batch of a thousand pays per job."""

    type: str | JobType[Any]
    payload: Mapping[str, Any] | BaseModel
    tenant_id: uuid.UUID
    idempotency_key: str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    priority: int | None = None
    max_attempts: int | None = None


class EnqueuedJob(NamedTuple):
    """What enqueue returns. ``created`` is False when the idempotency key matched a job."""

    id: int
    tenant_id: uuid.UUID
    type: str
    status: JobStatus
    message_id: str | None
    run_at: datetime
    created: bool


@dataclass(frozen=True, slots=True)
class Prepared:
    """Validated requests: their rows (as columns), and the queue each message goes to."""

    jobs: sm.NewJobs
    queues: list[str]

    def __len__(self) -> int:
        return len(self.queues)


class JobOptions(TypedDict, total=False):
    """The per-job options of :func:`enqueue` (those of :class:`JobRequest`)."""

    idempotency_key: str | None
    delay: float | timedelta | None
    run_at: datetime | None
    priority: int | None
    max_attempts: int | None


def enqueue(
    type: str | JobType[Any],
    payload: Mapping[str, Any] | BaseModel,
    *,
    tenant_id: uuid.UUID,
    session: Session | None = None,
    actor: str | None = None,
    **options: Unpack[JobOptions],
) -> EnqueuedJob:
    """Record one job and send its message after commit. Options: ``idempotency_key``,
    ``delay`` (seconds or a timedelta) or ``run_at``, ``priority``, ``max_attempts`` (the
    type's by default). ``actor`` (who asked, e.g. an API token) is recorded in the job's
    ``enqueued`` event.

    Raises (and writes nothing): UnknownJobType, InvalidPayload, PayloadTooLarge, InvalidOption,
    UnknownTenant, QuotaExceeded.
    """
    request = JobRequest(type, payload, tenant_id, **options)
    return enqueue_many([request], session=session, actor=actor)[0]


def enqueue_many(
    requests: Sequence[JobRequest], *, session: Session | None = None, actor: str | None = None
) -> list[EnqueuedJob]:
    """Record many jobs in one statement and send their messages in one pipelined round trip.

    All or nothing: one invalid request or unknown tenant raises before anything is written
    (the error's ``index`` says which request it is about).
    """
    if session is not None and not isinstance(session, Session):
        raise InvalidOption.for_field("session", "must be a SQLAlchemy Session")
    prepared = prepare_requests(requests, actor)
    if not prepared:
        return []
    if session is None:
        return results(prepared, _combined(prepared))
    with quota_refusals(), wrap_db_errors():
        inserted = run(session.connection(), insert_plan(prepared))
    defer_until_commit(session, outgoing_messages(prepared, inserted))
    return results(prepared, inserted)


def joined(calls: Sequence[Prepared]) -> Prepared:
    """Standalone calls made one, for one statement (``combine.py``); one call as it is."""
    if len(calls) == 1:
        return calls[0]
    jobs = sm.NewJobs.joined([call.jobs for call in calls])
    return Prepared(jobs, [queue for call in calls for queue in call.queues])


def split(calls: Sequence[Prepared], inserted: sm.Inserted) -> list[sm.Inserted]:
    """Each call's part of what :func:`joined` calls' statement wrote."""
    return [inserted] if len(calls) == 1 else inserted.parts([len(call) for call in calls])


def outgoing_of(calls: Sequence[Prepared], parts: Sequence[sm.Inserted]) -> list[broker.Outgoing]:
    """Every call's messages, in one list (one send for all)."""
    pairs = zip(calls, parts, strict=True)
    return [message for call, part in pairs for message in outgoing_messages(call, part)]


def _write(calls: Sequence[Prepared]) -> sm.Inserted:
    """The outbox INSERT of standalone calls, one statement for all of them."""
    return _insert_standalone(joined(calls))


def _finish(calls: Sequence[Prepared], inserted: sm.Inserted) -> list[sm.Inserted]:
    """After :func:`_write` committed: every call's messages in one send (then marked queued
    soon), and each call's part of what was written."""
    parts = split(calls, inserted)
    sender.send_and_mark(outgoing_of(calls, parts))
    return parts


COMBINE_UP_TO = 100
"""Standalone calls of at most this many jobs share a write with the process's concurrent
calls (pgjobs/producer/combine.py); larger ones write by themselves."""
ALONE_UP_TO = 4
"""While at most this many standalone calls of a process are under way, each writes at once;
beyond, a call waits for the write in flight and is written with the others. Measured with 1
and 2 processes of 2 to 8 threads (docs/performance.md): up to 4 callers, writing each at once
was as fast as combining or faster; at 8 callers per process combining ran 1.36-1.59x faster."""


def _combine_key(call: Prepared) -> tuple[str | None, int | None]:
    """Calls combine with calls of the same actor and share size (one statement, one each)."""
    return call.jobs.actor, call.jobs.share_in_flight


COMBINING: Rules[Prepared] = Rules(
    key=_combine_key,
    size=len,
    refusals=(UnknownTenant, QuotaExceeded),
    up_to=COMBINE_UP_TO,
    crowd=ALONE_UP_TO,
)
"""When standalone calls share a write, here and in ``pgjobs.aio``: an unknown tenant or a
quota refuses a combined INSERT as a whole (nothing written), for one call's sake."""

_combined: Combiner[Prepared, sm.Inserted, sm.Inserted] = Combiner(_write, _finish, COMBINING)


def _insert_standalone(prepared: Prepared) -> sm.Inserted:
    """The outbox INSERT committed by itself (autocommit: the statement is the transaction),
    on the thread's held connection (``db.held``), else on one from the pool."""
    with quota_refusals(), held_connection() as held:
        if held is not None:
            return run_driver(held, insert_plan(prepared))
    with quota_refusals(), autocommit() as conn:
        return run(conn, insert_plan(prepared))


def prepare_requests(requests: object, actor: object = None) -> Prepared:
    """Every request validated before anything touches the database (the boundary of
    ``enqueue_many`` here and in ``pgjobs.aio``). An error names the failing request's
    position in ``index``."""
    try:
        given = list(requests)  # type: ignore[call-overload]
    except TypeError:  # not iterable
        raise InvalidOption.for_field("requests", "must be a sequence of JobRequest") from None
    checked = None
    if actor is not None:
        checked = as_text(actor, "actor", min_length=1, max_length=200, error=InvalidOption)
    settings = get_settings()
    message_ids = broker.new_message_ids(len(given))
    tenant_ids = []
    queues = []
    rows = []
    for index, request in enumerate(given):
        try:
            tenant_id, queue, row = _prepare(request, settings, message_ids[index])
        except ProducerError as exc:
            exc.index = index
            raise
        tenant_ids.append(tenant_id)
        queues.append(queue)
        rows.append(row)
    jobs = sm.NewJobs.of_rows(tenant_ids, rows, checked, settings.fair_share_in_flight)
    return Prepared(jobs, queues)


def insert_plan(prepared: Prepared) -> Plan[sm.Inserted]:
    """The outbox INSERT of prepared jobs, for either shell; UnknownTenant when any tenant
    is missing (then nothing was written)."""
    inserted = yield from sm.insert_columns_plan(prepared.jobs)
    if not inserted.complete:
        raise UnknownTenant("unknown tenant")
    return inserted


def results(prepared: Prepared, inserted: sm.Inserted) -> list[EnqueuedJob]:
    """What ``enqueue_many`` returns for the rows written (or found by idempotency key)."""
    jobs = prepared.jobs
    columns = (inserted.ids, jobs.tenant_ids, jobs.types, inserted.statuses, jobs.message_ids)
    rows = zip(*columns, inserted.run_ats, repeat(True, len(inserted.ids)), strict=True)
    # each tuple is already the job's fields in order: made into an EnqueuedJob as it is
    out: list[EnqueuedJob] = list(map(_as_enqueued, rows))
    if None in inserted.ids:  # some were found by their idempotency key: the existing jobs
        for i, job_id in enumerate(inserted.ids):
            if job_id is None:
                j = inserted.found[i]
                fields = (j.id, j.tenant_id, j.type, j.status, j.queue_job_id, j.run_at)
                out[i] = EnqueuedJob(*fields, created=False)
    return out


_as_enqueued = partial(tuple.__new__, EnqueuedJob)


def outgoing_messages(prepared: Prepared, inserted: sm.Inserted) -> list[broker.Outgoing]:
    """Messages for the rows this call created (an idempotent repeat sends nothing). A job due
    beyond the scheduling horizon gets none now: the relay sends it when it comes near; a held
    one neither: its tenant's fair share sends it."""
    horizon_ms = get_settings().schedule_horizon_seconds * 1000
    jobs = prepared.jobs
    out = []
    columns = (inserted.ids, inserted.statuses, inserted.due_in_ms, jobs.tenant_ids)
    for job_id, status, due_in_ms, tenant_id, queue, message_id in zip(
        *columns, prepared.queues, jobs.message_ids, strict=True
    ):
        if job_id is None:  # found by its idempotency key: not created here
            continue
        # a held job is sent when its tenant's fair share frees (pgjobs/producer/shares.py)
        if status is not JobStatus.HELD and due_in_ms <= horizon_ms:
            out.append(broker.Outgoing(job_id, tenant_id, queue, message_id, due_in_ms or None))
    return out


def _prepare(
    request: object, settings: Settings, message_id: str
) -> tuple[uuid.UUID, str, sm.NewJobRow]:
    """Validate one request completely before anything touches the database: this is the
    boundary of enqueue and enqueue_many, every argument checked here. Its tenant, its queue
    and the rest of its row (the other columns of ``sm.NewJobs``)."""
    if not isinstance(request, JobRequest):
        raise InvalidOption.for_field("requests", "must hold JobRequest items")
    job_type = request.type if isinstance(request.type, JobType) else get_job_type(request.type)
    tenant_id = as_uuid(request.tenant_id, "tenant_id", InvalidOption)
    payload_json = validated_payload(job_type, request.payload, settings.max_payload_bytes)
    run_at, delay_seconds = _due(request.delay, request.run_at)
    # as_int's checks, skipped for a plain int in range (the common case, checked in a line)
    priority = job_type.priority if request.priority is None else request.priority
    if type(priority) is not int or not -_SMALLINT <= priority <= _SMALLINT:
        priority = as_int(priority, "priority", -_SMALLINT, _SMALLINT, InvalidOption)
    max_attempts = job_type.max_attempts if request.max_attempts is None else request.max_attempts
    if type(max_attempts) is not int or not 1 <= max_attempts <= 100:
        max_attempts = as_int(max_attempts, "max_attempts", 1, 100, InvalidOption)
    key = request.idempotency_key
    if key is not None:
        key = as_text(key, "idempotency_key", min_length=1, max_length=200, error=InvalidOption)
    row = (
        job_type.name, payload_json, message_id, max_attempts, priority, run_at, delay_seconds,
        key, _concurrency_key(job_type, tenant_id, payload_json),
        job_type.concurrency.max if job_type.concurrency else None,
        share_key(job_type.queue, tenant_id, settings.fair_queues),
    )  # fmt: skip
    return tenant_id, job_type.queue, row


def _concurrency_key(job_type: JobType[Any], tenant_id: uuid.UUID, payload: str) -> str | None:
    """The job's concurrency key (docs/limits.md), from the validated payload; None (and no
    cost) for a type without a limit."""
    if job_type.concurrency is None:
        return None
    try:
        return job_type.concurrency.key_for(job_type.name, tenant_id, json.loads(payload))
    except Exception as exc:  # noqa: BLE001 - a user's key function: any error refuses the job
        message = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
        raise InvalidPayload(job_type.name, [("concurrency key", "value_error", message)]) from None


def _due(delay: object, run_at: object) -> tuple[datetime | None, float | None]:
    """(run_at, delay in seconds): a delay is added to the database's clock, not ours. Either
    way the job falls due before ``db.timestamps.LATEST``, so its row can always be read."""
    if delay is not None and run_at is not None:
        raise InvalidOption("give delay or run_at, not both")
    if run_at is not None:
        # In UTC: an offset with seconds or microseconds has no text PostgreSQL reads back.
        return as_moment(run_at, "run_at", InvalidOption).astimezone(UTC), None
    if delay is None:
        return None, None
    try:
        if isinstance(delay, bool) or not isinstance(delay, timedelta | SupportsFloat):
            raise TypeError(delay)
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    except (TypeError, ValueError):
        raise InvalidOption.for_field("delay", "must be seconds or a timedelta") from None
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not seconds >= 0:  # also refuses NaN
        raise InvalidOption.for_field("delay", "must not be negative")
    if not seconds < (LATEST - datetime.now(UTC)).total_seconds():
        raise InvalidOption.for_field("delay", f"must end before {LATEST:%Y-%m-%d} (UTC)")
    return None, seconds
