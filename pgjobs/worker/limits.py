"""Concurrency slots and fair shares freed: waiting and held jobs sent again (docs/limits.md).

A job parked as ``waiting`` holds no message, no attempt and no thread; it runs again only when
it is sent again. So whoever frees a slot sends the next waiting job of the key: the writer's
round that completes a limited job (when its statement says a job of the key waits and the key
has room), a round that parked jobs (a completion racing the park could not see them), a
handler thread that fails, retries, cancels or releases one, and, as the safety net for a worker
killed while holding slots, the maintenance sweep (every key with waiting jobs, each tick). The
rows move to ``queued`` and commit before their messages leave; a send that fails leaves them
queued, for the relay.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.statements import run_pipelined
from pgjobs.logs import get_logger
from pgjobs.producer import broker
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.job_types import get_job_type
from pgjobs.settings import get_settings

log = get_logger(__name__)


def release_slots(keys: Iterable[str | None], shares: Iterable[str | None] = ()) -> int:
    """Send the waiting jobs of these concurrency keys that now have a slot, and the held jobs
    of these fair shares that now have room. Returns how many were sent. Raises nothing: a key
    left waiting is the maintenance sweep's."""
    wanted = sorted({k for k in keys if k is not None})
    wanted_shares = sorted({k for k in shares if k is not None})
    if not (wanted or wanted_shares):
        return 0
    steps = [sm.lock_release_step(wanted, wanted_shares)]  # first: the releases' snapshots follow
    if wanted:
        steps.append(sm.release_step(wanted))
    if wanted_shares:
        steps.append(sm.release_step(wanted_shares, held=True))
    try:
        with autocommit() as conn:  # one transaction, one round trip
            rows = run_pipelined(conn, steps)
    except Exception as exc:  # noqa: BLE001 - the sweep releases them later
        log.warning(
            "limits.release_failed",
            error_type=type(exc).__name__,
            keys=len(wanted),
            shares=len(wanted_shares),
        )
        return 0
    released = [job for found in rows[1:] for job in sm.released_of(found)]
    send_released(released)
    return len(released)


class Releaser:
    """Releases from a thread of its own, so that neither the writer's round (which every claim
    and completion of the process waits for) nor a handler thread waits for the statement and
    the send. Keys noted while a release runs go together into the next one: under load one
    statement serves many completions. Built again after a fork."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._keys: set[str] = set()
        self._shares: set[str] = set()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def note(self, keys: Iterable[str | None], shares: Iterable[str | None] = ()) -> None:
        """These concurrency keys and fair shares have room now: release them soon."""
        new_keys = {k for k in keys if k is not None}
        new_shares = {k for k in shares if k is not None}
        if not (new_keys or new_shares):
            return
        if self._pid != os.getpid():  # forked: the thread and the sets stayed behind
            self._reset()
        with self._cond:
            self._keys |= new_keys
            self._shares |= new_shares
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="releaser", daemon=True)
                self._thread.start()
            self._cond.notify()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until nothing is noted or being released (tests; a stopping worker)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._keys or self._shares or self._busy), timeout
            )

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._keys or self._shares))
                keys, shares = self._keys, self._shares
                self._keys, self._shares, self._busy = set(), set(), True
            try:
                release_slots(keys, shares)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


releaser = Releaser()
"""This process's releaser."""


def sweep_waiting() -> int:
    """The maintenance pass: release the free slots of every key that has waiting jobs, and
    the room of every fair share that has held ones (slots of a killed worker come back when
    its leases expire, and no round frees them; a share whose last job ended while a held one
    was being written has no round to free it either)."""
    settings = get_settings()
    with autocommit() as conn:
        keys = sm.waiting_keys(conn, settings.relay_batch_size)
        shares = sm.waiting_keys(conn, settings.relay_batch_size, held=True)
    return release_slots(keys, shares)


def refresh_limit_gauges() -> None:
    """The ``pgjobs_limit_*`` and ``pgjobs_share_*`` gauges from :func:`sm.slot_usage` and
    :func:`sm.share_usage` (raises nothing)."""
    from pgjobs.worker import metrics

    try:
        with autocommit() as conn:
            metrics.limits(sm.slot_usage(conn))
            metrics.shares(sm.share_usage(conn))
    except Exception as exc:  # noqa: BLE001 - a gauge must never stop its thread
        log.warning("limits.gauge_failed", error_type=type(exc).__name__)


def send_released(released: list[sm.ReleasedJob], *, event: str = "limits.released") -> None:
    """Send the messages of jobs moved (and committed) by a release, delayed to their due time;
    a send that fails leaves them to the relay or the rate sweep (raises nothing)."""
    outgoing = []
    for job in released:
        try:
            queue = get_job_type(job.type).queue
        except UnknownJobType:
            continue  # queued without a message: the relay of a process that knows it sends it
        delay = job.due_in_ms or None
        outgoing.append(broker.Outgoing(job.id, job.tenant_id, queue, job.queue_job_id, delay))
    if not outgoing:
        return
    log.info(event, jobs=len(outgoing))
    try:
        broker.send(outgoing)
    except Exception as exc:  # noqa: BLE001 - the rows are queued: the relay re-sends them
        log.warning("limits.send_failed", error_type=type(exc).__name__, jobs=len(outgoing))
