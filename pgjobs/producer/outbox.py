"""After-commit delivery for jobs enqueued in a caller's ``Session``: their messages wait on
the session and are sent (pgjobs/producer/sender.py) only once it commits; a rollback drops them
unsent."""

from __future__ import annotations

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from pgjobs.producer import broker, sender

_OUTBOX = "pgjobs_outbox"


def defer_until_commit(session: Session, outgoing: list[broker.Outgoing]) -> None:
    """Queue messages on the session; sent after its commit, dropped by its rollback."""
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
    sender.send_and_mark(outgoing, bind.engine if isinstance(bind, Connection) else bind)


def _drop_outbox(session: Session) -> None:
    session.info[_OUTBOX] = []
