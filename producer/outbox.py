"""After-commit delivery: messages leave only once their rows are committed.

A message that fails to send leaves its row pending; the relay (producer/relay.py) sends it.
"""

from __future__ import annotations

import structlog
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from db.engine import autocommit
from db.jobs import state_machine as sm
from producer import broker

log = structlog.get_logger(__name__)

_OUTBOX = "pgjobs_outbox"


def send(outgoing: list[broker.Outgoing]) -> bool:
    """Send after commit. False: the send failed and the rows stay pending for the relay."""
    if not outgoing:
        return False
    try:
        broker.send(outgoing)
    except Exception as exc:  # noqa: BLE001 - the relay re-sends; the job is safe in PostgreSQL
        log.warning(
            "enqueue.send_failed",
            job_ids=[o.job_id for o in outgoing],
            error_type=type(exc).__name__,
        )
        return False
    return True


def send_and_mark(outgoing: list[broker.Outgoing], conn: Connection) -> None:
    """Send, then pending -> queued on ``conn`` (in autocommit). A failed send leaves the rows
    pending for the relay."""
    if send(outgoing):
        sm.mark_sent(conn, [o.job_id for o in outgoing])


def defer_until_commit(session: Session, outgoing: list[broker.Outgoing]) -> None:
    """Queue messages on the session; sent by its after_commit, dropped by its rollback."""
    if _OUTBOX not in session.info:
        session.info[_OUTBOX] = []
        event.listen(session, "after_commit", _flush_outbox)
        event.listen(session, "after_rollback", _drop_outbox)
    session.info[_OUTBOX].extend(outgoing)


def _flush_outbox(session: Session) -> None:
    outgoing: list[broker.Outgoing] = session.info.get(_OUTBOX, [])
    if not outgoing:
        return
    session.info[_OUTBOX] = []
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    with autocommit(engine) as conn:
        send_and_mark(outgoing, conn)


def _drop_outbox(session: Session) -> None:
    session.info[_OUTBOX] = []
