"""What the overview page shows beyond the counts by status: jobs finished and failed per
minute over the last hour, per queue the jobs waiting and the oldest due one's age, the
running workers (from their presence records, pgjobs/producer/served.py) and the relay's
backlog (jobs committed but not yet known to be sent).

Two statements for the tenant, both on indexed columns: the last hour's terminal jobs (the
partial index on ``completed_at``), and its live jobs grouped by type and status (the
``(tenant_id, status, id)`` index); job types are mapped to their queues here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from pgjobs.db.engine import transaction
from pgjobs.db.statements import execute
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.job_types import get_job_type
from pgjobs.producer.served import WorkerRecord, live_workers
from pgjobs.settings import get_settings

LAST_HOUR = text(
    """
    SELECT date_trunc('minute', completed_at) AS minute,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM content_jobs
    WHERE tenant_id = :tenant_id AND completed_at >= now() - interval '1 hour'
      AND status IN ('succeeded', 'failed', 'cancelled')
    GROUP BY 1 ORDER BY 1
    """
)
LIVE = text(
    """
    SELECT type, status, count(*) AS n,
           min(run_at) FILTER (WHERE run_at <= now()) AS oldest_due,
           count(*) FILTER (WHERE status = 'pending' AND run_at <= now()
                            AND created_at < now() - make_interval(secs => :pending_after))
               AS unsent,
           now() AS db_now
    FROM content_jobs
    WHERE tenant_id = :tenant_id AND status IN ('pending', 'queued', 'held', 'waiting', 'active')
    GROUP BY type, status
    """
)


@dataclass
class QueueLine:
    queue: str
    waiting: int = 0
    """Pending, queued (due or not), held for a fair share or waiting for a concurrency slot."""
    active: int = 0
    oldest_due_seconds: float | None = None
    """How long the oldest due waiting job has been due."""


@dataclass
class Overview:
    minutes: list[tuple[datetime, int, int]]
    """(minute, succeeded, failed) of the last hour, oldest first, every minute present."""
    queues: list[QueueLine]
    workers: list[WorkerRecord]
    relay_backlog: int
    """Due pending jobs older than ``JOBS_RELAY_PENDING_AFTER_SECONDS``: their message was not
    sent (Redis down at the time), and the relay sends them."""
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def overview_of(tenant_id: uuid.UUID) -> Overview:
    pending_after = get_settings().relay_pending_after_seconds
    with transaction() as conn:
        finished = execute(conn, LAST_HOUR, {"tenant_id": tenant_id}).fetchall()
        live = execute(
            conn, LIVE, {"tenant_id": tenant_id, "pending_after": pending_after}
        ).fetchall()
    now = live[0].db_now if live else datetime.now(UTC)
    queues: dict[str, QueueLine] = {}
    backlog = 0
    for row in live:
        queue = _queue_of(row.type)
        line = queues.setdefault(queue, QueueLine(queue))
        if row.status == "active":
            line.active += row.n
            continue
        line.waiting += row.n
        backlog += row.unsent
        if row.oldest_due is not None:
            age = (now - row.oldest_due).total_seconds()
            line.oldest_due_seconds = max(line.oldest_due_seconds or 0.0, age)
    return Overview(
        minutes=_every_minute(finished, now),
        queues=sorted(queues.values(), key=lambda q: q.queue),
        workers=live_workers(),
        relay_backlog=backlog,
        now=now,
    )


def _queue_of(job_type: str) -> str:
    try:
        return get_job_type(job_type).queue
    except UnknownJobType:
        return f"({job_type}: type unknown here)"


def _every_minute(rows: list[object], now: datetime) -> list[tuple[datetime, int, int]]:
    found = {r.minute: (r.succeeded, r.failed) for r in rows}  # type: ignore[attr-defined]
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    minutes = [start + timedelta(minutes=i) for i in range(60)]
    return [(m, *found.get(m, (0, 0))) for m in minutes]
