"""The relay: makes sure every job that should have a message on Redis has one.

Two cases (docs/architecture.md, "Delivery"):

* pending rows older than ``relay_pending_after_seconds``: the producer committed but died (or
  Redis refused) before sending (a pending row whose message Redis does hold was sent, and only
  its pending -> queued mark was lost: it is marked, not re-sent);
* queued rows untouched for ``relay_queued_after_seconds`` whose message Redis no longer holds
  (Redis restarted without persistence, or was flushed).

Rows are locked ``FOR UPDATE SKIP LOCKED`` for the pass, so several relays never handle the same
row; the message is sent before the row is updated, so a crash in between leaves at worst a
duplicate message, which the worker's claim turns into a no-op. Each re-send writes an
``enqueued`` event with ``resent: true`` and the reason.

The relay looks only at rows of the job types this process knows (their queue names the
message): declare yours through ``JOBS_IMPORTS``. Rows of other types are left alone, and the
maintenance process warns about them once per type and interval (pgjobs/worker/maintenance.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus
from pgjobs.logs import get_logger
from pgjobs.producer import broker
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.job_types import all_job_types, get_job_type
from pgjobs.settings import get_settings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RelayResult:
    resent_pending: int
    resent_lost: int


def relay_once() -> RelayResult:
    """One pass over both cases; returns how many jobs were re-sent."""
    settings = get_settings()
    pending = _pass(
        JobStatus.PENDING,
        older_than=settings.relay_pending_after_seconds,
        horizon=settings.schedule_horizon_seconds,
        limit=settings.relay_batch_size,
        reason="pending: not sent after commit, or scheduled and now due",
    )
    lost = _pass(
        JobStatus.QUEUED,
        older_than=settings.relay_queued_after_seconds,
        horizon=settings.schedule_horizon_seconds,
        limit=settings.relay_batch_size,
        reason="message lost from redis",
    )
    if pending or lost:
        log.info("relay.resent", pending=pending, lost=lost)
    return RelayResult(pending, lost)


def _pass(status: JobStatus, *, older_than: float, horizon: float, limit: int, reason: str) -> int:
    types = [t.name for t in all_job_types()]
    with transaction() as conn:
        rows = sm.lock_unsent_candidates(
            conn,
            status,
            older_than_seconds=older_than,
            horizon_seconds=horizon,
            limit=limit,
            types=types,
        )
        queued, present = _split_by_redis(_with_queues(rows))
        resent = _resend(conn, queued, reason) if queued else 0
    if status is JobStatus.PENDING and present:
        # sent, but the pending -> queued mark never landed: mark it, re-send nothing
        with autocommit() as conn:
            sm.mark_sent(conn, [row.id for row, _ in present])
    return resent


def _resend(conn: Connection, queued: list[tuple[Any, str]], reason: str) -> int:
    outgoing = [
        broker.Outgoing(
            row.id,
            row.tenant_id,
            queue,
            broker.new_message_id(),
            row.due_in_ms or None,
        )
        for row, queue in queued
    ]
    broker.send(outgoing)
    return sm.record_resend(
        conn, [o.job_id for o in outgoing], [o.message_id for o in outgoing], reason
    )


def _with_queues(rows: list[Any]) -> list[tuple[Any, str]]:
    """Pair rows with their type's queue (a type forgotten since the rows were read is skipped:
    the maintenance process reports types it does not know, pgjobs/worker/maintenance.py)."""
    paired = []
    for row in rows:
        try:
            paired.append((row, get_job_type(row.type).queue))
        except UnknownJobType:
            continue
    return paired


def _split_by_redis(
    rows: list[tuple[Any, str]],
) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """(rows whose message Redis does not hold, rows whose message it holds)."""
    by_queue: dict[str, list[tuple[Any, str]]] = defaultdict(list)
    for row, queue in rows:
        by_queue[queue].append((row, queue))
    missing: list[tuple[Any, str]] = []
    present: list[tuple[Any, str]] = []
    for queue, items in by_queue.items():
        found = broker.message_present(queue, [row.queue_job_id or "" for row, _ in items])
        for item, held in zip(items, found, strict=True):
            (present if held else missing).append(item)
    return missing, present
