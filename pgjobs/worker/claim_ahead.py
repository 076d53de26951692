"""Claims made when a batch of messages is fetched from Redis, one statement for the batch.

The consumer fetches up to its prefetch (three messages per thread) at a time. Claiming
those jobs there, together, instead of one by one on each handler thread, turns a claim round
trip and commit per job into one per batch, and the threads never wait for a claim while
messages are queued. The price: a claimed job may wait in the process's memory for a thread
(at most the prefetch, so up to two handler durations) after its ``started`` event; its lease is
kept by the lease keeper meanwhile. Jobs claimed ahead and never started are released (back to
queued, the attempt given back) when the worker stops, and as soon as Dramatiq is done with
their message without a thread having taken the claim (it refused the message).

A job that is not claimed here (a duplicate message, or a job of a concurrency key with no free
slot: the claim leaves it as it is instead of parking it, docs/limits.md) is claimed by its
thread when the thread takes its message. So a slot is never held by a job claimed ahead that
could not have started, and a job parks only if its key is still full when a thread is free
for it (with 3 messages per thread in hand, claiming ahead parked 7% of a drain's jobs over 20
keys of 3 slots; leaving them to their threads, under 2%).

Only messages the consumer has checked (pgjobs/worker/messages.py) are claimed here: a junk message
carrying a real job's ids must not claim it.

A batch that cannot be claimed here (PostgreSQL unreachable) is claimed by the threads, one by
one, as before.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.logs import get_logger
from pgjobs.producer.broker import job_args
from pgjobs.worker.leases import LeaseKeeper
from pgjobs.worker.state_writer import StateWriter

log = get_logger("pgjobs.worker.claim_ahead")


class NotClaimed(enum.Enum):
    """Answer of :meth:`ClaimAhead.take` for a message that was not claimed ahead."""

    NOT_CLAIMED = "not claimed"


class ClaimAhead:
    def __init__(
        self, writer: Callable[[], StateWriter], keeper: Callable[[], LeaseKeeper]
    ) -> None:
        self._writer = writer
        self._keeper = keeper
        self._lock = threading.Lock()
        self._claimed: dict[str, sm.ClaimedJob] = {}

    def claim_fetched(self, messages: list[Any]) -> None:
        """Claim the jobs of freshly fetched, checked messages (Dramatiq ``Message`` objects).
        Raises nothing: a batch not claimed here is claimed by the threads, one by one."""
        by_job: dict[int, sm.ClaimRequest] = {}
        with self._lock:
            pending = set(self._claimed)
        for request in map(_request, messages):
            # a duplicate (same job, or the same message fetched again) is claimed by its thread
            if request is not None and request.message_id not in pending:
                by_job.setdefault(request.job_id, request)
        distinct = list(by_job.values())
        if not distinct:
            return
        try:
            results = self._writer().claim(distinct)
        except Exception as exc:  # noqa: BLE001 - the threads claim these themselves
            log.warning("claim_ahead.failed", error_type=type(exc).__name__, jobs=len(distinct))
            return
        with self._lock:
            for request, job in zip(distinct, results, strict=True):
                # not claimed (a duplicate, or no slot for it yet): its thread claims it itself
                if job is not None and request.message_id is not None:
                    self._claimed[request.message_id] = job
        try:
            self._keeper().hold([(job.id, job.attempt) for job in results if job is not None])
        except Exception as exc:  # noqa: BLE001 - a claim must not wait unheld: give it back
            log.warning("claim_ahead.hold_failed", error_type=type(exc).__name__)
            self.release(messages, requeued=False)

    def take(self, message_id: str | None) -> sm.ClaimedJob | NotClaimed:
        """The claim made for this message, or NOT_CLAIMED (its thread claims it itself).
        A job taken here is the caller's now: the lease keeper stops holding it (the runner
        tracks it while it runs)."""
        if message_id is None:
            return NotClaimed.NOT_CLAIMED
        with self._lock:
            job = self._claimed.pop(message_id, NotClaimed.NOT_CLAIMED)
        if isinstance(job, sm.ClaimedJob):
            self._keeper().unhold([job.id])
        return job

    def release(self, messages: list[Any], *, requeued: bool) -> None:
        """Give back the jobs claimed for these messages that no thread took: queued again,
        the attempt given back. ``requeued``: the messages go back to Redis (the worker is
        stopping), and each job's message id becomes its message's; otherwise the message
        will not run (Dramatiq refused it), and the job keeps its own message id, so its own
        message, or else the relay, delivers it. Messages with nothing claimed cost a lookup."""
        with self._lock:
            taken = [(m, self._claimed.pop(m.message_id, None)) for m in messages]
        jobs = [(m, job) for m, job in taken if isinstance(job, sm.ClaimedJob)]
        if not jobs:
            return
        self._keeper().unhold([job.id for _, job in jobs])
        reason = "worker shutdown" if requeued else "message refused"
        try:
            with autocommit() as conn:
                for message, job in jobs:
                    message_id = message.message_id if requeued else None
                    sm.release(conn, job.id, job.attempt, message_id, reason=reason)
        except Exception as exc:  # noqa: BLE001 - their leases expire; the rescuer requeues them
            log.warning("claim_ahead.release_failed", error_type=type(exc).__name__)
            return
        log.info("claim_ahead.released", jobs=len(jobs), reason=reason)


def _request(message: Any) -> sm.ClaimRequest | None:
    """The claim for a message (checked by the consumer: None does not happen)."""
    parsed = job_args(message.args)
    return None if parsed is None else sm.ClaimRequest(*parsed, message.message_id, ahead=True)
