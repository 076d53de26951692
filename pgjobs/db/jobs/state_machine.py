"""Every change of a job's status, one named SQL statement each, its event in the same statement.

This module is the only place that writes ``content_jobs.status``. Each transition is a single
``UPDATE ... WHERE id = ... AND status IN (...)`` (Procrastinate's shape) whose ``RETURNING`` feeds
an ``INSERT INTO job_events`` in the same statement, so the status change and its event commit
together, in one round trip. A transition whose guard matches no row changes nothing and returns
``None``/``False``: the caller decides whether that is a no-op (a duplicate message) or an error.

Worker-side transitions are *fenced* by the attempt number: a worker whose lease expired and whose
job was claimed again (attempts incremented) can no longer complete, fail or retry it.

The legal moves (docs/architecture.md)::

    pending --send--> queued --claim--> active --> succeeded | failed | cancelled
       |                 ^                 |
       +--> cancelled    +---- retry ------+   (also: lease expired -> rescued -> queued)

    limits and fair shares (docs/limits.md): a claim with no slot or room parks a job as
    waiting; enqueue writes a job beyond its tenant's fair share as held; both go back to
    queued when their key has room, and both can be cancelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, TextClause, text

from pgjobs.db.models.job import JobStatus
from pgjobs.db.statements import Plan, Step, all_same_object, execute_step, run
from pgjobs.db.statements import execute as _run

# Legal (from, to) pairs of content_jobs.status. The tests replay every recorded event
# history against this table (tests/jobwait.py: assert_legal_history).
TRANSITIONS: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (JobStatus.PENDING, JobStatus.QUEUED),
        (JobStatus.PENDING, JobStatus.CANCELLED),
        (JobStatus.QUEUED, JobStatus.ACTIVE),
        (JobStatus.PENDING, JobStatus.ACTIVE),  # the message overtook its own mark_sent
        (JobStatus.QUEUED, JobStatus.CANCELLED),
        (JobStatus.ACTIVE, JobStatus.SUCCEEDED),
        (JobStatus.ACTIVE, JobStatus.FAILED),
        (JobStatus.ACTIVE, JobStatus.CANCELLED),
        (JobStatus.ACTIVE, JobStatus.QUEUED),  # retry, rescue, release
        (JobStatus.ACTIVE, JobStatus.ACTIVE),  # claim of an expired lease (rescued + started)
        (JobStatus.FAILED, JobStatus.PENDING),  # manual retry
        (JobStatus.CANCELLED, JobStatus.PENDING),  # manual retry
        # concurrency limits (docs/limits.md): a claim with no free slot parks the job, a
        # freed slot sends it again, a waiting job can be cancelled
        (JobStatus.PENDING, JobStatus.WAITING),
        (JobStatus.QUEUED, JobStatus.WAITING),
        (JobStatus.ACTIVE, JobStatus.WAITING),  # an expired lease taken over, no slot free
        (JobStatus.WAITING, JobStatus.QUEUED),
        (JobStatus.WAITING, JobStatus.CANCELLED),
        # rate limits: a job parked for its rate is claimed by its delayed message when due
        (JobStatus.WAITING, JobStatus.ACTIVE),
        # fair shares (docs/limits.md): enqueue writes a job beyond its tenant's share as
        # held; a share freed sends it, and a held job can be cancelled
        (JobStatus.HELD, JobStatus.QUEUED),
        (JobStatus.HELD, JobStatus.CANCELLED),
    }
)


@dataclass(frozen=True, slots=True)
class NewJob:
    """One row for :func:`insert_pending`. ``payload`` is already validated JSON."""

    tenant_id: uuid.UUID
    type: str
    payload_json: str
    message_id: str
    max_attempts: int
    priority: int
    run_at: datetime | None
    """An explicit due time, or None: due now plus ``delay_seconds`` by the database clock."""
    delay_seconds: float | None
    idempotency_key: str | None
    actor: str | None = None
    """Who asked (an API token's id), recorded in the ``enqueued`` event."""
    concurrency_key: str | None = None
    """The job type's concurrency limit key for this job, and its maximum (docs/limits.md)."""
    concurrency_max: int | None = None
    share_key: str | None = None
    """Its fair share (``<queue>:<tenant id>``) when its queue is a fair one (docs/limits.md)."""
    share_in_flight: int | None = None
    """The share's size for a tenant of weight 1 (``JOBS_FAIR_SHARE_IN_FLIGHT``)."""


@dataclass(frozen=True, slots=True)
class InsertedJob:
    id: int
    tenant_id: uuid.UUID
    type: str
    status: JobStatus
    queue_job_id: str | None
    run_at: datetime
    idempotency_key: str | None
    created: bool
    """False when the idempotency key matched an existing job (nothing was written)."""
    due_in_ms: int
    """Milliseconds from now until ``run_at`` by the database clock (0: due)."""


NewJobRow = tuple[
    str, str, str, int, int, datetime | None, float | None,
    str | None, str | None, int | None, str | None,
]  # fmt: skip
"""One job of :class:`NewJobs` but its tenant: its values in the order of the columns. Without
the tenant (a ``UUID``) it holds only values the garbage collector stops tracking at its first
pass, so a batch's rows are not promoted to its older generations while they wait."""


_COLUMNS = (
    "tenant_ids", "types", "payloads", "message_ids", "max_attempts", "priorities", "run_ats",
    "delays", "keys", "limit_keys", "limit_maxes", "share_keys",
)  # fmt: skip
"""The per-job fields of :class:`NewJobs`, in order."""


@dataclass(slots=True)
class NewJobs:
    """Jobs to insert, as the columns ``INSERT_PENDING`` takes (one list per column, one entry
    per job). ``enqueue_many`` writes a plain tuple per job and transposes them: a
    :class:`NewJob` per job, with its fourteen fields, cost as much as validating the payload.
    The fields mean what :class:`NewJob`'s do."""

    tenant_ids: list[uuid.UUID]
    types: list[str]
    payloads: list[str]
    message_ids: list[str]
    max_attempts: list[int]
    priorities: list[int]
    run_ats: list[datetime | None]
    delays: list[float | None]
    keys: list[str | None]
    limit_keys: list[str | None]
    limit_maxes: list[int | None]
    share_keys: list[str | None]
    actor: str | None = None
    share_in_flight: int | None = None
    """One size per call (``enqueue_many`` reads the setting once)."""

    @classmethod
    def of_rows(
        cls,
        tenant_ids: list[uuid.UUID],
        rows: Sequence[NewJobRow],
        actor: str | None,
        share_in_flight: int | None,
    ) -> NewJobs:
        c: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
        c = c or [[] for _ in range(11)]
        return cls(tenant_ids, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10],
                   actor, share_in_flight)  # fmt: skip

    @classmethod
    def joined(cls, parts: Sequence[NewJobs]) -> NewJobs:
        """One statement's jobs made of several calls' (equal actor and share size: the
        first's are taken), in order."""
        c: list[list[Any]] = [
            [v for part in parts for v in getattr(part, name)] for name in _COLUMNS
        ]
        return cls(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11],
                   parts[0].actor, parts[0].share_in_flight)  # fmt: skip

    @classmethod
    def of(cls, jobs: Sequence[NewJob]) -> NewJobs:
        rows = [
            (j.type, j.payload_json, j.message_id, j.max_attempts, j.priority, j.run_at,
             j.delay_seconds, j.idempotency_key, j.concurrency_key, j.concurrency_max, j.share_key)
            for j in jobs
        ]  # fmt: skip
        actor = jobs[0].actor if jobs else None
        share_in_flight = next((j.share_in_flight for j in jobs if j.share_key), None)
        return cls.of_rows([j.tenant_id for j in jobs], rows, actor, share_in_flight)

    def __len__(self) -> int:
        return len(self.message_ids)

    def params(self) -> dict[str, Any]:
        """``INSERT_PENDING``'s parameters."""
        return {
            "tenant_ids": self.tenant_ids,
            "types": self.types,
            "payloads": self.payloads,
            "message_ids": self.message_ids,
            "max_attempts": self.max_attempts,
            "priorities": self.priorities,
            "run_ats": self.run_ats,
            "delays": self.delays,
            "keys": self.keys,
            "limit_keys": self.limit_keys,
            "limit_maxes": self.limit_maxes,
            "share_keys": self.share_keys,
            "share_in_flight": self.share_in_flight,
            "n_tenants": _distinct(self.tenant_ids),
            "actor": self.actor,
        }

    def one(self) -> dict[str, Any]:
        """``INSERT_ONE_PENDING``'s parameters, for the first job."""
        return {
            "tenant_id": self.tenant_ids[0],
            "type": self.types[0],
            "payload": self.payloads[0],
            "message_id": self.message_ids[0],
            "max_attempts": self.max_attempts[0],
            "priority": self.priorities[0],
            "run_at": self.run_ats[0],
            "delay": self.delays[0],
            "idempotency_key": self.keys[0],
            "actor": self.actor,
            "limit_key": self.limit_keys[0],
            "limit_max": self.limit_maxes[0],
            "share_key": self.share_keys[0],
            "share_in_flight": self.share_in_flight,
        }


def _distinct(values: list[Any]) -> int:
    """How many distinct values (one, without hashing, when all are the same object: a UUID
    hashes in Python)."""
    return 1 if values and all_same_object(values) else len(set(values))


_STATUS = {status.value: status for status in JobStatus}
_UNWRITTEN = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True)
class Inserted:
    """What the outbox INSERT did, by each job's position in its input, as columns again (no
    object per job: a batch's objects alive across a collection are what makes the garbage
    collector's full passes come often). ``ids[i]`` None: job ``i`` was not written: its
    idempotency key matched ``found[i]`` (``created=False``), or some tenant is unknown and
    nothing was written; its status, run_at and due_in_ms are then placeholders."""

    ids: list[int | None]
    statuses: list[JobStatus]
    run_ats: list[datetime]
    due_in_ms: list[int]
    found: dict[int, InsertedJob]

    @classmethod
    def none(cls, count: int) -> Inserted:
        """``count`` jobs, none written yet."""
        return cls([None] * count, [JobStatus.PENDING] * count, [_UNWRITTEN] * count,
                   [0] * count, {})  # fmt: skip

    def parts(self, sizes: Sequence[int]) -> list[Inserted]:
        """Split by the calls that :meth:`NewJobs.joined` made one (``sizes``: theirs)."""
        out, start = [], 0
        for size in sizes:
            end = start + size
            found = {i - start: job for i, job in self.found.items() if start <= i < end}
            part = slice(start, end)
            out.append(Inserted(self.ids[part], self.statuses[part], self.run_ats[part],
                                self.due_in_ms[part], found))  # fmt: skip
            start = end
        return out

    @property
    def complete(self) -> bool:
        """Every job written or found (False: an unknown tenant, nothing written)."""
        return all(job_id is not None or i in self.found for i, job_id in enumerate(self.ids))

    def job(self, jobs: NewJobs, i: int) -> InsertedJob | None:
        """Job ``i`` as one object (what :func:`insert_pending` returns)."""
        job_id = self.ids[i]
        if job_id is None:
            return self.found.get(i)
        return InsertedJob(
            job_id, jobs.tenant_ids[i], jobs.types[i], self.statuses[i], jobs.message_ids[i],
            self.run_ats[i], jobs.keys[i], True, self.due_in_ms[i],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_expires_at: datetime
    rescued: bool
    """True when the claim took over an expired lease (a ``rescued`` event was written too)."""
    concurrency_key: str | None = None
    """Its concurrency limit's key: the slot it holds until it leaves active."""
    share_key: str | None = None
    """Its fair share: held jobs of the share may go once it leaves active."""


# --- producer side ------------------------------------------------------------------------------

_INSERT_INTO = """
    INSERT INTO content_jobs (tenant_id, type, payload, status, queue_job_id, max_attempts,
                              priority, run_at, idempotency_key, concurrency_key,
                              concurrency_max, share_key, share_max)
"""
# A job in flight for its concurrency key or fair share (docs/limits.md): running under a live
# lease, or due (within the second) and on its way to a claim. Jobs of the key are `a`. The
# first condition repeats the statuses so that the (key, status) indexes find them: without
# it a count read every job the key ever had.
_IN_FLIGHT = """(a.status IN ('active', 'pending', 'queued')
                 AND ((a.status = 'active' AND a.lease_expires_at >= now())
                      OR (a.status IN ('pending', 'queued')
                          AND a.run_at <= now() + interval '1 second')))"""
# How many more due jobs a fair share takes (0 while jobs of it are held: they go first).
_SHARE_ROOM = f"""CASE WHEN EXISTS (SELECT 1 FROM content_jobs h
                                    WHERE h.share_key = {{key}} AND h.status = 'held')
                  THEN 0
                  ELSE greatest(0, {{cap}} - (SELECT count(*) FROM (
                      SELECT 1 FROM content_jobs a WHERE a.share_key = {{key}} AND {_IN_FLIGHT}
                      LIMIT {{cap}}) f)) END"""  # noqa: S608 - constant fragments
# A share's size: the setting given times the tenant's weight (`t`).
_SHARE_CAP = "CAST(:share_in_flight AS int) * t.share_weight"
_SHARE_MAX = f"CASE WHEN {{key}} IS NULL THEN NULL ELSE {_SHARE_CAP} END"
# Milliseconds until a job is due by the database clock, 0 when due. In epoch seconds rather
# than as ``run_at - now()``: a row written by hand may hold 'infinity', which no interval holds.
_DUE_IN_MS = """least(greatest(0, ceil((extract(epoch FROM run_at) - extract(epoch FROM now()))
                                * 1000)), 9223372036854775807)::bigint AS due_in_ms"""
# after the rows to insert: skip a taken idempotency key, write the events, count the quotas;
# then each statement's own SELECT says what was written and when each job is due (due_in_ms:
# the delay its message gets, by the database clock, never a client's)
_INSERT_REST = """
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, tenant_id, type, status, queue_job_id, run_at, idempotency_key
), events AS (
    INSERT INTO job_events (job_id, tenant_id, event_type, data)
    SELECT id, tenant_id, 'enqueued',
           jsonb_strip_nulls(jsonb_build_object(
               'type', type, 'run_at', run_at, 'idempotency_key', idempotency_key,
               'actor', CAST(:actor AS text),
               'held', CASE WHEN status = 'held' THEN 'fair share' END))
    FROM inserted
), counted AS (
    -- the jobs created count against the tenant's quotas, if it has any: a count that would
    -- pass its quota breaks the usage row's CHECK and PostgreSQL refuses the whole statement
    INSERT INTO tenant_quota_usage AS u (tenant_id, day, job_type, used, per_day)
    SELECT q.tenant_id, CAST(timezone('UTC', now()) AS date), q.job_type, sum(c.n), q.per_day
    FROM (SELECT tenant_id, type, count(*) AS n FROM inserted GROUP BY tenant_id, type) c
    JOIN tenant_quotas q ON q.tenant_id = c.tenant_id AND q.job_type IN (c.type, '*')
    GROUP BY q.tenant_id, q.job_type, q.per_day
    ON CONFLICT (tenant_id, day, job_type)
    DO UPDATE SET used = u.used + EXCLUDED.used, per_day = EXCLUDED.per_day
)"""

INSERT_PENDING = text(
    f"""
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:tenant_ids AS uuid[]), CAST(:types AS text[]), CAST(:payloads AS text[]),
            CAST(:message_ids AS text[]), CAST(:max_attempts AS int[]), CAST(:priorities AS int[]),
            CAST(:run_ats AS timestamptz[]), CAST(:delays AS float8[]), CAST(:keys AS text[]),
            CAST(:limit_keys AS text[]), CAST(:limit_maxes AS int[]),
            CAST(:share_keys AS text[])
        ) WITH ORDINALITY AS u(tenant_id, type, payload, message_id, max_attempts, priority,
                               given_run_at, delay, idempotency_key, limit_key, limit_max,
                               share_key, ord)
        CROSS JOIN LATERAL (SELECT coalesce(u.given_run_at, now() + make_interval(
            secs => coalesce(u.delay, 0))) AS run_at) d
    ), shares AS (
        -- each fair share's room for due jobs (none when no job is in a fair queue)
        SELECT k.share_key, {_SHARE_ROOM.format(key="k.share_key", cap="k.cap")} AS room
        FROM (SELECT DISTINCT i.share_key, {_SHARE_CAP} AS cap
              FROM input i JOIN tenants t ON t.id = i.tenant_id
              WHERE i.share_key IS NOT NULL) k
    ), inserted AS ({_INSERT_INTO}
        SELECT i.tenant_id, i.type, CAST(i.payload AS jsonb),
               CASE WHEN i.share_key IS NULL OR i.run_at > now() + interval '1 second'
                         OR row_number() OVER (
                                PARTITION BY i.share_key, i.run_at > now() + interval '1 second'
                                ORDER BY i.ord) <= s.room
                    THEN 'pending' ELSE 'held' END,
               i.message_id, i.max_attempts, i.priority, i.run_at,
               i.idempotency_key, i.limit_key, i.limit_max,
               i.share_key, {_SHARE_MAX.format(key="i.share_key")}
        FROM input i JOIN tenants t ON t.id = i.tenant_id
        LEFT JOIN shares s ON s.share_key = i.share_key
        -- all or nothing: if any tenant is unknown, insert no row at all
        WHERE (SELECT count(*) FROM tenants WHERE id = ANY(CAST(:tenant_ids AS uuid[])))
              = CAST(:n_tenants AS int)
        ORDER BY i.ord
    {_INSERT_REST}
    -- only what the caller does not know: the tenant, type and key are its own, and run_at
    -- is given only where it differs from the row before (a batch's rows mostly share it:
    -- one timestamp to read instead of one per row)
    SELECT id, queue_job_id, status,
           CASE WHEN run_at IS DISTINCT FROM lag(run_at) OVER (ORDER BY id) THEN run_at END,
           {_DUE_IN_MS}
    FROM inserted ORDER BY id"""  # noqa: S608
)

INSERT_ONE_PENDING = text(
    f"""
    WITH inserted AS ({_INSERT_INTO}
        SELECT t.id, CAST(:type AS text), CAST(:payload AS jsonb),
               CASE WHEN CAST(:share_key AS text) IS NULL
                         OR d.run_at > now() + interval '1 second'
                         OR {_SHARE_ROOM.format(key="CAST(:share_key AS text)", cap=_SHARE_CAP)} > 0
                    THEN 'pending' ELSE 'held' END,
               CAST(:message_id AS text), CAST(:max_attempts AS int), CAST(:priority AS int),
               d.run_at, CAST(:idempotency_key AS text), CAST(:limit_key AS text),
               CAST(:limit_max AS int), CAST(:share_key AS text),
               {_SHARE_MAX.format(key="CAST(:share_key AS text)")}
        FROM tenants t
        CROSS JOIN LATERAL (SELECT coalesce(CAST(:run_at AS timestamptz), now() + make_interval(
            secs => coalesce(CAST(:delay AS float8), 0))) AS run_at) d
        WHERE t.id = CAST(:tenant_id AS uuid)  -- none for an unknown tenant
    {_INSERT_REST}
    SELECT *, {_DUE_IN_MS} FROM inserted"""  # noqa: S608
)
"""The same for one job: no arrays to build, unnest and join (a single ``enqueue`` is the
commonest call; this form costs the server and the client less per call)."""

SELECT_BY_IDEMPOTENCY_KEYS = text(
    f"""
    SELECT j.id, j.tenant_id, j.type, j.status, j.queue_job_id, j.run_at, j.idempotency_key,
           {_DUE_IN_MS}
    FROM content_jobs j
    JOIN unnest(CAST(:tenant_ids AS uuid[]), CAST(:keys AS text[])) AS k(tenant_id, key)
      ON j.tenant_id = k.tenant_id AND j.idempotency_key = k.key
    """  # noqa: S608
)


def insert_pending(conn: Connection, jobs: Sequence[NewJob]) -> list[InsertedJob | None]:
    """Insert jobs as ``pending`` with their ``enqueued`` events; one statement for all.

    Returns one entry per input, in order: the new job, or the existing job when its idempotency
    key was taken (``created=False``). When any tenant does not exist nothing is inserted and
    the entries of the jobs not found by idempotency key are ``None``.
    """
    return run(conn, insert_pending_plan(jobs))


def insert_pending_plan(jobs: Sequence[NewJob]) -> Plan[list[InsertedJob | None]]:
    """:func:`insert_pending` for either shell (pgjobs/db/statements.py). One actor per call:
    the first job's."""
    columns = NewJobs.of(jobs)
    inserted = yield from insert_columns_plan(columns)
    return [inserted.job(columns, i) for i in range(len(columns))]


def insert_columns_plan(jobs: NewJobs) -> Plan[Inserted]:
    """The outbox INSERT of jobs given as columns (``enqueue_many``'s form), its answer as
    columns too: no object per job on either side."""
    inserted = Inserted.none(len(jobs))
    ids, statuses = inserted.ids, inserted.statuses
    run_ats, dues = inserted.run_ats, inserted.due_in_ms
    if len(jobs) == 1:
        rows = yield Step(INSERT_ONE_PENDING, jobs.one())
        for row in rows:  # none: its key was taken, or its tenant is unknown
            ids[0], statuses[0], run_ats[0], dues[0] = (
                row.id, _STATUS[row.status], row.run_at, row.due_in_ms
            )  # fmt: skip
    elif jobs:
        rows = yield Step(INSERT_PENDING, jobs.params(), tuples=True)
        position = {message_id: i for i, message_id in enumerate(jobs.message_ids)}
        run_at: Any = None  # the first row gives it
        for job_id, message_id, status, changed_run_at, due_in_ms in rows:
            if changed_run_at is not None:  # given only where it differs from the row before
                run_at = changed_run_at
            i = position[message_id]
            ids[i], statuses[i], run_ats[i], dues[i] = job_id, _STATUS[status], run_at, due_in_ms
    missing = [i for i, job_id in enumerate(ids) if job_id is None and jobs.keys[i]]
    if missing:
        tenant_ids = [jobs.tenant_ids[i] for i in missing]
        keys = [jobs.keys[i] for i in missing]
        existing = yield Step(SELECT_BY_IDEMPOTENCY_KEYS, {"tenant_ids": tenant_ids, "keys": keys})
        by_key = {(r.tenant_id, r.idempotency_key): _inserted(r, created=False) for r in existing}
        for i, tenant_id, key in zip(missing, tenant_ids, keys, strict=True):
            found = by_key.get((tenant_id, key))
            if found is not None:
                inserted.found[i] = found
    return inserted


def _inserted(row: Any, *, created: bool) -> InsertedJob:
    return InsertedJob(
        id=row.id,
        tenant_id=row.tenant_id,
        type=row.type,
        status=JobStatus(row.status),
        queue_job_id=row.queue_job_id,
        run_at=row.run_at,
        idempotency_key=row.idempotency_key,
        created=created,
        due_in_ms=int(row.due_in_ms),
    )


MARK_SENT = text(
    """
    WITH target AS (
        SELECT id FROM content_jobs
        -- primary-key lookups only (see CLAIM): a generic plan once took every live job from
        -- the partial run_at index and intersected it with the ids
        WHERE id = ANY(CAST(:ids AS bigint[])) AND (status = 'pending') IS TRUE
        -- a row a worker is claiming right now is skipped, not waited for: it is leaving
        -- pending anyway, and waiting on many rows at once deadlocked with the claims
        FOR UPDATE SKIP LOCKED
    )
    UPDATE content_jobs j SET status = 'queued', updated_at = now()
    FROM target t
    WHERE j.id = t.id
      -- this statement's own transaction commits without waiting for the WAL flush
      AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
    """
)


def mark_sent(conn: Connection, job_ids: Sequence[int]) -> int:
    """pending -> queued once the message is on Redis. No event of its own: the ``enqueued``
    event already stands for it (docs/architecture.md). Returns how many rows moved.

    Committed asynchronously (no wait for the WAL flush; run it in autocommit): the mark is a
    hint, not a promise. If a server crash loses it, the row is pending again with its message
    on Redis; the relay finds the message there and marks the row, and the worker claims a
    pending job just as well."""
    return int(_run(conn, MARK_SENT, {"ids": list(job_ids)}).rowcount)


RESEND = text(
    """
    WITH input AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:message_ids AS text[]))
            AS i(id, message_id)
    ), moved AS (
        UPDATE content_jobs j
        SET status = 'queued', queue_job_id = i.message_id, updated_at = now()
        FROM input i
        -- primary-key lookups only (see CLAIM)
        WHERE j.id = i.id AND j.id = ANY(CAST(:ids AS bigint[]))
          AND (j.status IN ('pending', 'queued')) IS TRUE
        RETURNING j.id, j.tenant_id, j.type
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'enqueued',
               jsonb_build_object('type', type, 'resent', true, 'reason', CAST(:reason AS text))
        FROM moved
    )
    SELECT id FROM moved
    """
)


def record_resend(
    conn: Connection, job_ids: Sequence[int], message_ids: Sequence[str], reason: str
) -> int:
    """The relay re-sent these jobs' messages: each is queued under its new message id, with an
    ``enqueued`` event saying why. Returns how many rows were still waiting to run."""
    params = {"ids": list(job_ids), "message_ids": list(message_ids), "reason": reason}
    return len(_run(conn, RESEND, params).fetchall())


UNSENT_CANDIDATES = text(
    f"""
    SELECT id, tenant_id, type, status, queue_job_id, run_at,
           {_DUE_IN_MS}
    FROM content_jobs
    WHERE status = :status AND updated_at < now() - make_interval(secs => :older_than)
      AND run_at <= now() + make_interval(secs => :horizon)
      -- the live set's partial index, in a generic plan too (where :status is unknown)
      AND status IN ('pending', 'queued')
      -- types the relay cannot send (their queue is unknown to it) never fill its batch
      AND type = ANY(CAST(:types AS text[]))
    ORDER BY run_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """  # noqa: S608
)


def lock_unsent_candidates(
    conn: Connection,
    status: JobStatus,
    *,
    older_than_seconds: float,
    horizon_seconds: float,
    limit: int,
    types: list[str],
) -> list[Any]:
    """Rows the relay should look at, locked for this transaction (other relays skip them).

    Only rows due within ``horizon_seconds``: jobs scheduled further out wait in PostgreSQL,
    not in Redis's delay queue (whose messages Dramatiq workers hold in memory until due).
    Only rows of ``types`` (the ones the relay knows the queue of): rows of other types would
    be locked and skipped on every pass, and enough of them would fill every batch.
    """
    params = {
        "status": status.value,
        "older_than": older_than_seconds,
        "horizon": horizon_seconds,
        "limit": limit,
        "types": types,
    }
    return _run(conn, UNSENT_CANDIDATES, params).fetchall()


# The cancel's moves from the locked `target` rows (id, status): one statement for a job, one
# per batch in bulk. A waiting job is cancelled at once; a running one is asked to stop.
_CANCEL_MOVES = """cancelled AS (
        UPDATE content_jobs j
        SET status = 'cancelled', completed_at = now(), cancel_requested_at = now(),
            cancel_reason = CAST(:reason AS text), lease_expires_at = NULL, updated_at = now()
        FROM target t
        WHERE j.id = t.id AND t.status IN ('pending', 'queued', 'waiting', 'held')
        RETURNING j.id, j.tenant_id
    ), requested AS (
        -- The first request's time stays; its reason too, unless it gave none.
        UPDATE content_jobs j
        SET cancel_requested_at = coalesce(j.cancel_requested_at, now()),
            cancel_reason = coalesce(j.cancel_reason, CAST(:reason AS text)), updated_at = now()
        FROM target t
        WHERE j.id = t.id AND t.status = 'active'
        RETURNING j.id
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'cancelled',
               jsonb_build_object('reason', CAST(:reason AS text), 'while_running', false)
               || jsonb_strip_nulls(jsonb_build_object('actor', CAST(:actor AS text)))
        FROM cancelled ORDER BY id
    )"""

CANCEL = text(
    f"""
    WITH target AS (
        SELECT id, status FROM content_jobs
        WHERE id = :id AND tenant_id = :tenant_id FOR UPDATE
    ), {_CANCEL_MOVES}
    SELECT t.status AS previous,
           EXISTS (SELECT 1 FROM cancelled) AS cancelled,
           EXISTS (SELECT 1 FROM requested) AS requested
    FROM target t
    """  # noqa: S608 - the module's own constant fragment
)


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    previous: JobStatus
    cancelled: bool
    """Cancelled now (it was pending or queued)."""
    requested: bool
    """It is running: asked to stop at its next checkpoint."""


def cancel(
    conn: Connection, job_id: int, tenant_id: uuid.UUID, reason: str | None
) -> CancelOutcome | None:
    """Cancel a pending/queued job at once, or ask a running one to stop. ``None``: no such job
    for this tenant. A terminal job is left as it is (``cancelled=requested=False``)."""
    return run(conn, cancel_plan(job_id, tenant_id, reason))


def cancel_plan(
    job_id: int, tenant_id: uuid.UUID, reason: str | None, actor: str | None = None
) -> Plan[CancelOutcome | None]:
    """:func:`cancel` for either shell; ``actor`` goes into the ``cancelled`` event."""
    params = {"id": job_id, "tenant_id": tenant_id, "reason": reason, "actor": actor}
    rows = yield Step(CANCEL, params)
    if not rows:
        return None
    row = rows[0]
    return CancelOutcome(JobStatus(row.previous), row.cancelled, row.requested)


# A manual retry's columns (after SET, the new message id's expression before it) and its
# event from the `moved` rows: one statement for a job, one per batch in bulk.
_RETRY_SET = """status = 'pending', completed_at = NULL,
            cancel_requested_at = NULL, cancel_reason = NULL, lease_expires_at = NULL,
            result = NULL, progress = 0,
            progress_message = NULL, run_at = now(), updated_at = now(),
            max_attempts = greatest(j.max_attempts, j.attempts + 1)"""
_RETRY_EVENTS = """events AS (
        -- The last error when there was one (a cancelled job may have none).
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'retry',
               jsonb_strip_nulls(jsonb_build_object('attempt', attempts, 'manual', true,
                                                    'error', error_message,
                                                    'actor', CAST(:actor AS text)))
        FROM moved ORDER BY id
    )"""

MANUAL_RETRY = text(
    f"""
    WITH moved AS (
        UPDATE content_jobs j
        SET queue_job_id = :message_id, {_RETRY_SET}
        WHERE id = :id AND tenant_id = :tenant_id AND status IN ('failed', 'cancelled')
        RETURNING id, tenant_id, type, attempts, max_attempts, error_message
    ), {_RETRY_EVENTS}
    SELECT id, type, attempts, max_attempts FROM moved
    """  # noqa: S608 - the module's own constant fragments
)


@dataclass(frozen=True, slots=True)
class RetriedJob:
    type: str
    attempts: int
    """Attempts used so far: the retry runs attempt ``attempts + 1``."""
    max_attempts: int


def manual_retry(
    conn: Connection, job_id: int, tenant_id: uuid.UUID, message_id: str
) -> RetriedJob | None:
    """failed/cancelled -> pending for one more attempt (the attempt budget grows by one if it
    was used up), with a ``retry`` event marked manual. None when the job is not failed or
    cancelled (or not there)."""
    return run(conn, manual_retry_plan(job_id, tenant_id, message_id))


def manual_retry_plan(
    job_id: int, tenant_id: uuid.UUID, message_id: str, actor: str | None = None
) -> Plan[RetriedJob | None]:
    """:func:`manual_retry` for either shell; ``actor`` goes into the ``retry`` event."""
    params = {"id": job_id, "tenant_id": tenant_id, "message_id": message_id, "actor": actor}
    rows = yield Step(MANUAL_RETRY, params)
    if not rows:
        return None
    row = rows[0]
    return RetriedJob(str(row.type), row.attempts, row.max_attempts)


# --- bulk cancel / retry, run now (the dashboard and the API) -----------------------------------
# Set-based forms of CANCEL and MANUAL_RETRY: the same legal moves and the same events, for up
# to BULK_BATCH jobs of one tenant per statement, picked by ids or by a filter (the filters of
# list_jobs). A batch walks ids upwards from ``after_id`` and never past ``max_id`` (the newest
# job the caller counted: jobs created since are not touched); the caller loops batches.

BULK_BATCH = 1000
"""Jobs one bulk statement moves at most (its row locks, its transaction's size)."""

CANCELLABLE = ("pending", "queued", "waiting", "held", "active")
"""As CANCEL: cancelled at once, or (active) asked to stop. ``held`` is fair shares' parked
status (docs/limits.md), cancelled at once like ``waiting``."""
RETRYABLE = ("failed", "cancelled")

_BULK_MATCH = """
    tenant_id = :tenant_id
    AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))
    AND (CAST(:type AS text) IS NULL OR type = CAST(:type AS text))
    AND (CAST(:statuses AS text[]) IS NULL OR status = ANY(CAST(:statuses AS text[])))
    AND (CAST(:created_after AS timestamptz) IS NULL
         OR created_at >= CAST(:created_after AS timestamptz))
    AND (CAST(:created_before AS timestamptz) IS NULL
         OR created_at < CAST(:created_before AS timestamptz))
    AND (CAST(:idempotency_key AS text) IS NULL
         OR idempotency_key = CAST(:idempotency_key AS text))
    AND id > :after_id AND id <= :max_id"""
_BULK_TARGET = f"""
    target AS (
        SELECT id, status FROM content_jobs
        WHERE {_BULK_MATCH} AND status = ANY(CAST(:movable AS text[]))
        -- rows are locked in id order: concurrent bulk calls cannot deadlock on each other
        ORDER BY id LIMIT :batch
        FOR UPDATE
    )"""  # noqa: S608 - the module's own constant fragments

BULK_COUNT = text(
    f"""
    SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM content_jobs
    WHERE {_BULK_MATCH} AND status = ANY(CAST(:movable AS text[]))
    """  # noqa: S608
)

BULK_CANCEL = text(
    f"""
    WITH {_BULK_TARGET}, {_CANCEL_MOVES}
    SELECT id, true AS done FROM cancelled
    UNION ALL SELECT id, false FROM requested
    UNION ALL SELECT coalesce(max(id), 0), NULL FROM target
    """  # noqa: S608
)

BULK_RETRY = text(
    f"""
    WITH {_BULK_TARGET}, moved AS (
        UPDATE content_jobs j
        SET queue_job_id = gen_random_uuid()::text, {_RETRY_SET}
        FROM target t
        WHERE j.id = t.id
        RETURNING j.id, j.tenant_id, j.type, j.attempts, j.error_message, j.queue_job_id
    ), {_RETRY_EVENTS}
    SELECT id, type, queue_job_id, true AS done FROM moved
    UNION ALL SELECT coalesce(max(id), 0), NULL, NULL, NULL FROM target
    """  # noqa: S608
)


@dataclass(frozen=True, slots=True)
class JobSelection:
    """Which jobs of one tenant a bulk call is about: ``ids``, or a filter (every field
    optional, combined with AND), never past ``max_id``."""

    tenant_id: uuid.UUID
    ids: tuple[int, ...] | None = None
    statuses: tuple[JobStatus, ...] | None = None
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    idempotency_key: str | None = None
    max_id: int = 9223372036854775807

    def params(self, movable: Sequence[str], after_id: int = 0) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "ids": None if self.ids is None else list(self.ids),
            "type": self.type,
            "statuses": None if self.statuses is None else [s.value for s in self.statuses],
            "created_after": self.created_after,
            "created_before": self.created_before,
            "idempotency_key": self.idempotency_key,
            "after_id": after_id,
            "max_id": self.max_id,
            "movable": list(movable),
            "batch": BULK_BATCH,
        }


@dataclass(frozen=True, slots=True)
class BulkCount:
    jobs: int
    """Jobs the selection matches that the action can move."""
    max_id: int
    """The newest of them: pass it back as the selection's ``max_id`` to act on these only."""


def bulk_count_plan(selection: JobSelection, movable: Sequence[str]) -> Plan[BulkCount]:
    """How many jobs a bulk call on ``selection`` would move (its confirmation)."""
    rows = yield Step(BULK_COUNT, selection.params(movable))
    return BulkCount(int(rows[0].n), int(rows[0].max_id))


@dataclass(frozen=True, slots=True)
class BulkBatch:
    moved: list[Any]
    """Cancel: (id, done) rows, done False for a running job asked to stop. Retry: (id, type,
    queue_job_id) rows of the jobs now pending, their messages to send."""
    last_id: int
    """The highest id the batch locked (0: none): the next batch starts after it."""


def bulk_cancel_plan(
    selection: JobSelection, after_id: int, reason: str | None, actor: str | None
) -> Plan[BulkBatch]:
    """:data:`CANCEL` for the next batch of ``selection`` after ``after_id``, one statement."""
    params = selection.params(CANCELLABLE, after_id) | {"reason": reason, "actor": actor}
    rows = yield Step(BULK_CANCEL, params)
    return BulkBatch(
        [r for r in rows if r.done is not None], max(r.id for r in rows if r.done is None)
    )


def bulk_retry_plan(selection: JobSelection, after_id: int, actor: str | None) -> Plan[BulkBatch]:
    """:data:`MANUAL_RETRY` for the next batch of ``selection`` after ``after_id``, one
    statement; each job gets a new message id."""
    rows = yield Step(BULK_RETRY, selection.params(RETRYABLE, after_id) | {"actor": actor})
    return BulkBatch(
        [r for r in rows if r.done is not None], max(r.id for r in rows if r.done is None)
    )


RUN_NOW = text(
    """
    WITH moved AS (
        -- not a status change (pending and queued stay so): the job is due now under a new
        -- message id; the delayed message, when it comes, finds the job run or running
        UPDATE content_jobs
        SET run_at = now(), queue_job_id = :message_id, updated_at = now()
        WHERE id = :id AND tenant_id = :tenant_id AND status IN ('pending', 'queued')
          AND run_at > now()
        RETURNING id, tenant_id, type, status
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'enqueued',
               jsonb_build_object('type', type, 'resent', true, 'reason', 'run now')
               || jsonb_strip_nulls(jsonb_build_object('actor', CAST(:actor AS text)))
        FROM moved
    )
    SELECT id, type, status FROM moved
    """
)


def run_now_plan(
    job_id: int, tenant_id: uuid.UUID, message_id: str, actor: str | None
) -> Plan[str | None]:
    """A delayed job (pending or queued, due later) due now under ``message_id``, with an
    ``enqueued`` event (resent, ``run now``, the actor). Its type, or None when the job is
    not delayed (or not there); the caller sends the message after commit."""
    params = {"id": job_id, "tenant_id": tenant_id, "message_id": message_id, "actor": actor}
    rows = yield Step(RUN_NOW, params)
    return str(rows[0].type) if rows else None


# --- worker side --------------------------------------------------------------------------------

_CLAIM_SELECT = """
    claim_input AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:tenant_ids AS uuid[]),
                             CAST(:message_ids AS text[]), CAST(:aheads AS boolean[]))
            WITH ORDINALITY AS i(id, tenant_id, message_id, ahead, ord)
    ), claim_rows AS (
        SELECT j.id, j.status, i.message_id, i.ord, i.ahead, j.concurrency_key,
               j.concurrency_max
        FROM content_jobs j JOIN claim_input i ON j.id = i.id
        -- Primary-key lookups only, whatever the statistics say: the `IS TRUE` wrappers hide
        -- these conditions from the (tenant_id, ...) and partial status indexes, through
        -- which a stale plan would walk a whole tenant or every live job.
        WHERE j.id = ANY(CAST(:ids AS bigint[]))
          AND (j.tenant_id = i.tenant_id) IS TRUE
          AND (j.status IN ('pending', 'queued')
               OR (j.status = 'active' AND j.lease_expires_at < now()
                   AND j.attempts < j.max_attempts)) IS TRUE
          AND (j.run_at <= now() + interval '1 second') IS TRUE
        -- rows are locked in id order: concurrent batches cannot deadlock on each other
        ORDER BY j.id
        FOR UPDATE OF j
    )"""
# The claim's target rows: claim_rows, and with limits the slots check before the update.
_CLAIM_UPDATE = """, claimed AS (
        UPDATE content_jobs j
        SET status = 'active', attempts = j.attempts + 1, started_at = statement_timestamp(),
            lease_expires_at = now() + make_interval(secs => :lease_seconds), updated_at = now()
        FROM claim_target t
        WHERE j.id = t.id
        RETURNING j.id, j.tenant_id, j.type, j.payload, j.attempts, j.max_attempts,
                  j.lease_expires_at, t.status = 'active' AS rescued, t.message_id, t.ord,
                  j.concurrency_key, j.share_key
    ), claim_events AS (
        -- One INSERT in a fixed order: a takeover's `rescued` event comes before its `started`.
        -- Stamped with the claim statement's start, not the transaction's: in a limited round
        -- (docs/limits.md) that is after its locks, so a start is never stamped before the end
        -- of the job whose slot it took (the same value as now() in a one-statement round).
        INSERT INTO job_events (job_id, tenant_id, event_type, data, created_at)
        SELECT c.id, c.tenant_id, e.event_type, e.data, statement_timestamp()
        FROM claimed c CROSS JOIN LATERAL (VALUES
            (1, 'rescued',
             jsonb_build_object('attempt', c.attempts - 1, 'reason', 'lease expired')),
            (2, 'started',
             jsonb_build_object('attempt', c.attempts, 'message_id', c.message_id,
                                'worker', CAST(:worker AS text)))
        ) AS e(ord, event_type, data)
        WHERE e.event_type = 'started' OR c.rescued
        ORDER BY c.ord, e.ord
    )"""

# Without limits every locked row is claimed.
_CLAIM_CTES = f"{_CLAIM_SELECT}, claim_target AS (SELECT * FROM claim_rows){_CLAIM_UPDATE}"  # noqa: S608

# With concurrency limits (docs/limits.md): a row whose key has no free slot is parked as
# `waiting` (one `waiting` event) instead of claimed. A slot is an active row of the key whose
# lease has not expired, so a dead worker's slots come back when its leases expire. Correct only
# after LOCK_LIMIT_KEYS, in the same transaction: the lock serialises the claims of a key, and
# this statement's snapshot, taken after it, sees every claim committed before.
_LIMIT_RANKED = """, claim_busy AS MATERIALIZED (
        -- Once per key (not per row of the batch), through the (key, status) index. The status
        -- is written as a range so that the planner cannot pick the partial index of live
        -- leases instead: walking every job claimed ahead, and every stale entry a drain leaves
        -- in it, for each key was most of a limited claim's cost (docs/limits.md).
        SELECT k.key, (SELECT count(*) FROM content_jobs a
                       WHERE a.concurrency_key = k.key
                         AND a.status BETWEEN 'active' AND 'active'
                         AND a.lease_expires_at >= now()) AS busy
        FROM (SELECT DISTINCT concurrency_key AS key FROM claim_rows
              WHERE concurrency_key IS NOT NULL) k
    ), claim_ranked AS (
        SELECT r.*, (r.concurrency_key IS NULL
                     OR coalesce(b.busy, 0) + row_number() OVER (
                            PARTITION BY r.concurrency_key ORDER BY r.id) <= r.concurrency_max
                    ) AS fits
        FROM claim_rows r LEFT JOIN claim_busy b ON b.key = r.concurrency_key
    )"""
# A row parked for a slot has no rate key (it waits for a slot, not a time); one that was
# already waiting (for its rate) records no second `waiting` event. A row claimed ahead that
# does not fit is neither claimed nor parked: its thread claims it again when it runs.
_LIMIT_PARK = """, parked AS (
        UPDATE content_jobs j
        SET status = 'waiting', lease_expires_at = NULL, rate_key = NULL, updated_at = now()
        FROM claim_ranked r
        WHERE j.id = r.id AND NOT r.fits AND NOT r.ahead
        RETURNING j.id, j.tenant_id, j.attempts, j.concurrency_key, j.concurrency_max,
                  r.status AS was
    ), park_events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'waiting',
               jsonb_build_object('attempt', attempts, 'reason', 'concurrency',
                                  'key', concurrency_key, 'max', concurrency_max)
        FROM parked WHERE was <> 'waiting' ORDER BY id
    )"""
_CLAIM_CTES_LIMITED = (
    _CLAIM_SELECT  # noqa: S608 - the module's own constant fragments
    + _LIMIT_RANKED
    + ", claim_target AS (SELECT * FROM claim_ranked WHERE fits)"
    + _LIMIT_PARK
    + _CLAIM_UPDATE
)

_CLAIMED_COLUMNS = (
    "id, tenant_id, type, payload, attempts, max_attempts, lease_expires_at, rescued, ord,"
    " concurrency_key, share_key"
)

# The f-strings below join this module's own constant SQL fragments, never input.
CLAIM = text(f"WITH {_CLAIM_CTES} SELECT {_CLAIMED_COLUMNS} FROM claimed")  # noqa: S608
CLAIM_LIMITED = text(
    f"WITH {_CLAIM_CTES_LIMITED} SELECT {_CLAIMED_COLUMNS} FROM claimed"  # noqa: S608
)

LOCK_LIMIT_KEYS = text(
    """
    -- one transaction-scoped lock per concurrency key of the batch, in one global order (the
    -- hash's), so two claim rounds never wait for each other's keys in a cycle
    SELECT count(pg_advisory_xact_lock(h)) FROM (
        SELECT DISTINCT hashtextextended(concurrency_key, 0) AS h FROM content_jobs
        -- primary-key lookups: `IS TRUE` keeps the plan off the (partial) key index
        WHERE id = ANY(CAST(:ids AS bigint[])) AND (concurrency_key IS NOT NULL) IS TRUE
        ORDER BY 1
    ) k
    """
)


PARKED_KEYS = text(
    """
    SELECT DISTINCT concurrency_key AS key FROM content_jobs
    -- parked for a slot by this transaction: its rows are locked, and now() is its own start
    -- (primary-key lookups only: `IS TRUE` hides the rest from the status and key indexes)
    WHERE id = ANY(CAST(:ids AS bigint[]))
      AND (status = 'waiting' AND rate_key IS NULL AND concurrency_key IS NOT NULL
           AND updated_at = now()) IS TRUE
    """
)


def parked_keys_step(job_ids: Sequence[int]) -> Step:
    """The concurrency keys of the jobs of a claim round that it parked for a slot, read in its
    transaction after the claim: the round releases them once committed, in case a slot freed
    while it ran (a completion that did not yet see the parked job leaves it to this)."""
    return Step(PARKED_KEYS, {"ids": list(job_ids)})


GENERIC_PLANS = text("SET LOCAL plan_cache_mode = force_generic_plan")
"""The first step of a limited round: its prepared statements run their cached generic plans.
Left to choose, PostgreSQL planned the key lock anew on every round (a custom plan for the
batch's array of ids always looked cheaper; 0.14 ms each), under no lock but once per round."""


def generic_plans_step() -> Step:
    return Step(GENERIC_PLANS, {})


def lock_keys_step(job_ids: Sequence[int], rate_keys: Sequence[str] = ()) -> Step:
    """Serialise the claims of these jobs' concurrency keys, and of these rate keys, until the
    transaction ends: the first statement of a limited claim round (docs/limits.md)."""
    if not rate_keys:
        return Step(LOCK_LIMIT_KEYS, {"ids": list(job_ids)})
    return Step(LOCK_LIMIT_AND_RATE_KEYS, {"ids": list(job_ids), "rate_keys": sorted(rate_keys)})


# --- rate limits (docs/limits.md) ----------------------------------------------------------------
# A claim round with rated job types declared computes the rate key of each rated job from its
# payload (pgjobs/worker/rates.py), locks the keys with the concurrency keys, then claims with
# the rate check: a key's window row keeps its starts of the last `per` seconds (a sliding
# window, exact), a job finding no room is parked `waiting` with `rate_key` set, `run_at` when
# its place in the key's line has room, and a new message id (sent delayed to then).

RATE_CANDIDATES = text(
    """
    SELECT id, tenant_id, type, payload FROM content_jobs
    WHERE id = ANY(CAST(:ids AS bigint[])) AND type = ANY(CAST(:types AS text[]))
    ORDER BY id
    """
)

LOCK_LIMIT_AND_RATE_KEYS = text(
    """
    -- LOCK_LIMIT_KEYS with the rate keys too, all in one global order (no cycle between rounds)
    SELECT count(pg_advisory_xact_lock(h)) FROM (
        SELECT DISTINCT h FROM (
            SELECT hashtextextended(concurrency_key, 0) AS h FROM content_jobs
            WHERE id = ANY(CAST(:ids AS bigint[])) AND (concurrency_key IS NOT NULL) IS TRUE
            UNION ALL
            SELECT hashtextextended('rate:' || k, 0) FROM unnest(CAST(:rate_keys AS text[])) u(k)
        ) x
        ORDER BY 1
    ) k
    """
)

# A job parked for its rate is claimable by its own (latest) message only: a message the sweep
# replaced does nothing.
_RATE_CLAIMABLE = """(j.status IN ('pending', 'queued')
               OR (j.status = 'waiting' AND j.rate_key IS NOT NULL
                   AND j.queue_job_id = i.message_id)"""
assert _CLAIM_SELECT.count("(j.status IN ('pending', 'queued')") == 1
_CLAIM_SELECT_RATED = _CLAIM_SELECT.replace("(j.status IN ('pending', 'queued')", _RATE_CLAIMABLE)

# After _LIMIT_RANKED: the rows that fit their concurrency limit, ranked within their rate key.
# `room`: n less the key's starts inside the window (read after the key's lock); the first
# `room` of a key start, their starts appended to its window row in the same statement.
_RATE_CHECK = """, rate_input AS (
        SELECT * FROM unnest(CAST(:rate_ids AS bigint[]), CAST(:rate_keys AS text[]),
                             CAST(:rate_ns AS int[]), CAST(:rate_pers AS float8[]))
            AS u(id, key, n, per)
    ), rate_keys AS (
        SELECT k.key, k.n, k.per,
               ARRAY(SELECT s FROM unnest(w.starts) AS s
                     WHERE s > statement_timestamp() - make_interval(secs => k.per)
                     ORDER BY s) AS recent
        FROM (SELECT key, min(n) AS n, max(per) AS per FROM rate_input GROUP BY key) k
        LEFT JOIN rate_windows w ON w.key = k.key
    ), rate_ranked AS (
        SELECT r.id, r.status, k.key, k.n, k.per, k.recent,
               k.n - cardinality(k.recent) AS room,
               row_number() OVER (PARTITION BY k.key ORDER BY r.id) AS pos
        FROM claim_ranked r JOIN rate_input i ON i.id = r.id JOIN rate_keys k ON k.key = i.key
        WHERE r.fits
    ), rate_taken AS (
        INSERT INTO rate_windows AS w (key, starts)
        SELECT key, recent || array_fill(statement_timestamp(), ARRAY[CAST(count(*) AS int)])
        FROM rate_ranked WHERE pos <= room
        GROUP BY key, recent
        ON CONFLICT (key) DO UPDATE SET starts = excluded.starts
    ), rate_over AS (
        -- place: 0 for the first in the key's line, counting the jobs parked before it
        SELECT x.id, x.status, x.key, x.n, x.per,
               ARRAY(SELECT s FROM unnest(x.recent || array_fill(statement_timestamp(),
                                                ARRAY[CAST(greatest(x.room, 0) AS int)])) AS s
                     ORDER BY s) AS after,
               x.pos - greatest(x.room, 0) - 1 + (
                   SELECT count(*) FROM content_jobs q
                   WHERE q.rate_key = x.key AND q.status = 'waiting' AND q.id < x.id
                     AND q.id <> ALL(CAST(:rate_ids AS bigint[]))) AS place
        FROM rate_ranked x
        WHERE x.pos > x.room
    ), claim_target AS (
        SELECT * FROM claim_ranked r
        WHERE r.fits AND NOT EXISTS (SELECT 1 FROM rate_over o WHERE o.id = r.id)
    )"""
# The j-th place (0-based) of a full window's line starts when the window's (j mod n)-th start,
# oldest first, is (1 + j div n) windows old. One `waiting` event when the job starts waiting,
# none when a job already waiting for its rate is parked again.
_RATE_PARK = """, rate_parked AS (
        UPDATE content_jobs j
        SET status = 'waiting', rate_key = o.key, lease_expires_at = NULL,
            run_at = o.after[o.place % o.n + 1]
                     + make_interval(secs => o.per * (1 + o.place / o.n)),
            queue_job_id = gen_random_uuid()::text, updated_at = now()
        FROM rate_over o
        WHERE j.id = o.id
        RETURNING j.id, j.tenant_id, j.attempts, j.run_at, o.key, o.n, o.per, o.status AS was
    ), rate_park_events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'waiting',
               jsonb_build_object('attempt', attempts, 'reason', 'rate', 'key', key, 'n', n,
                                  'per', per, 'not_before', run_at)
        FROM rate_parked WHERE was <> 'waiting' ORDER BY id
    )"""
_CLAIM_CTES_RATED = (
    _CLAIM_SELECT_RATED + _LIMIT_RANKED + _RATE_CHECK + _LIMIT_PARK + _RATE_PARK + _CLAIM_UPDATE
)
CLAIM_RATED = text(f"WITH {_CLAIM_CTES_RATED} SELECT {_CLAIMED_COLUMNS} FROM claimed")  # noqa: S608

RATE_PARKED = text(
    f"""
    SELECT id, tenant_id, type, queue_job_id, {_DUE_IN_MS} FROM content_jobs
    -- parked by this transaction: its rows are locked, and now() is its own start
    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'waiting' AND rate_key IS NOT NULL
      AND updated_at = now()
    ORDER BY id
    """  # noqa: S608 - the module's own constant fragment
)

RATE_RESEND_LOST = text(
    f"""
    WITH lost AS (
        SELECT id FROM content_jobs
        WHERE rate_key IS NOT NULL AND status = 'waiting'
          AND run_at < now() - make_interval(secs => :grace)
        ORDER BY run_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    -- due now: the next pass re-sends it only if this message too is lost for as long (a pass
    -- every tick would replace the message before a long queue delivers it, for ever)
    UPDATE content_jobs j
    SET queue_job_id = gen_random_uuid()::text, run_at = now(), updated_at = now()
    FROM lost l
    WHERE j.id = l.id
    RETURNING j.id, j.tenant_id, j.type, j.queue_job_id, {_DUE_IN_MS}
    """  # noqa: S608 - the module's own constant fragment
)

RATE_WAITING = text(
    """
    SELECT rate_key AS key, count(*) AS waiting, min(run_at) AS next_at FROM content_jobs
    WHERE rate_key IS NOT NULL AND status = 'waiting'
    GROUP BY rate_key
    ORDER BY count(*) DESC, rate_key
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True)
class RateCandidate:
    """A job of a rated type in a claim batch: the worker computes its key from the payload."""

    id: int
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RateCheck:
    """The rate of each rated job of a claim batch: key, ``n`` starts per ``per`` seconds."""

    ids: list[int]
    keys: list[str]
    ns: list[int]
    pers: list[float]


def rate_candidates(
    conn: Connection, job_ids: Sequence[int], types: Sequence[str]
) -> list[RateCandidate]:
    """The jobs of ``job_ids`` whose type is one of ``types`` (the rated ones)."""
    rows = _run(conn, RATE_CANDIDATES, {"ids": list(job_ids), "types": list(types)})
    return [RateCandidate(r.id, r.tenant_id, r.type, r.payload) for r in rows]


def rate_parked_step(job_ids: Sequence[int]) -> Step:
    """The jobs of ``job_ids`` this transaction parked for their rate, with their new message
    ids and how long until due (read with :func:`released_of`): the caller sends them,
    delayed, after commit. The last statement of a claim round with rates."""
    return Step(RATE_PARKED, {"ids": list(job_ids)})


def resend_lost_rate_waits(
    conn: Connection, *, grace_seconds: float, limit: int
) -> list[ReleasedJob]:
    """Jobs waiting for their rate whose due time passed ``grace_seconds`` ago without a claim
    (their message was lost: Redis emptied, a send failed): a new message id each, due now, for
    the caller to send. The old message, if it ever comes, does nothing."""
    rows = _run(conn, RATE_RESEND_LOST, {"grace": grace_seconds, "limit": limit}).fetchall()
    return released_of(rows)


@dataclass(frozen=True, slots=True)
class RateWaiting:
    key: str
    waiting: int
    next_at: datetime


def rate_waiting(conn: Connection, limit: int = 1000) -> list[RateWaiting]:
    """Rate keys with jobs waiting for room, the most waiting first (operators: the
    ``pgjobs_rate_waiting_jobs`` gauge). Keys span tenants: not for a tenant's eyes."""
    rows = _run(conn, RATE_WAITING, {"limit": limit})
    return [RateWaiting(r.key, int(r.waiting), r.next_at) for r in rows]


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One delivery asking to run a job: its message id goes into the ``started`` event."""

    job_id: int
    tenant_id: uuid.UUID
    message_id: str | None
    ahead: bool = False
    """Claimed before a thread is free for it (pgjobs/worker/claim_ahead.py): with limits, a job
    whose key has no free slot is left as it is (not parked): its thread claims it when it
    runs, by then often with a slot, so a job claimed ahead never holds a slot it cannot use."""


def claim_many(
    conn: Connection,
    requests: Sequence[ClaimRequest],
    *,
    lease_seconds: float,
    worker: str | None,
) -> list[ClaimedJob | None]:
    """queued (or active with an expired lease) -> active for each request, in one statement;
    attempts + 1; payloads returned. One answer per request, in order.

    A pending job is claimable too: its message exists, so it was sent, and the worker may simply
    have been faster than the producer's pending -> queued update.

    ``None`` when the job is missing, terminal, not yet due, or held by a live lease: the
    message is then a duplicate and does nothing. Job ids must be distinct within one call.
    With limits declared, a worker's round is :func:`claim_round_step` with ``limited``.
    """
    step = claim_round_step(requests, (), lease_seconds=lease_seconds, worker=worker)
    return claim_round_result(execute_step(conn, step).fetchall(), requests, ()).claimed


def claim_round_step(
    requests: Sequence[ClaimRequest],
    completions: Sequence[Completion],
    *,
    lease_seconds: float,
    worker: str | None,
    limited: bool = False,
    rates: RateCheck | None = None,
) -> Step:
    """The one statement of a worker's round: its claims, and its completions if any (read
    its rows with :func:`claim_round_result`); never with a job both claimed and completed.

    ``limited``: check concurrency limits (docs/limits.md), parking a job whose key has no free
    slot as ``waiting`` (its answer is None); only in a transaction that ran
    :func:`lock_keys_step` for these jobs first. ``rates``: check rate limits too, parking a
    job over its rate as ``waiting`` until its window has room (after :func:`lock_keys_step`
    with the rate keys; then :func:`rate_parked_step`)."""
    params = _claim_params(requests, lease_seconds, worker) | _rate_params(rates)
    if not completions:
        return Step(CLAIM_RATED if rates else CLAIM_LIMITED if limited else CLAIM, params)
    params |= _complete_params(completions)
    if rates:
        return Step(CLAIM_AND_COMPLETE_RATED, params)
    return Step(CLAIM_AND_COMPLETE_LIMITED if limited else CLAIM_AND_COMPLETE, params)


class RoundResult(NamedTuple):
    """The answers of a worker's round, in the order of its requests and completions."""

    claimed: list[ClaimedJob | None]
    """Per claim request: the job, or None (a duplicate, or parked for a slot or a rate)."""
    held: list[bool]
    """Per completion: written (False: the attempt's lease was lost, nothing written)."""
    frees: list[bool]
    """Per completion: its concurrency key has a waiting job and room for it now (release)."""


def claim_round_result(
    rows: Sequence[Any], requests: Sequence[ClaimRequest], completions: Sequence[Completion]
) -> RoundResult:
    """The rows of :func:`claim_round_step`'s statement: one answer per request and one per
    completion, in order."""
    if not completions:
        return RoundResult(_claimed_in_order(rows, len(requests)), [], [])
    claimed = _claimed_in_order([row for row in rows if row.is_claim], len(requests))
    done = [row for row in rows if not row.is_claim]
    return RoundResult(claimed, *_completed_in_order(done, completions))


def _completed_in_order(
    rows: Sequence[Any], completions: Sequence[Completion]
) -> tuple[list[bool], list[bool]]:
    """(held, frees) per completion from the rows of the jobs a statement completed."""
    frees = {row.id: bool(row.frees) for row in rows}
    return [c.job_id in frees for c in completions], [
        frees.get(c.job_id, False) for c in completions
    ]


def _rate_params(rates: RateCheck | None) -> dict[str, Any]:
    if rates is None:
        return {}
    return {
        "rate_ids": rates.ids,
        "rate_keys": rates.keys,
        "rate_ns": rates.ns,
        "rate_pers": rates.pers,
    }


def _claim_params(
    requests: Sequence[ClaimRequest], lease_seconds: float, worker: str | None
) -> dict[str, Any]:
    return {
        "ids": [r.job_id for r in requests],
        "tenant_ids": [r.tenant_id for r in requests],
        "message_ids": [r.message_id for r in requests],
        "aheads": [r.ahead for r in requests],
        "lease_seconds": lease_seconds,
        "worker": worker,
    }


def _claimed_in_order(rows: Sequence[Any], count: int) -> list[ClaimedJob | None]:
    by_ord = {
        row.ord: ClaimedJob(
            id=row.id,
            tenant_id=row.tenant_id,
            type=row.type,
            payload=row.payload,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            lease_expires_at=row.lease_expires_at,
            rescued=row.rescued,
            concurrency_key=row.concurrency_key,
            share_key=row.share_key,
        )
        for row in rows
    }
    return [by_ord.get(n) for n in range(1, count + 1)]


def claim(
    conn: Connection,
    job_id: int,
    tenant_id: uuid.UUID,
    *,
    lease_seconds: float,
    message_id: str | None,
    worker: str | None,
) -> ClaimedJob | None:
    """:func:`claim_many` for one job."""
    request = ClaimRequest(job_id, tenant_id, message_id)
    return claim_many(conn, [request], lease_seconds=lease_seconds, worker=worker)[0]


EXTEND_LEASES = text(
    """
    UPDATE content_jobs j
    SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS h(id, attempt)
    -- primary-key lookups only (see CLAIM)
    WHERE j.id = h.id AND j.id = ANY(CAST(:ids AS bigint[]))
      AND (j.status = 'active' AND j.attempts = h.attempt) IS TRUE
    RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancel_requested
    """
)


@dataclass(frozen=True, slots=True)
class LeaseState:
    held: bool
    """False: the lease was lost (the job was rescued and claimed again, or ended)."""
    cancel_requested: bool


def extend_leases(
    conn: Connection, held: Sequence[tuple[int, int]], lease_seconds: float
) -> dict[int, LeaseState]:
    """Push forward the leases of every job a worker runs, in one statement (not a status
    change: no event). ``held`` is (job id, attempt) pairs; the answer tells, per job, whether
    the lease is still held and whether a cancellation was requested."""
    if not held:
        return {}
    params = {
        "ids": [job_id for job_id, _ in held],
        "attempts": [attempt for _, attempt in held],
        "lease_seconds": lease_seconds,
    }
    found = {r.id: r.cancel_requested for r in _run(conn, EXTEND_LEASES, params)}
    return {
        job_id: LeaseState(job_id in found, bool(found.get(job_id, False))) for job_id, _ in held
    }


RECORD_PROGRESS = text(
    """
    WITH updated AS (
        UPDATE content_jobs
        SET progress = :percent, progress_message = :message, updated_at = now(),
            lease_expires_at = greatest(lease_expires_at,
                                        now() + make_interval(secs => :lease_seconds))
        WHERE id = :id AND status = 'active' AND attempts = :attempt
        RETURNING id, tenant_id, cancel_requested_at IS NOT NULL AS cancel_requested
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'progress',
               jsonb_strip_nulls(jsonb_build_object('percent', CAST(:percent AS int),
                                                    'message', CAST(:message AS text)))
        FROM updated
    )
    SELECT cancel_requested FROM updated
    """
)


def record_progress(
    conn: Connection,
    job_id: int,
    attempt: int,
    percent: int,
    message: str | None,
    lease_seconds: float,
) -> LeaseState:
    """Progress of a running job (and its ``progress`` event); extends the lease too."""
    row = _run(
        conn,
        RECORD_PROGRESS,
        {
            "id": job_id,
            "attempt": attempt,
            "percent": percent,
            "message": message,
            "lease_seconds": lease_seconds,
        },
    ).fetchone()
    if row is None:
        return LeaseState(held=False, cancel_requested=False)
    return LeaseState(held=True, cancel_requested=row.cancel_requested)


_COMPLETE_CTES = """
    done_input AS (
        SELECT * FROM unnest(CAST(:done_ids AS bigint[]), CAST(:done_attempts AS int[]),
                             CAST(:results AS text[]), CAST(:durations AS float8[]))
            AS i(id, attempt, result, duration_ms)
    ), done AS (
        UPDATE content_jobs j
        SET status = 'succeeded', result = CAST(i.result AS jsonb), progress = 100,
            completed_at = now(), lease_expires_at = NULL, updated_at = now()
        FROM done_input i
        -- primary-key lookups only (see CLAIM)
        WHERE j.id = i.id AND j.id = ANY(CAST(:done_ids AS bigint[]))
          AND (j.status = 'active' AND j.attempts = i.attempt) IS TRUE
        RETURNING j.id, j.tenant_id, j.attempts, i.duration_ms, j.concurrency_key,
                  j.concurrency_max
    ), done_events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'completed',
               jsonb_build_object('attempt', attempts, 'duration_ms', duration_ms)
        FROM done ORDER BY id
    )"""

# Whether a completed job frees a slot that a waiting job of its concurrency key can take: one
# waits, and the key's jobs in flight, less those this statement completes (its snapshot still
# sees them active), are under the key's maximum (counted no further than that: a key's backlog
# can be long). Only then does the worker run a release (pgjobs/worker/limits.py): during a
# backlog a key's queued jobs fill its room, and a release per round that found none was most of
# a limited drain's extra cost (docs/limits.md). A hint read without the key's lock: a job
# parked while this statement ran is released by its parker.
_FREES_WAITING = f""", done_keys AS (
        SELECT concurrency_key AS key, count(*) AS n, max(concurrency_max) AS max
        FROM done WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key
    ), freeing AS (
        SELECT k.key FROM done_keys k
        -- CASE: the count only for a key that has a waiting job (most have none); a scalar
        -- subquery per key, not EXISTS, which the planner may turn into a hash of every
        -- waiting job of every key
        WHERE CASE WHEN (SELECT true FROM content_jobs w
                         WHERE w.concurrency_key = k.key AND w.status = 'waiting'
                           AND w.rate_key IS NULL LIMIT 1)
                   THEN (SELECT count(*) FROM (
                           SELECT 1 FROM content_jobs a
                           WHERE a.concurrency_key = k.key AND {_IN_FLIGHT}
                           LIMIT k.max + k.n) f) - k.n < k.max
                   ELSE false END
    )"""  # noqa: S608 - constant fragments
_FREES = "coalesce(d.concurrency_key IN (SELECT key FROM freeing), false)"

COMPLETE = text(
    f"WITH {_COMPLETE_CTES}{_FREES_WAITING} SELECT d.id, {_FREES} AS frees FROM done d"  # noqa: S608
)

_ROUND_SELECT = (
    f"SELECT true AS is_claim, {_CLAIMED_COLUMNS}, false AS frees FROM claimed "  # noqa: S608
    "UNION ALL SELECT false, d.id"
    + ", NULL" * _CLAIMED_COLUMNS.count(",")  # a NULL for every claimed column but the id
    + f", {_FREES} FROM done d"
)
_ROUND_CTES = f"{_COMPLETE_CTES}{_FREES_WAITING} {_ROUND_SELECT}"
CLAIM_AND_COMPLETE = text(f"WITH {_CLAIM_CTES}, {_ROUND_CTES}")
CLAIM_AND_COMPLETE_LIMITED = text(f"WITH {_CLAIM_CTES_LIMITED}, {_ROUND_CTES}")
CLAIM_AND_COMPLETE_RATED = text(f"WITH {_CLAIM_CTES_RATED}, {_ROUND_CTES}")
"""A worker process's round (pgjobs/worker/state_writer.py): its claims and completions in one
statement, so one commit. Never with a job both claimed and completed (the writer keeps them
apart): one statement must not update a row twice."""


@dataclass(frozen=True, slots=True)
class Completion:
    """A handler returned: ``result_json`` is its result as JSON text."""

    job_id: int
    attempt: int
    result_json: str
    duration_ms: float | None


def complete_many(conn: Connection, completions: Sequence[Completion]) -> list[bool]:
    """active -> succeeded for each completion, in one statement. One answer per completion,
    in order; False: that attempt's lease was lost and nothing was written for it."""
    return complete_round(conn, completions)[0]


def complete_round(
    conn: Connection, completions: Sequence[Completion]
) -> tuple[list[bool], list[bool]]:
    """:func:`complete_many`, with whether each completion frees a slot for a waiting job
    (:class:`RoundResult`'s ``held`` and ``frees``)."""
    rows = _run(conn, COMPLETE, _complete_params(completions)).fetchall()
    return _completed_in_order(rows, completions)


def _complete_params(completions: Sequence[Completion]) -> dict[str, Any]:
    return {
        "done_ids": [c.job_id for c in completions],
        "done_attempts": [c.attempt for c in completions],
        "results": [c.result_json for c in completions],
        "durations": [c.duration_ms for c in completions],
    }


def complete(
    conn: Connection, job_id: int, attempt: int, result_json: str, duration_ms: float | None
) -> bool:
    """:func:`complete_many` for one job: active -> succeeded. False: the lease was lost."""
    return complete_many(conn, [Completion(job_id, attempt, result_json, duration_ms)])[0]


FAIL = text(
    """
    WITH done AS (
        UPDATE content_jobs
        SET status = 'failed', error_message = :error, completed_at = now(),
            lease_expires_at = NULL, updated_at = now()
        WHERE id = :id AND status = 'active' AND attempts = :attempt
        RETURNING id, tenant_id, attempts
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'failed',
               jsonb_build_object('attempt', attempts, 'error', CAST(:error AS text))
        FROM done
    )
    SELECT id FROM done
    """
)


def fail(conn: Connection, job_id: int, attempt: int, error: str) -> bool:
    """active -> failed, keeping the (already redacted) error. False: the lease was lost."""
    return (
        _run(conn, FAIL, {"id": job_id, "attempt": attempt, "error": error}).fetchone() is not None
    )


SCHEDULE_RETRY = text(
    """
    WITH moved AS (
        UPDATE content_jobs
        SET status = 'queued', error_message = :error, queue_job_id = :message_id,
            run_at = now() + make_interval(secs => :delay), lease_expires_at = NULL,
            updated_at = now()
        WHERE id = :id AND status = 'active' AND attempts = :attempt
        RETURNING id, tenant_id, attempts, run_at
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'retry',
               jsonb_build_object('attempt', attempts, 'error', CAST(:error AS text),
                                  'next_run_at', run_at)
        FROM moved
    )
    SELECT id FROM moved
    """
)


def schedule_retry(
    conn: Connection, job_id: int, attempt: int, error: str, delay_seconds: float, message_id: str
) -> bool:
    """active -> queued for another attempt ``delay_seconds`` from now (database clock); the
    caller sends ``message_id`` with that delay after commit. False: the lease was lost."""
    params = {
        "id": job_id,
        "attempt": attempt,
        "error": error,
        "delay": delay_seconds,
        "message_id": message_id,
    }
    return _run(conn, SCHEDULE_RETRY, params).fetchone() is not None


FINISH_CANCELLED = text(
    """
    WITH done AS (
        UPDATE content_jobs
        SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL,
            cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
        WHERE id = :id AND status = 'active' AND attempts = :attempt
        RETURNING id, tenant_id, attempts, cancel_reason
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'cancelled',
               jsonb_build_object('attempt', attempts, 'while_running', true,
                                  'reason', coalesce(cancel_reason, CAST(:reason AS text)))
        FROM done
    )
    SELECT id FROM done
    """
)


def finish_cancelled(conn: Connection, job_id: int, attempt: int, reason: str | None) -> bool:
    """active -> cancelled: the handler stopped at a checkpoint after a cancel request. The
    event's reason is the one the request gave, else ``reason``."""
    params = {"id": job_id, "attempt": attempt, "reason": reason}
    return _run(conn, FINISH_CANCELLED, params).fetchone() is not None


RELEASE = text(
    """
    WITH moved AS (
        UPDATE content_jobs
        SET status = 'queued', attempts = attempts - 1,
            queue_job_id = COALESCE(CAST(:message_id AS text), queue_job_id),
            lease_expires_at = NULL, updated_at = now()
        WHERE id = :id AND status = 'active' AND attempts = :attempt
        RETURNING id, tenant_id, attempts
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'rescued',
               jsonb_build_object('attempt', attempts + 1, 'reason', CAST(:reason AS text))
        FROM moved
    )
    SELECT id FROM moved
    """
)


def release(
    conn: Connection,
    job_id: int,
    attempt: int,
    message_id: str | None,
    *,
    reason: str = "worker shutdown",
) -> bool:
    """active -> queued when the attempt did not start for a reason that is not the job's
    fault (the worker is stopping, or Dramatiq refused the message after the claim): the
    attempt is given back. ``message_id``: the message that another worker takes at once
    (None: the job keeps its message id)."""
    params = {"id": job_id, "attempt": attempt, "message_id": message_id, "reason": reason}
    return _run(conn, RELEASE, params).fetchone() is not None


def _release_statement(key: str, maximum: str, status: str, reason: str) -> TextClause:
    """Jobs parked in ``status`` sent again as their key has room: the same statement for a
    concurrency key's waiting jobs and a fair share's held ones (docs/limits.md)."""
    return text(
        f"""
    WITH keys AS (
        SELECT DISTINCT k FROM unnest(CAST(:keys AS text[])) AS u(k)
    ), free AS (
        -- a key's room: its maximum less its jobs in flight (running, or due and on their way)
        SELECT k.k AS key, greatest(0, m.max - (SELECT count(*) FROM (
            SELECT 1 FROM content_jobs a WHERE a.{key} = k.k AND {_IN_FLIGHT}
            LIMIT m.max) f)) AS n
        FROM keys k
        CROSS JOIN LATERAL (
            SELECT {maximum} AS max FROM content_jobs
            WHERE {key} = k.k AND status = '{status}' LIMIT 1
        ) m
    ), picked AS (
        SELECT w.id FROM free f CROSS JOIN LATERAL (
            SELECT id FROM content_jobs
            WHERE {key} = f.key AND status = '{status}' AND rate_key IS NULL
            ORDER BY id LIMIT f.n
            FOR UPDATE SKIP LOCKED
        ) w
    ), moved AS (
        UPDATE content_jobs j
        SET status = 'queued', queue_job_id = gen_random_uuid()::text, updated_at = now()
        FROM picked p
        WHERE j.id = p.id AND (j.status = '{status}') IS TRUE
        RETURNING j.id, j.tenant_id, j.type, j.queue_job_id, j.run_at
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id, 'enqueued',
               jsonb_build_object('type', type, 'resent', true, 'reason', '{reason}')
        FROM moved ORDER BY id
    )
    SELECT id, tenant_id, type, queue_job_id, {_DUE_IN_MS} FROM moved ORDER BY id
    """  # noqa: S608 - the module's own constant fragments
    )


def _parked_keys_statement(key: str, status: str) -> TextClause:
    """Keys with jobs parked in ``status``, for the maintenance sweep."""
    return text(
        f"SELECT DISTINCT {key} AS key FROM content_jobs"  # noqa: S608 - constant fragments
        f" WHERE {key} IS NOT NULL AND status = '{status}' LIMIT :limit"
    )


RELEASE_WAITING = _release_statement(
    "concurrency_key", "concurrency_max", "waiting", "concurrency slot free"
)
RELEASE_HELD = _release_statement("share_key", "share_max", "held", "fair share free")
WAITING_KEYS = _parked_keys_statement("concurrency_key", "waiting")
HELD_SHARES = _parked_keys_statement("share_key", "held")


@dataclass(frozen=True, slots=True)
class ReleasedJob:
    id: int
    tenant_id: uuid.UUID
    type: str
    queue_job_id: str
    due_in_ms: int


LOCK_RELEASE_KEYS = text(
    """
    -- the claim rounds' lock of each concurrency key, and one per fair share, all in the one
    -- global order of LOCK_LIMIT_KEYS (no cycle with the claim rounds or another release)
    SELECT count(pg_advisory_xact_lock(h)) FROM (
        SELECT DISTINCT h FROM (
            SELECT hashtextextended(k, 0) FROM unnest(CAST(:keys AS text[])) u(k)
            UNION ALL
            SELECT hashtextextended('share:' || k, 0) FROM unnest(CAST(:shares AS text[])) u(k)
        ) x(h)
        ORDER BY 1
    ) k
    """
)


def lock_release_step(keys: Sequence[str], shares: Sequence[str]) -> Step:
    """Serialise the releases of these concurrency keys and fair shares (and the claims of the
    keys) until the transaction ends, so that a release counts the room after every release
    and claim committed before it: two releases never fill the same room twice."""
    return Step(LOCK_RELEASE_KEYS, {"keys": sorted(set(keys)), "shares": sorted(set(shares))})


def release_step(keys: Sequence[str], *, held: bool = False) -> Step:
    """waiting -> queued, under a new message id, for as many waiting jobs of each concurrency
    key as it has free slots, oldest first; an ``enqueued`` event (resent, ``concurrency slot
    free``) each. ``held``: the same for held jobs of fair shares (``keys`` are share keys),
    held -> queued. Read with :func:`released_of`; the caller sends their messages after
    commit; a lost send is the relay's (the rows are queued). Rows another releaser holds are
    skipped."""
    return Step(RELEASE_HELD if held else RELEASE_WAITING, {"keys": sorted(set(keys))})


def release_waiting(
    conn: Connection, keys: Sequence[str], *, held: bool = False
) -> list[ReleasedJob]:
    """:func:`release_step` on ``conn``."""
    return released_of(execute_step(conn, release_step(keys, held=held)).fetchall())


def released_of(rows: Sequence[Any]) -> list[ReleasedJob]:
    """The jobs a release, a resend or :func:`rate_parked_step` returned, for the caller to
    send."""
    return [ReleasedJob(r.id, r.tenant_id, r.type, r.queue_job_id, int(r.due_in_ms)) for r in rows]


SLOT_USAGE = text(
    """
    SELECT concurrency_key AS key,
           count(*) FILTER (WHERE status = 'active' AND lease_expires_at >= now()) AS in_use,
           count(*) FILTER (WHERE status = 'waiting' AND rate_key IS NULL) AS waiting,
           max(concurrency_max) AS max
    FROM content_jobs
    WHERE concurrency_key IS NOT NULL AND status IN ('active', 'waiting')
    GROUP BY concurrency_key
    ORDER BY count(*) FILTER (WHERE status = 'waiting' AND rate_key IS NULL) DESC,
             concurrency_key
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True)
class SlotUsage:
    key: str
    in_use: int
    """Active jobs of the key whose lease is live: the slots taken."""
    waiting: int
    max: int


def slot_usage(conn: Connection, limit: int = 1000) -> list[SlotUsage]:
    """Concurrency keys with jobs running or waiting, the most waiting first (operators:
    ``pgjobs_limit_*`` gauges, docs/limits.md). Keys span tenants: not for a tenant's eyes."""
    rows = _run(conn, SLOT_USAGE, {"limit": limit})
    return [SlotUsage(r.key, int(r.in_use), int(r.waiting), int(r.max)) for r in rows]


SHARE_USAGE = text(
    f"""
    SELECT a.share_key AS key,
           count(*) FILTER (WHERE {_IN_FLIGHT}) AS in_flight,
           count(*) FILTER (WHERE a.status = 'held') AS held,
           max(a.share_max) AS max
    FROM content_jobs a
    WHERE a.share_key IS NOT NULL AND a.status IN ('pending', 'queued', 'active', 'held')
    GROUP BY a.share_key
    ORDER BY count(*) FILTER (WHERE a.status = 'held') DESC, a.share_key
    LIMIT :limit
    """  # noqa: S608 - the module's own constant fragment
)


@dataclass(frozen=True, slots=True)
class ShareUsage:
    key: str
    """``<queue>:<tenant id>``."""
    in_flight: int
    """Jobs of the share running under a live lease, or due and on their way."""
    held: int
    max: int


def share_usage(conn: Connection, limit: int = 1000) -> list[ShareUsage]:
    """Fair shares with jobs in flight or held, the most held first (operators:
    ``pgjobs_share_*`` gauges, docs/limits.md)."""
    rows = _run(conn, SHARE_USAGE, {"limit": limit})
    return [ShareUsage(r.key, int(r.in_flight), int(r.held), int(r.max)) for r in rows]


def waiting_keys(conn: Connection, limit: int, *, held: bool = False) -> list[str]:
    """Concurrency keys with waiting jobs, or (``held``) fair shares with held jobs: the
    maintenance sweep releases their room."""
    statement = HELD_SHARES if held else WAITING_KEYS
    return [r.key for r in _run(conn, statement, {"limit": limit})]


# --- maintenance ----------------------------------------------------------------------------------

RESCUE_EXPIRED = text(
    """
    WITH expired AS (
        SELECT id FROM content_jobs
        WHERE status = 'active' AND lease_expires_at < now() - make_interval(secs => :grace)
        ORDER BY lease_expires_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE content_jobs j
        SET status = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
            completed_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE now() END,
            error_message = CASE WHEN j.attempts < j.max_attempts THEN j.error_message
                                 ELSE 'lease expired: worker lost' END,
            queue_job_id = CASE WHEN j.attempts < j.max_attempts THEN gen_random_uuid()::text
                                ELSE j.queue_job_id END,
            run_at = now(), lease_expires_at = NULL, updated_at = now()
        FROM expired e
        WHERE j.id = e.id
        RETURNING j.id, j.tenant_id, j.type, j.status, j.attempts, j.queue_job_id
    ), events AS (
        INSERT INTO job_events (job_id, tenant_id, event_type, data)
        SELECT id, tenant_id,
               CASE WHEN status = 'queued' THEN 'rescued' ELSE 'failed' END,
               CASE WHEN status = 'queued'
                    THEN jsonb_build_object('attempt', attempts, 'reason', 'lease expired')
                    ELSE jsonb_build_object('attempt', attempts,
                                            'error', 'lease expired: worker lost') END
        FROM moved
    )
    SELECT id, tenant_id, type, status, queue_job_id FROM moved
    """
)


@dataclass(frozen=True, slots=True)
class RescuedJob:
    id: int
    tenant_id: uuid.UUID
    type: str
    status: JobStatus
    queue_job_id: str | None


def rescue_expired(conn: Connection, *, grace_seconds: float, limit: int) -> list[RescuedJob]:
    """Expired ``active`` rows back to queued (``rescued``), or failed when attempts are used up.

    Requeued rows get a fresh message id; the caller sends those messages after commit.
    """
    rows = _run(conn, RESCUE_EXPIRED, {"grace": grace_seconds, "limit": limit}).fetchall()
    return [
        RescuedJob(r.id, r.tenant_id, r.type, JobStatus(r.status), r.queue_job_id) for r in rows
    ]
