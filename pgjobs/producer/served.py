"""What the running workers serve, and the due jobs that none of them does.

A job nobody can run must not wait silently. Each worker process records, when it boots and
every :data:`ANNOUNCE_SECONDS` after, the queues it consumes and the job types it has handlers
for, in one Redis hash, ``<namespace>:pgjobs.workers`` (field: the process's Dramatiq broker
id; value: JSON), and removes its entry when it stops (pgjobs/worker/presence.py).

A worker counts as running while Dramatiq's own heartbeat of its broker id
(``<namespace>:__heartbeats__``, written by the worker's fetches and acks) is younger than
``JOBS_BROKER_HEARTBEAT_TIMEOUT_MS``: the rule by which Dramatiq gives a dead worker's messages
back. Readers remove the entries of workers that are not running.

:func:`unserved_jobs` compares the job types of due jobs waiting in PostgreSQL (pending or
queued, ``run_at`` passed) with the types the running workers serve. ``jobctl health``, the
maintenance process's warnings and the workers' ``pgjobs_unserved_jobs`` gauge all read it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.producer.broker import JobsBroker, get_broker
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.job_types import get_job_type

WORKERS_KEY = "pgjobs.workers"
"""The hash of worker records, under the broker's namespace."""
HEARTBEATS_KEY = "__heartbeats__"
"""Dramatiq's heartbeat sorted set (broker id -> milliseconds), under the namespace."""
ANNOUNCE_SECONDS = 10.0
"""How often a running worker writes its record again (after Redis lost it, say)."""

WAITING_BY_TYPE = text(
    """
    SELECT type, count(*) AS waiting,
           extract(epoch FROM now() - min(run_at))::float8 AS due_for_seconds
    FROM content_jobs
    WHERE status IN ('pending', 'queued') AND run_at <= now()
    GROUP BY type
    ORDER BY type
    """
)
"""Due jobs waiting for a worker, per type, across tenants (an operator's question, like the
maintenance statements'); on the live set's partial index."""


@dataclass(frozen=True)
class WorkerRecord:
    """What one worker process serves."""

    broker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    job_types: tuple[str, ...]
    started_at: float

    @classmethod
    def of_this_process(
        cls, broker: JobsBroker, queues: Sequence[str], job_types: Sequence[str]
    ) -> WorkerRecord:
        return cls(
            broker_id=broker.broker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(sorted(queues)),
            job_types=tuple(sorted(job_types)),
            started_at=time.time(),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerRecord | None:
        """The record, or None for an entry that is not one (written by something else)."""
        try:
            data = json.loads(raw)
            return cls(
                broker_id=str(data["broker_id"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                queues=tuple(str(q) for q in data["queues"]),
                job_types=tuple(str(t) for t in data["job_types"]),
                started_at=float(data["started_at"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class WaitingType:
    """Due jobs of one type waiting for a worker."""

    job_type: str
    waiting: int
    due_for_seconds: float
    """How long the oldest of them has been due."""
    queue: str | None
    """The type's queue, None when this process does not know the type."""


def _key(broker: JobsBroker, name: str) -> str:
    return f"{broker.namespace}:{name}"


def announce(broker: JobsBroker, record: WorkerRecord, *, first: bool = False) -> None:
    """Write this worker's record. The first time, also its Dramatiq heartbeat, so no reader
    takes the worker for dead before its first fetch has written one."""
    pipe = broker.client.pipeline(transaction=True)
    pipe.hset(_key(broker, WORKERS_KEY), record.broker_id, record.to_json())
    if first:
        pipe.zadd(_key(broker, HEARTBEATS_KEY), {record.broker_id: int(time.time() * 1000)})
    pipe.execute()


def withdraw(broker: JobsBroker) -> None:
    """Remove this worker's record (it is stopping)."""
    broker.client.hdel(_key(broker, WORKERS_KEY), broker.broker_id)


def live_workers(broker: JobsBroker | None = None) -> list[WorkerRecord]:
    """The records of the running workers (by host and pid); the entries of workers that are
    not running any more are removed."""
    broker = broker or get_broker()
    client = broker.client
    entries: dict[Any, Any] = client.hgetall(_key(broker, WORKERS_KEY))
    if not entries:
        return []
    ids = list(entries)
    pipe = client.pipeline(transaction=False)
    for broker_id in ids:
        pipe.zscore(_key(broker, HEARTBEATS_KEY), broker_id)
    beats: list[Any] = pipe.execute()
    cutoff = time.time() * 1000 - broker.heartbeat_timeout
    running, gone = [], []
    for broker_id, beat in zip(ids, beats, strict=True):
        record = WorkerRecord.from_json(entries[broker_id])
        if record is None or beat is None or float(beat) < cutoff:
            gone.append(broker_id)
        else:
            running.append(record)
    if gone:
        client.hdel(_key(broker, WORKERS_KEY), *gone)
    return sorted(running, key=lambda r: (r.host, r.pid, r.broker_id))


def waiting_jobs() -> list[WaitingType]:
    """Due jobs waiting for a worker, per type."""
    with transaction() as conn:
        rows = conn.execute(WAITING_BY_TYPE).all()
    return [
        WaitingType(row.type, int(row.waiting), float(row.due_for_seconds), _queue_of(row.type))
        for row in rows
    ]


def unserved_jobs(workers: Sequence[WorkerRecord] | None = None) -> list[WaitingType]:
    """Due jobs of the types that no running worker serves (``workers``: the running ones, as
    :func:`live_workers` gives them)."""
    served = {t for w in (live_workers() if workers is None else workers) for t in w.job_types}
    return [waiting for waiting in waiting_jobs() if waiting.job_type not in served]


def _queue_of(job_type: str) -> str | None:
    try:
        return get_job_type(job_type).queue
    except UnknownJobType:
        return None
