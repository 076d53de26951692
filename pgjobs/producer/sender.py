"""Sending committed jobs' messages, and marking their rows queued in the background.

The rule (docs/architecture.md): the message is sent only after the row's transaction commits, then
the row becomes queued. The message leaves at once, in the committing thread, so it is on Redis when
``enqueue`` returns; the pending -> queued mark is only a hint for status readers (a worker claims a
pending job just as well), so one thread per process marks the rows of all recent sends with one
statement every ``MARK_AFTER_SECONDS`` instead of one round trip per call.

What a failure leaves is unchanged: a message that never leaves (Redis down, process killed)
leaves its row pending and the relay sends it; a lost mark leaves a pending row whose message
Redis holds, which the relay marks. :func:`flush` waits for the marks (tests); a process
flushes at exit; a forked child starts with nothing to mark.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Sequence
from itertools import groupby

from sqlalchemy import Engine

from pgjobs.db.engine import autocommit, get_autocommit_engine
from pgjobs.db.jobs import state_machine as sm
from pgjobs.logs import get_logger
from pgjobs.producer import broker

log = get_logger(__name__)

MARK_AFTER_SECONDS = 0.05
"""How long sent jobs wait to be marked queued, so that one ``MARK_SENT`` serves many calls."""
MARK_MAX = 5_000
"""Jobs marked by one statement at most; that many waiting are marked at once."""
EXIT_FLUSH_SECONDS = 10.0

_Marks = tuple[list[Engine], list[int]]
"""Jobs to mark: each one's engine and id, in two lists (no tuple per job: a batch's ids
waited here long enough to be promoted by the garbage collector, which then ran its full
collections more often)."""


class Marker:
    """Sent jobs waiting to be marked queued, and the thread that marks them in rounds.

    A round runs ``MARK_AFTER_SECONDS`` after the first job of it was sent (at once when
    someone flushes or ``MARK_MAX`` are waiting). Meanwhile the row is pending with its message
    on Redis, which a worker claims just as well: a job claimed first is not marked at all,
    which saves a row version.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._unmarked: _Marks = ([], [])
        self._unmarked_since = 0.0
        self._flushing = 0  # callers of flush() waiting
        self._added = 0  # jobs ever added
        self._finished = 0  # of those, marked (or the mark failed: the relay repairs it)
        self._thread: threading.Thread | None = None

    def add(self, job_ids: Sequence[int], engine: Engine | None = None) -> None:
        """Mark these sent jobs queued soon, on a connection of ``engine`` (None: this
        process's own pool, as it is now: a later reset must not send marks elsewhere)."""
        if not job_ids:
            return
        engine = engine or get_autocommit_engine()
        with self._changed:
            first = not self._unmarked[1]
            if first:
                self._unmarked_since = time.monotonic()
            self._unmarked[0].extend([engine] * len(job_ids))
            self._unmarked[1].extend(job_ids)
            self._added += len(job_ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pgjobs-marker", daemon=True)
                self._thread.start()
            if first or len(self._unmarked[1]) >= MARK_MAX:
                self._changed.notify_all()  # the thread sleeps until told there is work

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job added before this call has been marked. False when
        ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            target = self._added
            self._flushing += 1
            self._changed.notify_all()
            try:
                while self._finished < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def _run(self) -> None:
        while True:
            with self._changed:
                while (wait := self._due_in()) != 0:
                    self._changed.wait(wait)
                engines, ids = self._unmarked
                marks = (engines[:MARK_MAX], ids[:MARK_MAX])
                self._unmarked = (engines[MARK_MAX:], ids[MARK_MAX:])
                self._unmarked_since = time.monotonic()
            try:
                self._mark(marks)
            finally:
                with self._changed:
                    self._finished += len(marks[1])
                    self._changed.notify_all()

    def _due_in(self) -> float | None:
        """Seconds until the next round: 0 now, None while no job waits."""
        if not self._unmarked[1]:
            return None
        if self._flushing or len(self._unmarked[1]) >= MARK_MAX:
            return 0
        return max(0.0, self._unmarked_since + MARK_AFTER_SECONDS - time.monotonic())

    @staticmethod
    def _mark(marks: _Marks) -> None:
        """pending -> queued, per engine (almost always one). A failed mark only leaves the
        jobs pending with their message sent, which the relay recognises and marks."""
        for engine, items in groupby(zip(*marks, strict=True), key=lambda item: item[0]):
            job_ids = [job_id for _, job_id in items]
            try:
                with autocommit(engine) as conn:
                    sm.mark_sent(conn, job_ids)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one round
                log.warning("enqueue.mark_failed", jobs=len(job_ids), error_type=type(exc).__name__)


def send(outgoing: Sequence[broker.Outgoing]) -> bool:
    """Send committed jobs' messages now. False: the send failed and the rows stay pending for
    the relay."""
    if not outgoing:
        return False
    try:
        broker.send(outgoing)
    except Exception as exc:  # noqa: BLE001 - the relay re-sends; the job is safe in PostgreSQL
        send_failed(outgoing, exc)
        return False
    return True


def send_failed(outgoing: Sequence[broker.Outgoing], exc: BaseException) -> None:
    """Say that a send failed (the rows stay pending; the relay sends them)."""
    log.warning(
        "enqueue.send_failed", job_ids=[o.job_id for o in outgoing], error_type=type(exc).__name__
    )


def mark_soon(job_ids: Sequence[int]) -> None:
    """Have these sent jobs marked queued by the process's marker (not now, not here)."""
    _marker.add(job_ids)


def send_and_mark(outgoing: Sequence[broker.Outgoing], engine: Engine | None = None) -> None:
    """Send committed jobs' messages now and have their rows marked queued soon. A failed send
    leaves the rows pending for the relay."""
    if send(outgoing):
        _marker.add([o.job_id for o in outgoing], engine)


def flush(timeout: float | None = None) -> bool:
    """Wait until every job this process has sent so far is marked queued: after it,
    ``get_job`` shows ``queued`` (or later) for them. False on timeout. Tests use it; a
    process flushes at exit by itself."""
    return _marker.flush(timeout)


_marker = Marker()


def _new_marker_in_child() -> None:
    global _marker
    _marker = Marker()


def _flush_at_exit() -> None:
    if not _marker.flush(EXIT_FLUSH_SECONDS):
        log.warning("enqueue.exit_flush_timeout", seconds=EXIT_FLUSH_SECONDS)


os.register_at_fork(after_in_child=_new_marker_in_child)
atexit.register(_flush_at_exit)
